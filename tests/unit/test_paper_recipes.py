"""Our paper-recipe YAMLs against the official CLAMP configs (github:guanming-zhang/clamp,
4c6f3cf, ``examples/*/config.ini``), value by value. The table below is read from those files;
docs/paper_recipes.md gives the same values with the reasons for each difference."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"

_CIFAR = {
    "views": 16,
    "transform_sets": 1,
    "crop_size": 32,
    "crop_scale": (0.08, 1.0),
    "blur": [(0.5, 3)],
    "grayscale": [0.2],
    "solarize": [0.0],
    "flip": [0.5],
    "jitter": [(0.8, 0.8, 0.8, 0.8, 0.2)],
    "rs": 7.0,
    "pot_pow": 2.0,
    "lw0": 0.0,
    "lw1": 1.0,
    "projector": (1, 2048, 256),
    "global_batch": 128,
    "lr": 0.1,
    "lars_eta": 1e-3,
    "momentum": 0.9,
    "weight_decay": 1e-6,
    "exclude_bias_n_norm": True,
    "warmup_epochs": 10,
    "epochs": 1000,
}
_IMAGENET_AUG = {
    "transform_sets": 2,
    "crop_size": 224,
    "crop_scale": (0.08, 1.0),
    # solo-learn's blur has no kernel limit; the official 23 x 23 kernel at sigma <= 2 is
    # wider than the Gaussian's support (3 sigma = 6 px), so no kernel_size is set.
    "blur": [(1.0, None), (0.1, None)],
    "grayscale": [0.2, 0.2],
    "solarize": [0.0, 0.2],
    "flip": [0.5, 0.5],
    "jitter": [(0.8, 0.4, 0.4, 0.2, 0.1)] * 2,
    "rs": 8.5,
    "pot_pow": 2.0,
    "lw0": 0.0,
    "lw1": 1.0,
    "projector": (2, 8192, 512),
    "global_batch": 512,
    "lars_eta": 1e-3,
    "momentum": 0.9,
    "weight_decay": 1e-6,
    "exclude_bias_n_norm": True,
    "warmup_epochs": 10,
}
OFFICIAL = {
    "cifar/clamp.yaml": _CIFAR,  # examples/cifar10
    "cifar/clamp_cifar100.yaml": _CIFAR,
    "imagenet-100/clamp.yaml": {**_IMAGENET_AUG, "views": 4, "lr": 2.0, "epochs": 200},
    "imagenet/clamp.yaml": {**_IMAGENET_AUG, "views": 4, "lr": 1.1, "epochs": 100},
    "imagenet/clamp_8views.yaml": {**_IMAGENET_AUG, "views": 8, "lr": 1.1, "epochs": 100},
}
OFFICIAL_LINEAR = {
    "cifar/clamp.yaml": {
        "optimizer": "adam",
        "lrs": [0.3, 0.1, 0.05],
        "global_batch": 1024,
        "epochs": 100,
        "weight_decay": 0.0,
    },
    "imagenet-100/clamp.yaml": {
        "optimizer": "sgd",
        "lrs": [0.05, 0.1, 0.2, 0.4],
        "global_batch": 2048,
        "epochs": 100,
        "weight_decay": 1e-6,
    },
    "imagenet/clamp.yaml": {
        "optimizer": "sgd",
        "lrs": [0.8, 1.2, 1.6],
        "global_batch": 2048,
        "epochs": 100,
        "weight_decay": 1e-6,
    },
}


def load(kind: str, name: str):
    directory, file = (SCRIPTS / kind / name).parent, Path(name).name
    with initialize_config_dir(config_dir=str(directory), version_base="1.2"):
        cfg = compose(config_name=file, return_hydra_config=True)
    return cfg


def devices(cfg) -> int:
    return len(cfg.devices) if OmegaConf.is_list(cfg.devices) else int(cfg.devices)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_pretrain_recipe_matches_the_official_config(name):
    official, cfg = OFFICIAL[name], load("pretrain", name)
    augs = cfg.augmentations
    assert sum(a.num_crops for a in augs) == official["views"]
    assert len(augs) == official["transform_sets"]
    for index, aug in enumerate(augs):
        assert aug.crop_size == official["crop_size"]
        assert (aug.rrc.crop_min_scale, aug.rrc.crop_max_scale) == official["crop_scale"]
        prob, kernel = official["blur"][index]
        assert aug.gaussian_blur.prob == prob
        assert OmegaConf.select(aug, "gaussian_blur.kernel_size") == kernel
        if kernel is not None:
            assert (aug.gaussian_blur.sigma_min, aug.gaussian_blur.sigma_max) == (0.1, 2.0)
        assert aug.grayscale.prob == official["grayscale"][index]
        assert aug.solarization.prob == official["solarize"][index]
        assert aug.horizontal_flip.prob == official["flip"][index]
        jitter = aug.color_jitter
        assert (
            jitter.prob,
            jitter.brightness,
            jitter.contrast,
            jitter.saturation,
            jitter.hue,
        ) == official["jitter"][index]
    kwargs = cfg.method_kwargs
    for key in ("rs", "pot_pow", "lw0", "lw1"):
        assert kwargs[key] == official[key], key
    assert (kwargs.proj_hidden_layers, kwargs.proj_hidden_dim, kwargs.proj_output_dim) == (
        official["projector"]
    )
    assert kwargs.ddp_gradient == "local"  # the official DDP gradient convention
    opt = cfg.optimizer
    assert opt.batch_size * devices(cfg) == official["global_batch"]
    assert opt.name == "lars" and opt.lr == official["lr"]
    assert opt.kwargs.eta == official["lars_eta"] and opt.kwargs.momentum == official["momentum"]
    assert opt.kwargs.clip_lr is False
    assert opt.weight_decay == official["weight_decay"]
    assert opt.kwargs.exclude_bias_n_norm is official["exclude_bias_n_norm"]
    assert opt.exclude_bias_n_norm_wd is official["exclude_bias_n_norm"]
    assert cfg.scheduler.name == "warmup_cosine"
    assert cfg.scheduler.warmup_epochs == official["warmup_epochs"]
    assert cfg.max_epochs == official["epochs"]
    assert cfg.precision == "16-mixed"


@pytest.mark.parametrize("name", sorted(OFFICIAL_LINEAR))
def test_linear_recipe_matches_the_official_config(name):
    official, cfg = OFFICIAL_LINEAR[name], load("linear", name)
    assert cfg.optimizer.name == official["optimizer"]
    if official["optimizer"] == "sgd":
        assert cfg.optimizer.kwargs.nesterov is True and cfg.optimizer.kwargs.momentum == 0.9
    sweep = cfg.hydra.sweeper.params["optimizer.lr"]
    assert [float(v) for v in str(sweep).split(",")] == official["lrs"]
    assert cfg.optimizer.lr in official["lrs"]
    assert cfg.optimizer.batch_size * devices(cfg) == official["global_batch"]
    assert cfg.max_epochs == official["epochs"]
    assert float(cfg.optimizer.weight_decay) == official["weight_decay"]


# The official ManifoldCLR run (github:kfallah/manifold-contrastive, 15294ef): config/base.yaml
# (AdamW, initial_lr 3e-3, weight_decay 1e-5, LinearWarmupCosineAnnealingLR with warmup_epochs
# 10 from 0, 1000 epochs), dataloader/cifar10.yaml (train_batch_size 512) and
# transop_vi-thresh_proj_cifar10.yaml over transop_base.yaml (operators: transop_lr 1e-3,
# transop_weight_decay 1e-3; posterior and prior: variational_encoder_lr 1e-4, weight decay
# 1e-5). Every group's rate per sample is its lr over the batch of 512.
MANIFOLDCLR_OFFICIAL = {
    "batch": 512,
    "lr": 3e-3,
    "transop_lr": 1e-3,
    "vi_lr": 1e-4,
    "weight_decay": 1e-5,
    "transop_weight_decay": 1e-3,
    "vi_weight_decay": 1e-5,
    "warmup_epochs": 10,
}
# (config, its official reference, warm-up epochs): ImageNet-100 follows the official
# TinyImageNet config (transop_vi-thresh_proj_tin.yaml: initial_lr 2e-3, the same groups); CPU
# configs shorten the warm-up with the run (their header says how, and what it does).
MANIFOLDCLR_TINYIMAGENET = {**MANIFOLDCLR_OFFICIAL, "lr": 2e-3}
MANIFOLDCLR_CONFIGS = {
    "cifar/manifoldclr.yaml": (MANIFOLDCLR_OFFICIAL, 10),
    "imagenet-100/manifoldclr.yaml": (MANIFOLDCLR_TINYIMAGENET, 10),
    "mnist/manifoldclr.yaml": (MANIFOLDCLR_OFFICIAL, 1),
}


@pytest.mark.parametrize("name", sorted(MANIFOLDCLR_CONFIGS))
def test_manifoldclr_rates_per_sample_are_the_official_ones(name):
    (official, warmup_epochs), cfg = MANIFOLDCLR_CONFIGS[name], load("pretrain", name)
    batch = cfg.optimizer.batch_size * devices(cfg)
    kwargs = cfg.method_kwargs
    # every lr is per 256 images: solo-learn (optimizer.lr) and ManifoldCLR (its two groups)
    # scale it by the global batch / 256, so the rate per sample is lr / 256
    for per_256, key in (
        (cfg.optimizer.lr, "lr"),
        (kwargs.transop_lr, "transop_lr"),
        (kwargs.vi_lr, "vi_lr"),
    ):
        rate = per_256 * (batch / 256) / batch
        assert rate == pytest.approx(official[key] / official["batch"], rel=1e-9), key
    assert cfg.optimizer.name == "adamw"
    assert cfg.optimizer.weight_decay == official["weight_decay"]
    assert kwargs.transop_weight_decay == official["transop_weight_decay"]
    assert kwargs.vi_weight_decay == official["vi_weight_decay"]
    # a linear warm-up from 0 for every group (solo-learn warms each group to its own lr)
    assert cfg.scheduler.name == "warmup_cosine"
    assert cfg.scheduler.warmup_start_lr == 0.0
    assert cfg.scheduler.warmup_epochs == warmup_epochs
