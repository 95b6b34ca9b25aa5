"""Dataset preparation (torch/numpy/PIL only)."""

from solo_clamp.data.prepare import DATASETS, PreparedData, prepare_image_folder

__all__ = ["DATASETS", "PreparedData", "prepare_image_folder"]
