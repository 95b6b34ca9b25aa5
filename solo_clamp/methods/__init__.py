"""solo-learn method classes. Importing this package requires solo-learn and registers
``CLAMP`` and ``ManifoldCLR`` as ``solo.methods.METHODS["clamp"]`` and ``["manifoldclr"]``, so
that ``method: clamp`` (or ``manifoldclr``) works in any
solo-learn program that imports it (or calls :func:`solo_clamp.register`)."""

import warnings

with warnings.catch_warnings():  # solo-learn's and timm's import-time deprecation noise
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", UserWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from solo.methods import METHODS

    from solo_clamp.methods.clamp import CLAMP
    from solo_clamp.methods.manifoldclr import ManifoldCLR

METHODS["clamp"] = CLAMP
METHODS["manifoldclr"] = ManifoldCLR

__all__ = ["CLAMP", "ManifoldCLR"]
