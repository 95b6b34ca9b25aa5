"""Dataset preparation (torch/numpy/PIL only)."""

from solo_clamp.data.prepare import prepare_image_folder

__all__ = ["prepare_image_folder"]
