"""The zoo's user-facing errors (the CLI prints them and exits with status 2)."""

from __future__ import annotations


class ZooError(Exception):
    """A user-facing zoo error (the CLI prints it and exits with status 2)."""


class ManifestError(ZooError, ValueError):
    """The manifest (or a value meant for it) is invalid; the message names the field."""


class UnknownModelError(ZooError, LookupError):
    """No manifest entry has the requested name; the message lists the available names."""


class DownloadError(ZooError):
    """Every source of an entry failed; the message lists each source and its error."""


class HashMismatchError(DownloadError):
    """A file's sha256 (or size) differs from the manifest's; the bad file is not kept."""
