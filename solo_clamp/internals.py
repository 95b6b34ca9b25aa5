"""The one door to Lightning's and solo-learn's private state.

Exact resume, clean preemption and building solo-learn's backbones need a few things neither
framework offers publicly; every such read or write lives here, and nothing else in solo-clamp
touches a private attribute of either. They were written against, and tested with,
:data:`TESTED_VERSIONS`. Each function checks, on its first use, that the installed framework
is that version and otherwise stops with a :class:`UntestedVersionError` naming both versions;
with ``SOLO_CLAMP_ALLOW_UNTESTED_VERSIONS=1`` in the environment it warns instead and goes on.
The training callbacks check when they are built, before ``trainer.fit``, so that a
mismatch never surfaces in the middle of a run.

What is read or written, and why:

* Lightning's signal connector (``trainer._signal_connector.received_sigterm``): the flag that
  makes the loops stop after the current step; under DDP every rank must set it at the same
  step (:func:`set_stop_after_step`).
* The fit loop's data fetcher (``trainer.fit_loop._data_fetcher`` and its ``fetched``
  counter): replaying the first batches of a resumed epoch (:func:`replay_epoch_batches`).
* The fit loop's progress counters (``fit_loop.epoch_progress``,
  ``epoch_loop.batch_progress``, ``epoch_loop.restarting``): where in an epoch a run is.
* solo-learn's backbone table (``BaseMethod._BACKBONES``): the builders of its backbones.
* solo-learn's optimizer table (``_OPTIMIZERS`` of a method or ``LinearModel``): the optimizer
  class of ``optimizer.name`` for a model that builds its own parameter groups
  (:func:`solo_optimizers`).
* torchvision's DTD, Flowers102 and Food101 keep their file lists in private attributes
  (``_image_files``, ``_images_folder``, ``_labels``): :func:`torchvision_image_files`. Not
  version-checked: it says when a dataset lacks them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from importlib import metadata
from typing import Any, Callable, Optional

from solo_clamp.errors import SoloClampError

SOLO_MISSING_MESSAGE = (
    "solo-learn is not installed. It is not on PyPI (>= 1.0.6): the `solo` extra installs it "
    "from GitHub at the tested commit; from the solo-clamp repository, run "
    '`PIP_CONSTRAINT=constraints.txt pip install -e ".[solo]"` (solo-learn\'s build needs '
    "setuptools<81)."
)
TESTED_VERSIONS = {"lightning": "2.1.2", "solo-learn": "1.0.6"}
"""The framework versions (distribution names) this module was tested with."""
TESTED_SOLO_COMMIT = "9187ea39c2c3f43c455ab06664d2b019a9802954"
"""solo-learn's commit (its 1.0.6), checked where pip recorded the commit it installed."""
ALLOW_ENV = "SOLO_CLAMP_ALLOW_UNTESTED_VERSIONS"

_checked: set[str] = set()


def solo_available() -> bool:
    """True when the ``solo`` package (solo-learn, the ``solo`` extra) can be imported."""
    return importlib.util.find_spec("solo") is not None


class UntestedVersionError(SoloClampError, RuntimeError):
    """An installed framework differs from the version solo-clamp was tested with (the
    message says how to install it, or to run anyway)."""


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution`` as pip records it, with solo-learn's commit
    when pip recorded one (an install from its repository), e.g. ``1.0.6 (commit 9187ea3)``."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
    version = dist.version
    commit = (json.loads(dist.read_text("direct_url.json") or "{}").get("vcs_info") or {}).get(
        "commit_id"
    )
    return f"{version} (commit {commit[:7]})" if commit else version


def _tested(distribution: str) -> str:
    version = TESTED_VERSIONS[distribution]
    return (
        f"{version} (commit {TESTED_SOLO_COMMIT[:7]})" if distribution == "solo-learn" else version
    )


def require_tested_version(distribution: str) -> None:
    """Stops with :class:`UntestedVersionError` unless ``distribution`` (``lightning`` or
    ``solo-learn``) is installed at the tested version; a warning instead when
    ``SOLO_CLAMP_ALLOW_UNTESTED_VERSIONS=1``. Checked once per process."""
    if distribution in _checked:
        return
    installed, tested = installed_version(distribution), _tested(distribution)
    if installed not in (tested, TESTED_VERSIONS[distribution]):
        message = (
            f"solo-clamp reads private state of {distribution} (solo_clamp.internals) and was "
            f"tested with {distribution} {tested}, but {installed} is installed. Install the "
            'tested version (PIP_CONSTRAINT=constraints.txt pip install -e ".[solo]"), or set '
            f"{ALLOW_ENV}=1 to run anyway."
        )
        if os.environ.get(ALLOW_ENV) != "1":
            raise UntestedVersionError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    _checked.add(distribution)


# ---------------------------------------------------------------- Lightning's fit loop


def set_stop_after_step(trainer: Any, stop: bool) -> None:
    """Sets the flag Lightning's SIGTERM handler sets: the loops stop (raising
    ``SIGTERMException``) once the current step is done. ``False`` undoes the handler's
    mark on this rank alone (``trainer.received_sigterm`` is its read-only public view)."""
    require_tested_version("lightning")
    trainer._signal_connector.received_sigterm = stop


def replay_epoch_batches(trainer: Any, batches: int) -> None:
    """Recreates the current epoch's training-data iterator and loads (and drops) its first
    ``batches`` batches, leaving the fetcher's count as it was: the epoch loop adds the
    restored batch count itself, so the replayed ones are not counted twice.

    Lightning 2.1 would otherwise restart a mid-epoch resume at the first batch of a fresh
    iterator; its fit loop keeps that iterator in a data fetcher that counts the batches it
    has handed out."""
    require_tested_version("lightning")
    fetcher = trainer.fit_loop._data_fetcher
    iter(fetcher)
    for _ in range(batches):
        next(fetcher)
    fetcher.fetched -= batches


def epochs_started(trainer: Any) -> int:
    """How many epochs the fit loop has started (the current one included)."""
    require_tested_version("lightning")
    return int(trainer.fit_loop.epoch_progress.current.started)


def epoch_in_progress(trainer: Any) -> bool:
    """Whether the current epoch has started and not yet been processed (a mid-epoch state)."""
    require_tested_version("lightning")
    epoch = trainer.fit_loop.epoch_progress.current
    return epoch.processed != epoch.started


def batches_completed(trainer: Any) -> int:
    """Training batches completed in the current epoch."""
    require_tested_version("lightning")
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)


def resuming_mid_epoch(trainer: Any) -> bool:
    """Whether the epoch loop is restarting from a mid-epoch checkpoint."""
    require_tested_version("lightning")
    return bool(trainer.fit_loop.epoch_loop.restarting)


# ---------------------------------------------------------------- solo-learn


def backbone_builders() -> dict[str, Callable[..., Any]]:
    """solo-learn's backbone builders by name: ``builder(method, **kwargs)``."""
    require_tested_version("solo-learn")
    from solo.methods.base import BaseMethod

    return dict(BaseMethod._BACKBONES)


def solo_optimizers(model: Any) -> dict[str, type]:
    """The optimizer classes by ``optimizer.name`` of a solo-learn model or model class
    (``BaseMethod``, ``LinearModel`` or a subclass): its ``_OPTIMIZERS`` table."""
    require_tested_version("solo-learn")
    return dict(model._OPTIMIZERS)


# ---------------------------------------------------------------- torchvision


def torchvision_image_files(dataset: Any) -> Optional[tuple[list[str], str, list[int]]]:
    """``(files, folder, labels)`` of a torchvision dataset that keeps them in private
    attributes (DTD, Flowers102, Food101); None for one that does not."""
    if not (hasattr(dataset, "_image_files") and hasattr(dataset, "_images_folder")):
        return None
    return (
        [str(path) for path in dataset._image_files],
        str(dataset._images_folder),
        [int(label) for label in dataset._labels],
    )
