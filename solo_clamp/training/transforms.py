"""solo-learn's transform pipeline, extended with the official CLAMP code's small-kernel blur.

solo-learn's ``GaussianBlur`` filters with PIL's unbounded kernel: on 32-px CIFAR images a
sigma of 2 smears across a quarter of the image. The official CLAMP CIFAR recipe blurs with a
3 x 3 kernel (albumentations ``GaussianBlur(blur_limit=3, sigma_limit=(0.1, 2))``, p = 0.5).
``augmentations[i].gaussian_blur.kernel_size`` selects that blur; without it solo-learn's
pipeline is used unchanged.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from solo.data import pretrain_dataloader as solo_pipeline
from torchvision import transforms

from solo_clamp.errors import ConfigError


def blur_kernel_size(aug: DictConfig) -> Any:
    """``gaussian_blur.kernel_size`` of one augmentation entry (None when not set)."""
    return OmegaConf.select(aug, "gaussian_blur.kernel_size", default=None)


def check_blur_kernel_size(aug: DictConfig, index: int, data_format: str) -> None:
    """Raises a ConfigError naming the field when ``kernel_size`` is set but unusable."""
    size = blur_kernel_size(aug)
    if size is None:
        return
    field = f"augmentations[{index}].gaussian_blur.kernel_size"
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ConfigError(f"{field} must be an odd positive integer, got {size!r}.")
    if data_format == "dali":
        raise ConfigError(
            f"{field} is not supported with data.format=dali (solo-learn's DALI blur has no "
            "kernel limit); remove it or use data.format=image_folder."
        )


def build_transform_pipeline(dataset: str, aug: DictConfig):
    """solo-learn's ``build_transform_pipeline(dataset, aug)``, with its blur replaced by a
    ``kernel_size`` x ``kernel_size`` Gaussian (sigma uniform in ``[sigma_min, sigma_max]``,
    default ``[0.1, 2.0]``, probability ``gaussian_blur.prob``) when ``kernel_size`` is set."""
    pipeline = solo_pipeline.build_transform_pipeline(dataset, aug)
    size = blur_kernel_size(aug)
    if size is None:
        return pipeline
    sigma = (
        float(OmegaConf.select(aug, "gaussian_blur.sigma_min", default=0.1)),
        float(OmegaConf.select(aug, "gaussian_blur.sigma_max", default=2.0)),
    )
    for index, step in enumerate(pipeline.transforms):
        if isinstance(step, transforms.RandomApply) and isinstance(
            step.transforms[0], solo_pipeline.GaussianBlur
        ):
            pipeline.transforms[index] = transforms.RandomApply(
                [transforms.GaussianBlur(kernel_size=size, sigma=sigma)], p=step.p
            )
    return pipeline
