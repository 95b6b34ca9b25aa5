"""Each method's method_kwargs schema (defaults, types, checks, unknown keys) and view rule,
read from its class's facts; the pretraining preflight that dispatches to them."""

from __future__ import annotations

import dataclasses

import omegaconf
import pytest
from clamp_testing import small_method_kwargs
from omegaconf import OmegaConf

solo = pytest.importorskip("solo", reason="solo-learn is not installed: integration tier skipped")

from solo.methods import METHODS  # noqa: E402

from solo_clamp.methods import CLAMP, ManifoldCLR, facts_of, known  # noqa: E402
from solo_clamp.methods.clamp import ClampKwargs  # noqa: E402
from solo_clamp.methods.manifoldclr_kwargs import ManifoldCLRKwargs  # noqa: E402
from solo_clamp.training.checks import preflight  # noqa: E402

pytestmark = pytest.mark.integration

BASE = {"proj_hidden_dim": 64, "proj_output_dim": 32, "rs": 7.0}
CLAMP_DEFAULTS = {
    "proj_hidden_layers": 1,
    "pot_pow": 2.0,
    "lw0": 0.0,
    "lw1": 1.0,
    "min_margin": 1e-3,
    "max_range": 1.5,
    "joint_forward": True,
    "tile_size": None,
    "ddp_gradient": "full",
}


def checked(method_class, kwargs, num_views):
    """``method_kwargs`` as the class's add_and_assert_specific_cfg completes them."""
    cfg = OmegaConf.create(
        {"method_kwargs": kwargs, "augmentations": [{"crop_size": 32, "num_crops": num_views}]}
    )
    return method_class.facts.check(cfg).method_kwargs


def check_clamp_kwargs(kwargs, num_views):
    return checked(CLAMP, kwargs, num_views)


def check_manifoldclr_kwargs(kwargs, num_views):
    return checked(ManifoldCLR, kwargs, num_views)


def test_defaults_are_filled_in():
    kwargs = check_clamp_kwargs(dict(BASE), num_views=4)
    for name, value in CLAMP_DEFAULTS.items():
        assert kwargs[name] == value
    assert kwargs.rs == 7.0
    assert ClampKwargs(**BASE).max_range == CLAMP_DEFAULTS["max_range"]


@pytest.mark.parametrize(
    "override,num_views,message",
    [
        ({"rs": 0.0}, 4, r"method_kwargs.rs must be > 0"),
        ({"rs": -1}, 4, r"method_kwargs.rs must be > 0"),
        (
            {"max_range": 1e-4},
            4,
            r"method_kwargs: max_range must be > min_margin, got max_range=0.0001,",
        ),
        ({"min_margin": -1.0}, 4, r"method_kwargs.min_margin must be >= 0"),
        ({"pot_pow": 0}, 4, r"method_kwargs.pot_pow must be > 0"),
        ({"lw0": 0.0, "lw1": 0.0}, 4, r"cannot both be 0"),
        (
            {"proj_hidden_dim": 0},
            4,
            r"method_kwargs.proj_hidden_dim must be a positive integer, got 0\.",
        ),
        ({"proj_hidden_layers": -1}, 4, r"proj_hidden_layers must be an integer >= 0, got -1"),
        ({"joint_forward": "maybe"}, 4, r"joint_forward must be true or false"),
        (
            {"proj_hidden_dim": 2.5},
            4,
            r"proj_hidden_dim must be a positive integer, got 2.5",
        ),
        ({"tile_size": "auto"}, 4, r"tile_size must be a positive integer or null, got 'auto'"),
        ({"radius": 7.0}, 4, r"method_kwargs.radius is not a field; fields: \['proj_hidden_dim', "),
        ({"tile_size": 0}, 4, r"tile_size must be a positive integer or null, got 0"),
        (
            {"ddp_gradient": "sum"},
            4,
            r"method_kwargs.ddp_gradient must be 'full' or 'local', got 'sum'",
        ),
        ({"rs": "big"}, 4, r"method_kwargs.rs must be a number"),
        ({}, 1, r"method=clamp takes at least 2 views per image"),
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
        ("method", "barlow_twins", r"method must be one of \['byol', 'clamp', 'manifoldclr'"),
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


def test_manifoldclr_defaults_are_the_official_cifar10_soft_threshold_config():
    kwargs = check_manifoldclr_kwargs({}, num_views=2)
    assert dict(kwargs) == dataclasses.asdict(ManifoldCLRKwargs())
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
        "transop_lr": 5e-4,  # per 256 images: 1e-3 at the official batch of 512
        "transop_weight_decay": 1e-3,
        "transop_grad_clip": 0.1,
        "vi_lr": 5e-5,  # per 256 images: 1e-4 at batch 512
        "vi_weight_decay": 1e-5,
        "vi_grad_clip": 1.0,
        "init_imag_range": 6.0,
        "init_real_range": 1e-4,
        "proj_hidden_dim": 1024,
        "proj_output_dim": 128,
    }
    assert {name: kwargs[name] for name in official} == official


def test_manifoldclr_given_values_are_kept():
    kwargs = check_manifoldclr_kwargs({"dictionary_size": 8, "backbone_grad_clip": 1.0}, 2)
    assert kwargs.dictionary_size == 8 and kwargs.backbone_grad_clip == 1.0
    assert kwargs.block_dim == 64


@pytest.mark.parametrize(
    "override,message",
    [
        ({"dictionary_size": 0}, r"method_kwargs.dictionary_size must be a positive integer"),
        ({"block_dim": 7}, r"method_kwargs.block_dim must be even"),
        ({"block_dim": 1}, r"method_kwargs.block_dim must be an integer >= 2"),
        (
            {"vi_hidden_dim": 2.5},
            r"vi_hidden_dim must be a positive integer, got 2.5",
        ),
        ({"max_elbo_samples": 0}, r"method_kwargs.max_elbo_samples must be a positive integer"),
        ({"prior_warmup_steps": -1}, r"method_kwargs.prior_warmup_steps must be an integer >= 0"),
        ({"scale_prior": 0.0}, r"method_kwargs.scale_prior must be > 0"),
        ({"temperature": -0.5}, r"method_kwargs.temperature must be > 0"),
        ({"threshold": -0.01}, r"method_kwargs.threshold must be >= 0"),
        ({"kl_weight": "big"}, r"method_kwargs.kl_weight must be a number"),
        ({"shift_prior": float("nan")}, r"method_kwargs.shift_prior must be a finite number"),
        ({"transop_lr": 0}, r"method_kwargs.transop_lr must be > 0"),
        ({"vi_grad_clip": 0.0}, r"method_kwargs.vi_grad_clip must be > 0"),
        ({"rs": 7.0}, r"method_kwargs.rs is not a field; fields: \['proj_hidden_dim', "),
    ],
)
def test_bad_manifoldclr_values_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        check_manifoldclr_kwargs(override, num_views=2)


@pytest.mark.parametrize("views", [1, 3, 4])
def test_exactly_two_views(views):
    with pytest.raises(ValueError, match="method=manifoldclr takes exactly 2 views per image"):
        check_manifoldclr_kwargs({}, num_views=views)


def test_manifoldclr_null_clips_are_allowed():
    kwargs = check_manifoldclr_kwargs({"transop_grad_clip": None, "vi_grad_clip": None}, 2)
    assert kwargs.transop_grad_clip is None and kwargs.vi_grad_clip is None


def manifoldclr_cfg(tmp_path, **overrides):
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
    preflight(manifoldclr_cfg(tmp_path))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("method", "swav", r"method must be one of \[.*\] for this program, got 'swav'"),
        ("augmentations", [{"crop_size": 32, "num_crops": 4}], "exactly 2 views per image"),
        ("method_kwargs.block_dim", 3, "method_kwargs.block_dim must be even"),
        ("method_kwargs.rs", 7.0, "method_kwargs.rs is not a field"),
    ],
)
def test_preflight_dispatches_the_checks_by_method(tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        preflight(manifoldclr_cfg(tmp_path, **{key: value}))


def test_clamp_keeps_its_own_checks(tmp_path):
    # both schemas refuse keys they do not know: ManifoldCLR's kwargs are not CLAMP's
    cfg = manifoldclr_cfg(tmp_path, method="clamp")
    with pytest.raises(ValueError, match=r"method_kwargs.dictionary_size is not a field"):
        preflight(cfg)
    cfg.method_kwargs = {}
    with pytest.raises(ValueError, match="method_kwargs.proj_hidden_dim is required"):
        preflight(cfg)


def solo_learn_built_cfg(method: str, kwargs: dict, num_large_crops: int) -> OmegaConf:
    """A cfg as solo-learn's own method tests build one (tests/methods/utils.py,
    ``gen_base_cfg``): ``data.num_large_crops`` / ``num_small_crops`` set, no ``augmentations``
    node, never passed through ``parse_cfg``."""
    cfg = OmegaConf.create(
        {
            "name": "test",
            "method": method,
            "backbone": {"name": "resnet18"},
            "data": {
                "dataset": "custom",
                "train_path": ".",
                "val_path": ".",
                "format": "image_folder",
                "num_workers": 4,
                "num_large_crops": num_large_crops,
                "num_small_crops": 0,
                "num_classes": 10,
            },
            "optimizer": {
                "name": "lars",
                "batch_size": 8,
                "lr": 0.3,
                "classifier_lr": 0.1,
                "weight_decay": 1e-5,
                "kwargs": {"momentum": 0.9},
            },
            "scheduler": {"name": "warmup_cosine"},
            "checkpoint": {"enabled": False},
            "auto_resume": {"enabled": False},
            "max_epochs": 5,
            "devices": 1,
            "accelerator": "cpu",
            "num_nodes": 1,
            "method_kwargs": kwargs,
        }
    )
    OmegaConf.set_struct(cfg, False)
    return cfg


@pytest.mark.parametrize(
    "method_class, kwargs, crops",
    [(CLAMP, dict(BASE), 4), (ManifoldCLR, {"block_dim": 16, "dictionary_size": 4}, 2)],
)
def test_a_cfg_built_as_solo_learns_method_tests_build_one_is_accepted(method_class, kwargs, crops):
    import torch

    cfg = method_class.add_and_assert_specific_cfg(
        solo_learn_built_cfg(method_class.__name__.lower(), kwargs, crops)
    )
    model = method_class(cfg)
    batch = [torch.arange(2), [torch.randn(2, 3, 32, 32) for _ in range(crops)], torch.arange(2)]
    assert torch.isfinite(model.training_step(batch, 0))


def test_the_views_of_data_and_of_augmentations_must_agree():
    cfg = solo_learn_built_cfg("clamp", dict(BASE), 4)
    cfg.augmentations = [{"crop_size": 32, "num_crops": 2}]
    with pytest.raises(
        ValueError,
        match=r"data.num_large_crops \+ data.num_small_crops = 4 but the sum of "
        r"augmentations\[\*\].num_crops is 2",
    ):
        CLAMP.add_and_assert_specific_cfg(cfg)
    cfg.augmentations[0].num_crops = 4  # as parse_cfg leaves them: both, equal
    assert CLAMP.add_and_assert_specific_cfg(cfg).method_kwargs.rs == 7.0
    with pytest.raises(ValueError, match="method=manifoldclr takes exactly 2 views"):
        ManifoldCLR.add_and_assert_specific_cfg(solo_learn_built_cfg("manifoldclr", {}, 4))


SOLO_LEARNS = [m for m in known() if METHODS[m].__module__.startswith("solo.")]


def test_solo_learns_methods_have_facts():
    assert len(SOLO_LEARNS) == 3


@pytest.mark.parametrize("method", SOLO_LEARNS)
def test_a_solo_learn_methods_schema_is_its_own_check(method, clamp_cfg_factory):
    """The schema fills in the defaults solo-learn's ``add_and_assert_specific_cfg`` fills
    in, and requires the fields without one: those the class cannot be built without
    (solo-learn's own ``OmegaConf.is_missing(cfg, "method_kwargs.x")`` asserts never fire:
    ``is_missing`` takes no dotted key)."""
    facts = facts_of(method)
    given = small_method_kwargs(facts.kwargs_schema)

    def cfg(kwargs):
        made = clamp_cfg_factory(num_views=2)
        made.method, made.method_kwargs, made.momentum = method, dict(kwargs), {}
        return made

    solo_filled = METHODS[method].add_and_assert_specific_cfg(cfg(given)).method_kwargs
    assert facts.check(cfg(given)).method_kwargs == solo_filled
    for name in given:
        rest = {k: v for k, v in given.items() if k != name}
        solo_cfg = METHODS[method].add_and_assert_specific_cfg(cfg(rest))  # passes
        with pytest.raises(omegaconf.errors.ConfigAttributeError, match=name):
            METHODS[method](solo_cfg)
        with pytest.raises(ValueError, match=f"method_kwargs.{name} is required"):
            facts.check(cfg(rest))
