"""Helpers shared by test modules (``tests/`` is on pytest's ``pythonpath``; the module name
is ours alone, so it cannot clash with solo-learn's own ``tests`` packages)."""

from __future__ import annotations

from pathlib import Path


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
