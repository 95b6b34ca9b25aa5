"""The errors solo-clamp raises for what a user can fix: a bad config, a bad checkpoint, bad
data, a diverged run, a run the geometry report cannot use, a zoo model that cannot be found or
downloaded.

``solo-clamp`` prints a :class:`SoloClampError` as one line (exit status 2) and any other
exception with its traceback, so that a bug is never mistaken for bad input. Raise one of
these only where the message tells the user what to change; a broken invariant stays a plain
exception. Each is also the builtin it used to be (``ValueError``, ``LookupError``,
``FloatingPointError``), so that ``except ValueError`` callers keep working.

Pure Python: every module may import it.
"""

from __future__ import annotations


class SoloClampError(Exception):
    """A user-facing error: its message says what is wrong and what to change."""


class ConfigError(SoloClampError, ValueError):
    """A config field, override or option with a wrong value or type; the message names it."""


class CheckpointError(SoloClampError, ValueError):
    """A checkpoint or run cfg that is missing, unreadable or not solo-learn's."""


class DataError(SoloClampError, ValueError):
    """Images or label files that cannot be used: unreadable, too few, missing, or overlapping
    the evaluation split."""


class DivergedError(SoloClampError, FloatingPointError):
    """Training diverged (non-finite embeddings, losses or weights); the message says where
    and suggests a remedy."""


class GeometryError(SoloClampError, ValueError):
    """A run, data folder or setting the geometry report cannot use; the message says which."""


class ZooError(SoloClampError):
    """A zoo model that cannot be listed, found, downloaded or published as asked."""


class ManifestError(ZooError, ValueError):
    """The zoo manifest (or a value meant for it) is invalid; the message names the field."""


class UnknownModelError(ZooError, LookupError):
    """No manifest entry has the requested name; the message lists the available names."""


class DownloadError(ZooError):
    """Every source of a zoo entry failed; the message lists each source and its error."""


class HashMismatchError(DownloadError):
    """A file's sha256 (or size) differs from the manifest's; the bad file is not kept."""
