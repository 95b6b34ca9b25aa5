"""ManifoldCLR's method_kwargs defaults and checks, and the pretraining preflight's dispatch."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from solo_clamp.config_manifoldclr import MANIFOLDCLR_DEFAULTS, check_manifoldclr_kwargs
from solo_clamp.training.checks import preflight


def test_defaults_are_the_official_cifar10_soft_threshold_config():
    kwargs = check_manifoldclr_kwargs({}, num_views=2)
    assert dict(kwargs) == MANIFOLDCLR_DEFAULTS
    official = {
        "dictionary_size": 32,
        "block_dim": 64,
        "threshold": 0.01,
        "scale_prior": 0.01,
        "shift_prior": 0.05,
        "prior_warmup_steps": 10000,
        "max_elbo_samples": 20,
        "max_elbo_start_step": 5000,
        "temperature": 0.5,
        "mse_weight": 10.0,
        "kl_weight": 1e-3,
        "shift_l2_weight": 1e-2,
        "transop_lr": 1e-3,
        "transop_weight_decay": 1e-3,
        "transop_grad_clip": 0.1,
        "vi_lr": 1e-4,
        "vi_weight_decay": 1e-5,
        "vi_grad_clip": 1.0,
        "init_imag_range": 6.0,
        "init_real_range": 1e-4,
        "proj_hidden_dim": 1024,
        "proj_output_dim": 128,
    }
    assert {name: kwargs[name] for name in official} == official


def test_given_values_are_kept():
    kwargs = check_manifoldclr_kwargs({"dictionary_size": 8, "backbone_grad_clip": 1.0}, 2)
    assert kwargs.dictionary_size == 8 and kwargs.backbone_grad_clip == 1.0
    assert kwargs.block_dim == 64


@pytest.mark.parametrize(
    "override,message",
    [
        ({"dictionary_size": 0}, r"method_kwargs.dictionary_size must be an integer >= 1"),
        ({"block_dim": 7}, r"method_kwargs.block_dim must be even"),
        ({"block_dim": 1}, r"method_kwargs.block_dim must be an integer >= 2"),
        ({"vi_hidden_dim": 2.5}, r"method_kwargs.vi_hidden_dim must be an integer"),
        ({"max_elbo_samples": 0}, r"method_kwargs.max_elbo_samples must be an integer >= 1"),
        ({"prior_warmup_steps": -1}, r"method_kwargs.prior_warmup_steps must be an integer >= 0"),
        ({"scale_prior": 0.0}, r"method_kwargs.scale_prior must be > 0"),
        ({"temperature": -0.5}, r"method_kwargs.temperature must be > 0"),
        ({"threshold": -0.01}, r"method_kwargs.threshold must be >= 0"),
        ({"kl_weight": "big"}, r"method_kwargs.kl_weight must be a number"),
        ({"shift_prior": float("nan")}, r"method_kwargs.shift_prior must be a finite number"),
        ({"transop_lr": 0}, r"method_kwargs.transop_lr must be > 0"),
        ({"vi_grad_clip": 0.0}, r"method_kwargs.vi_grad_clip must be > 0"),
        ({"rs": 7.0}, r"unknown method_kwargs for method=manifoldclr: \['rs'\]"),
    ],
)
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        check_manifoldclr_kwargs(override, num_views=2)


@pytest.mark.parametrize("views", [1, 3, 4])
def test_exactly_two_views(views):
    with pytest.raises(ValueError, match="exactly 2 views per image"):
        check_manifoldclr_kwargs({}, num_views=views)


def test_null_clips_are_allowed():
    kwargs = check_manifoldclr_kwargs({"transop_grad_clip": None, "vi_grad_clip": None}, 2)
    assert kwargs.transop_grad_clip is None and kwargs.vi_grad_clip is None


def pretrain_cfg(tmp_path, **overrides):
    (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "a" / "x.png").write_bytes(b"")
    cfg = OmegaConf.create(
        {
            "method": "manifoldclr",
            "backbone": {"name": "resnet18"},
            "method_kwargs": {"dictionary_size": 16},
            "data": {
                "dataset": "custom",
                "train_path": str(tmp_path / "data"),
                "format": "image_folder",
            },
            "augmentations": [{"crop_size": 32, "num_crops": 2}],
            "optimizer": {"batch_size": 8},
            "devices": 1,
        }
    )
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def test_preflight_accepts_manifoldclr(tmp_path):
    preflight(pretrain_cfg(tmp_path))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("method", "byol", "method must be 'clamp', 'manifoldclr' or 'simclr' for this program"),
        ("augmentations", [{"crop_size": 32, "num_crops": 4}], "exactly 2 views per image"),
        ("method_kwargs.block_dim", 3, "method_kwargs.block_dim must be even"),
        ("method_kwargs.rs", 7.0, "unknown method_kwargs for method=manifoldclr"),
    ],
)
def test_preflight_dispatches_the_checks_by_method(tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        preflight(pretrain_cfg(tmp_path, **{key: value}))


def test_clamp_keeps_its_own_checks(tmp_path):
    cfg = pretrain_cfg(tmp_path, method="clamp")
    with pytest.raises(ValueError, match="method_kwargs.proj_hidden_dim is required"):
        preflight(cfg)
