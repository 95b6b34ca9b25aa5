"""solo-clamp: CLAMP (Contrastive Learning As Manifold Packing) for solo-learn.

``import solo_clamp`` imports neither solo-learn nor torch (the loss functions below load
on first use). CLAMP joins solo-learn's method table, ``solo.methods.METHODS["clamp"]``,
with ``import solo_clamp.methods`` or :func:`register`; the ``solo-clamp`` commands that run
solo-learn do it themselves.
"""

from __future__ import annotations

import importlib
from typing import Any

from solo_clamp.internals import SOLO_MISSING_MESSAGE, solo_available
from solo_clamp.version import __version__

_LOSS_FUNCTIONS = ("clamp_loss_func", "clamp_loss_and_stats")


def register() -> type:
    """Registers CLAMP as ``solo.methods.METHODS["clamp"]`` and ManifoldCLR as
    ``METHODS["manifoldclr"]`` and returns the CLAMP class: it imports
    :mod:`solo_clamp.methods`, whose classes register themselves (once, on first import).

    Raises:
        ModuleNotFoundError: when solo-learn is not installed.
        ImportError: when solo-learn is installed but does not import.
    """
    if not solo_available():
        raise ModuleNotFoundError(SOLO_MISSING_MESSAGE, name="solo")
    from solo_clamp import methods  # the lazy boundary: importing it registers the methods

    return methods.CLAMP


def __getattr__(name: str) -> Any:
    """The loss functions, imported (with torch) on first access."""
    if name in _LOSS_FUNCTIONS:
        value = getattr(importlib.import_module("solo_clamp.losses.clamp"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "clamp_loss_func",
    "clamp_loss_and_stats",
    "register",
    "solo_available",
    "SOLO_MISSING_MESSAGE",
]
