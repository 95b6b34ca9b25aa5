"""solo-learn method classes. Importing this package requires solo-learn and registers
``CLAMP`` as ``solo.methods.METHODS["clamp"]``, so that ``method: clamp`` works in any
solo-learn program that imports it (or calls :func:`solo_clamp.register`)."""

import warnings

with warnings.catch_warnings():  # solo-learn's and timm's import-time deprecation noise
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", UserWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from solo.methods import METHODS

    from solo_clamp.methods.clamp import CLAMP

METHODS["clamp"] = CLAMP

__all__ = ["CLAMP"]
