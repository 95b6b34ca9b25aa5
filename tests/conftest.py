"""Shared fixtures. Core tests need torch only; integration tests import the real solo-learn."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def mnist_source() -> Path:
    """The MNIST idx files shipped beside the repository (never downloaded in tests)."""
    path = Path(os.environ.get("SOLO_CLAMP_MNIST_DIR", SHARED_MNIST))
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST idx files not found in {path} (set SOLO_CLAMP_MNIST_DIR)")
    return path


def write_image_folder(
    root: Path, classes: int = 3, per_class: int = 8, size: int = 32, seed: int = 0
) -> Path:
    """Writes a tiny ImageFolder of random RGB PNGs: root/class_k/img_i.png."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            pixels[..., k % 3] //= 2  # a faint class signal
            Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "images")


@pytest.fixture
def image_folder_factory(tmp_path):
    def make(name: str = "images", **kwargs) -> Path:
        return write_image_folder(tmp_path / name, **kwargs)

    return make


def make_clamp_cfg(
    num_views: int = 4,
    batch_size: int = 8,
    train_path: str = "unused",
    backbone: str = "resnet18",
    dataset: str = "custom",
    num_classes: int = 3,
    proj_hidden_dim: int = 32,
    proj_output_dim: int = 16,
    crop_size: int = 32,
    **method_kwargs,
):
    """A minimal, already-parsed pretraining cfg for CLAMP, as solo-learn's parse_cfg leaves it."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "name": "clamp-test",
            "method": "clamp",
            "backbone": {"name": backbone, "kwargs": {}},
            "method_kwargs": {
                "proj_hidden_dim": proj_hidden_dim,
                "proj_output_dim": proj_output_dim,
                "rs": 7.0,
                **method_kwargs,
            },
            "data": {
                "dataset": dataset,
                "train_path": train_path,
                "val_path": None,
                "format": "image_folder",
                "num_workers": 0,
                "num_classes": num_classes,
                "num_large_crops": num_views,
                "num_small_crops": 0,
                "no_labels": False,
                "fraction": -1,
            },
            "augmentations": [{"crop_size": crop_size, "num_crops": num_views}],
            "optimizer": {
                "name": "lars",
                "batch_size": batch_size,
                "lr": 0.1,
                "classifier_lr": 0.1,
                "weight_decay": 1e-6,
                "kwargs": {
                    "momentum": 0.9,
                    "eta": 0.02,
                    "clip_lr": True,
                    "exclude_bias_n_norm": True,
                },
            },
            "scheduler": {"name": "warmup_cosine", "warmup_epochs": 0},
            "max_epochs": 1,
            "devices": 1,
            "accelerator": "cpu",
            "knn_eval": {"enabled": False},
            "performance": {"disable_channel_last": True},
        }
    )
    OmegaConf.set_struct(cfg, False)
    return cfg


@pytest.fixture
def clamp_cfg_factory():
    return make_clamp_cfg


@pytest.fixture(scope="session")
def image_folder_writer():
    """The ``write_image_folder`` function, for module- or session-scoped fixtures."""
    return write_image_folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny training runs (use it with
    ``pytest.mark.usefixtures``): on a small, shared CPU, OpenMP threads that wait on each other
    make such runs many times slower (measured: 1.2 s instead of 12 s per run)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
