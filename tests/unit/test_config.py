"""CLAMP's method_kwargs defaults and checks, and the pretraining preflight."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from solo_clamp.config import DEFAULTS, check_clamp_kwargs
from solo_clamp.training.checks import preflight

BASE = {"proj_hidden_dim": 64, "proj_output_dim": 32, "rs": 7.0}


def test_defaults_are_filled_in():
    kwargs = check_clamp_kwargs(dict(BASE), num_views=4)
    for name, value in DEFAULTS.items():
        assert kwargs[name] == value
    assert kwargs.rs == 7.0


@pytest.mark.parametrize(
    "override,num_views,message",
    [
        ({"rs": 0.0}, 4, r"method_kwargs.rs must be > 0"),
        ({"rs": -1}, 4, r"method_kwargs.rs must be > 0"),
        ({"max_range": 1e-4}, 4, r"method_kwargs.max_range must be > method_kwargs.min_margin"),
        ({"min_margin": -1.0}, 4, r"method_kwargs.min_margin must be >= 0"),
        ({"pot_pow": 0}, 4, r"method_kwargs.pot_pow must be > 0"),
        ({"lw0": 0.0, "lw1": 0.0}, 4, r"cannot both be 0"),
        ({"proj_hidden_dim": 0}, 4, r"method_kwargs.proj_hidden_dim must be an integer >= 1"),
        ({"proj_hidden_layers": -1}, 4, r"proj_hidden_layers must be an integer >= 0"),
        ({"joint_forward": "yes"}, 4, r"joint_forward must be true or false"),
        ({"tile_size": 0}, 4, r"tile_size must be an integer >= 1"),
        ({"ddp_gradient": "sum"}, 4, r"method_kwargs.ddp_gradient must be one of \['full'"),
        ({"rs": "big"}, 4, r"method_kwargs.rs must be a number"),
        ({}, 1, r"at least 2 views per image"),
    ],
)
def test_bad_values_name_the_field(override, num_views, message):
    with pytest.raises(ValueError, match=message):
        check_clamp_kwargs({**BASE, **override}, num_views=num_views)


@pytest.mark.parametrize("missing", ["proj_hidden_dim", "proj_output_dim", "rs"])
def test_required_fields(missing):
    kwargs = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ValueError, match=f"method_kwargs.{missing} is required"):
        check_clamp_kwargs(kwargs, num_views=4)


def pretrain_cfg(tmp_path, **overrides):
    (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "a" / "x.png").write_bytes(b"")
    cfg = OmegaConf.create(
        {
            "method": "clamp",
            "backbone": {"name": "resnet18"},
            "method_kwargs": dict(BASE),
            "data": {
                "dataset": "custom",
                "train_path": str(tmp_path / "data"),
                "format": "image_folder",
            },
            "augmentations": [{"crop_size": 32, "num_crops": 4}],
            "optimizer": {"batch_size": 8},
            "devices": 1,
        }
    )
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def test_preflight_accepts_a_good_config(tmp_path):
    preflight(pretrain_cfg(tmp_path))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("method", "byol", "method must be 'clamp'"),
        ("data.dataset", "mnist", r"data.dataset must be one of \['cifar10'"),
        ("data.format", "zip", r"data.format must be one of"),
        ("augmentations", [{"crop_size": 32, "num_crops": 1}], "at least 2 views per image"),
        ("augmentations", [{"crop_size": 32, "num_crops": 0}], r"augmentations\[0\].num_crops"),
        ("augmentations", [], "augmentations must list at least one"),
        ("optimizer.batch_size", 1, "optimizer.batch_size=1 on a single device"),
        ("method_kwargs.rs", 0, "method_kwargs.rs must be > 0"),
    ],
)
def test_preflight_errors_name_the_field(tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        preflight(pretrain_cfg(tmp_path, **{key: value}))


def test_batch_size_one_is_fine_across_two_devices(tmp_path):
    preflight(pretrain_cfg(tmp_path, **{"optimizer.batch_size": 1, "devices": 2}))


def test_missing_or_empty_data_directory(tmp_path):
    with pytest.raises(ValueError, match="data.train_path=.* does not exist"):
        preflight(pretrain_cfg(tmp_path, **{"data.train_path": str(tmp_path / "nope")}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="data.train_path=.* is empty"):
        preflight(pretrain_cfg(tmp_path, **{"data.train_path": str(tmp_path / "empty")}))


def test_dali_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the no-GPU message cannot be triggered here")
    with pytest.raises(ValueError, match="data.format=dali needs an NVIDIA GPU"):
        preflight(pretrain_cfg(tmp_path, **{"data.format": "dali"}))
