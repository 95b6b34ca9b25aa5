"""The official CLAMP CIFAR blur (3 x 3 kernel) inside solo-learn's transform pipeline."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from solo_clamp.training.checks import preflight  # noqa: E402
from solo_clamp.training.transforms import (  # noqa: E402
    build_transform_pipeline,
    check_blur_kernel_size,
)


def augmentation(**blur) -> OmegaConf:
    return OmegaConf.create(
        {
            "rrc": {"enabled": True, "crop_min_scale": 0.08, "crop_max_scale": 1.0},
            "color_jitter": {
                "prob": 0.0,
                "brightness": 0.4,
                "contrast": 0.4,
                "saturation": 0.2,
                "hue": 0.1,
            },
            "grayscale": {"prob": 0.0},
            "gaussian_blur": {"prob": 0.5, **blur},
            "solarization": {"prob": 0.0},
            "equalization": {"prob": 0.0},
            "horizontal_flip": {"prob": 0.5},
            "crop_size": 32,
            "num_crops": 2,
        }
    )


def blur_steps(pipeline):
    from torchvision import transforms

    return [step for step in pipeline.transforms if isinstance(step, transforms.RandomApply)]


def test_without_kernel_size_the_pipeline_is_solo_learns():
    from solo.data.pretrain_dataloader import GaussianBlur

    (step,) = blur_steps(build_transform_pipeline("cifar10", augmentation()))
    assert isinstance(step.transforms[0], GaussianBlur) and step.p == 0.5


def test_kernel_size_gives_the_official_3x3_blur_with_the_same_probability():
    from torchvision import transforms

    (step,) = blur_steps(build_transform_pipeline("cifar10", augmentation(kernel_size=3)))
    blur = step.transforms[0]
    assert isinstance(blur, transforms.GaussianBlur) and step.p == 0.5
    assert list(blur.kernel_size) == [3, 3] and list(blur.sigma) == [0.1, 2.0]


def test_the_blur_equals_a_hand_computed_3x3_gaussian():
    """sigma fixed at 1: the blurred image is the 3 x 3 normalised Gaussian convolution with
    reflected borders (as albumentations' default BORDER_REFLECT_101)."""
    aug = augmentation(kernel_size=3, sigma_min=1.0, sigma_max=1.0)
    (step,) = blur_steps(build_transform_pipeline("cifar10", aug))
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    blurred = step.transforms[0](image)
    weights = torch.tensor([math.exp(-0.5 * x * x) for x in (-1, 0, 1)])
    kernel = torch.outer(weights, weights) / weights.sum() ** 2
    padded = torch.nn.functional.pad(image[None], (1, 1, 1, 1), mode="reflect")[0]
    expected = torch.zeros_like(image)
    for dy in range(3):
        for dx in range(3):
            expected += kernel[dy, dx] * padded[:, dy : dy + 8, dx : dx + 8]
    torch.testing.assert_close(blurred, expected, rtol=1e-5, atol=1e-6)
    # And it is a real blur: solo-learn's unbounded sigma-1 blur would spread further.
    assert not torch.allclose(blurred, image)


def pretrain_cfg(tmp_path, **blur):
    (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "a" / "x.png").write_bytes(b"")
    return OmegaConf.create(
        {
            "method": "clamp",
            "backbone": {"name": "resnet18"},
            "method_kwargs": {"proj_hidden_dim": 8, "proj_output_dim": 4, "rs": 7.0},
            "data": {
                "dataset": "custom",
                "train_path": str(tmp_path / "data"),
                "format": "image_folder",
            },
            "augmentations": [augmentation(**blur)],
            "optimizer": {"batch_size": 4},
        }
    )


@pytest.mark.parametrize(
    "blur, message",
    [
        ({"kernel_size": 4}, r"augmentations\[0\].gaussian_blur.kernel_size must be an odd"),
        ({"kernel_size": "3"}, r"kernel_size must be an odd positive integer"),
    ],
)
def test_bad_kernel_sizes_are_refused_naming_the_field(tmp_path, blur, message):
    with pytest.raises(ValueError, match=message):
        preflight(pretrain_cfg(tmp_path, **blur))


def test_dali_refuses_the_kernel_limit():
    """(preflight refuses DALI without a GPU first; the blur check itself names the field.)"""
    with pytest.raises(
        ValueError,
        match=r"augmentations\[1\].gaussian_blur.kernel_size is not "
        "supported with data.format=dali",
    ):
        check_blur_kernel_size(augmentation(kernel_size=3), 1, "dali")
