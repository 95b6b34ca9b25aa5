"""solo-learn method classes (importing this package requires solo-learn)."""

from solo_clamp.methods.clamp import CLAMP

__all__ = ["CLAMP"]
