"""solo-learn method classes (importing this package requires solo-learn)."""

from solo_clamp.methods.clamp import CLAMP
from solo_clamp.methods.manifoldclr import ManifoldCLR

__all__ = ["CLAMP", "ManifoldCLR"]
