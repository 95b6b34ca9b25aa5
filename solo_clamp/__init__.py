"""solo-clamp: CLAMP (Contrastive Learning As Manifold Packing) for solo-learn.

Importing this package registers ``CLAMP`` as ``solo.methods.METHODS["clamp"]`` when
solo-learn is installed; the loss, views and geometry modules work with torch alone.
"""

from __future__ import annotations

import importlib.util
import warnings

from solo_clamp.losses.clamp import clamp_loss_and_stats, clamp_loss_func
from solo_clamp.version import __version__

SOLO_MISSING_MESSAGE = (
    "solo-learn is not installed. It is not on PyPI (>= 1.0.6): install it from its "
    "repository (git clone https://github.com/vturrisi/solo-learn && "
    "pip install -e ./solo-learn), then `pip install -e .[solo]`."
)


def solo_available() -> bool:
    """True when the ``solo`` package (solo-learn) can be imported."""
    return importlib.util.find_spec("solo") is not None


def register() -> type:
    """Registers CLAMP as ``solo.methods.METHODS["clamp"]`` and ManifoldCLR as
    ``METHODS["manifoldclr"]`` (idempotent) and returns the CLAMP class.

    Raises:
        ModuleNotFoundError: when solo-learn is not installed.
    """
    if not solo_available():
        raise ModuleNotFoundError(SOLO_MISSING_MESSAGE, name="solo")
    with warnings.catch_warnings():  # solo-learn's and timm's import-time deprecation noise
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from solo.methods import METHODS

        from solo_clamp.methods.clamp import CLAMP
        from solo_clamp.methods.manifoldclr import ManifoldCLR

    METHODS["clamp"] = CLAMP
    METHODS["manifoldclr"] = ManifoldCLR
    return CLAMP


if solo_available():
    try:
        register()
    except ImportError as err:  # solo-learn present but broken: keep the torch-only API usable
        warnings.warn(
            f"solo-learn was found but CLAMP could not be registered: {err}", stacklevel=2
        )

__all__ = [
    "__version__",
    "clamp_loss_func",
    "clamp_loss_and_stats",
    "register",
    "solo_available",
    "SOLO_MISSING_MESSAGE",
]
