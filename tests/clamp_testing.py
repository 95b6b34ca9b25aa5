"""Helpers shared by test modules (``tests/`` is on pytest's ``pythonpath``; the module name
is ours alone, so it cannot clash with solo-learn's own ``tests`` packages)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch


def tiny_pretrain_overrides(images: Path, checkpoint_dir: Path, *extra: str) -> list[str]:
    """Hydra overrides of the MNIST pretrain config for a tiny CPU run: 16-px images, batch 4,
    a small projector and backbone, no data preparation and no kNN report."""
    return [
        "~prepare_data",
        "~evaluate",
        f"data.train_path={images}",
        "data.num_workers=0",
        "optimizer.batch_size=4",
        "method_kwargs.proj_hidden_dim=32",
        "method_kwargs.proj_output_dim=16",
        "augmentations.0.crop_size=16",
        "backbone.name=wide_resnet28w2",  # 1.5 M parameters: a few times faster than resnet18
        f"checkpoint.dir={checkpoint_dir}",
        *extra,
    ]


class ReferenceLoss(NamedTuple):
    """The reference loss and the statistics the tests compare with the loss module's."""

    loss: torch.Tensor
    interacting_pairs: int
    """Ordered pairs ``(i, j)``, ``i != j``, that repel."""
    mean_radius: torch.Tensor


def reference_clamp_loss(
    z: torch.Tensor,
    num_views: int,
    rs: float,
    pot_pow: float = 2.0,
    lw0: float = 0.0,
    lw1: float = 1.0,
    min_margin: float = 1e-3,
    max_range: float = 1.5,
) -> ReferenceLoss:
    """The CLAMP loss written naively from the paper's formula: the one reference of the tests
    and of ``bench/loss_bench.py`` (its ``dense_reference``, the official code's formulation).

    Independent of ``solo_clamp.losses.clamp``: each radius comes from the trace of the
    covariance of the image's views, as ``torch.var`` over the views (unbiased: divided by
    ``V - 1``), the pair distances from the explicit ``N x N x D`` differences of the
    centroids (memory ``O(N**2 * D)``), the interacting pairs from a boolean mask.
    ``z`` is ``[V * B, D]`` view-major (row ``v * B + b`` is view ``v`` of image ``b``);
    float64 stays float64, any other dtype is computed in float32. The loss module's two
    guard constants are kept (1e-12 under the square roots, 1e-6 added to ``r_i + r_j``) so
    that float64 values agree to 1e-10.
    """
    z = z if z.dtype == torch.float64 else z.float()
    dim = z.shape[1]
    views = (z - z.mean(dim=0)).reshape(num_views, -1, dim)  # centred on the batch mean
    views = views / views.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    num_images = views.shape[1]
    centroids = views.mean(dim=0)
    traces = views.var(dim=0, correction=1).sum(dim=-1)  # trace of each image's covariance
    radii = rs * torch.sqrt(traces / min(dim, num_views) + 1e-12)

    differences = centroids[:, None, :] - centroids[None, :, :]
    distances = torch.sqrt((differences**2).sum(dim=-1) + 1e-12)
    reach = torch.clamp(radii[:, None] + radii[None, :] + 1e-6, max=max_range)
    others = ~torch.eye(num_images, dtype=torch.bool, device=z.device)
    mask = others & (distances > min_margin) & (distances < reach)
    overlap = 1.0 - distances[mask] / reach[mask]
    energy = 0.5 * lw1 * (overlap**pot_pow).sum() + lw0 * radii.sum()
    return ReferenceLoss(torch.log(energy + 1e-6), int(mask.sum()), radii.mean())


def tiny_comparison_config(image_folder_factory, train_per_class: int, **fields) -> dict:
    """The default comparison config (``fashion_mnist.yaml``) on a generated 3-class
    ImageFolder: ``train_per_class`` training and 6 test images per class, 16-px views (a
    quarter of the compute of 32 px), CLAMP and SimCLR, batch 8, no progress bar; ``fields``
    are added or replace top-level fields."""
    from omegaconf import OmegaConf

    from solo_clamp import compare

    train = image_folder_factory("train", classes=3, per_class=train_per_class, size=16)
    val = image_folder_factory("val", classes=3, per_class=6, size=16, seed=1)
    base = compare.load_config(compare.CONFIG_DIR / "fashion_mnist.yaml")
    augmentations = OmegaConf.to_container(base.augmentations)
    augmentations[0]["crop_size"] = 16
    return {
        "base": str(compare.CONFIG_DIR / "fashion_mnist.yaml"),
        "dataset": "image_folder",
        "data": {
            "train_path": str(train),
            "val_path": str(val),
            "num_workers": 0,
            "train_per_class": None,
            "val_per_class": None,
        },
        "augmentations": augmentations,
        "methods": ["clamp", "simclr"],
        "batch_size": 8,
        "curves": {"per_class": 4},
        "trainer": {"progress_bar": False},
        **fields,
    }


def small_method_kwargs(schema: type) -> dict:
    """The required fields of a ``method_kwargs`` schema (no default) set to small valid
    values: 16 for an integer (a width), 0.5 for a number; the others keep their defaults."""
    import dataclasses
    import typing

    from pydantic.fields import FieldInfo

    def required(field: dataclasses.Field) -> bool:
        default = field.default
        return default is dataclasses.MISSING or (
            isinstance(default, FieldInfo) and default.is_required()
        )

    hints = typing.get_type_hints(schema)
    return {
        field.name: 16 if hints[field.name] is int else 0.5
        for field in dataclasses.fields(schema)
        if required(field)
    }
