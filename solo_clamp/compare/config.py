"""The comparison config: loading (``base:`` chains over :data:`DEFAULTS`), quick mode,
validation and the torch thread setting."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare import strength
from solo_clamp.compare.data import DATASETS, IDX_DATASETS
from solo_clamp.compare.plan import RUN_YAML
from solo_clamp.compare.tuning import validate_grid
from solo_clamp.configs import config_dir
from solo_clamp.errors import ConfigError
from solo_clamp.methods import facts_of, known

CONFIG_DIR = config_dir("compare")
BUDGETS = ("equal_epochs", "equal_compute")
# Every field a comparison config may leave out (a config must give methods, recipes,
# augmentations, epochs and batch_size; see scripts/compare/fashion_mnist.yaml).
DEFAULTS: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "data": {
        "root": "datasets",
        "source": None,
        "train_path": None,
        "val_path": None,
        "train_per_class": None,
        "val_per_class": None,
        "seed": 0,
        "num_workers": 0,
    },
    "budgets": list(BUDGETS),
    "seeds": [0],
    "backbone": {"name": "resnet18", "kwargs": {}},
    "projector_scale": 1.0,
    # One warm-up for every method: warmup_epochs of the `epochs` budget, scaled to each run's
    # length (plan.solo_cfg); recipes may not set their own.
    "scheduler": {"name": "warmup_cosine", "warmup_epochs": 0},
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "precision": 32,
        "channels_last": False,
        "progress_bar": True,
        "log_every_n_steps": 10,
        "threads": None,
    },
    "curves": {"per_class": 50, "every_n_epochs": 1},
    "evaluation": {
        "k": 20,
        "temperature": 0.07,
        "distance": "cosine",
        "batch_size": 256,
        "device": "auto",
        "train_per_class": None,
        "val_per_class": None,
        "linear": {"epochs": 100, "lr": 0.01, "weight_decay": 1e-5},
        # few-label probes (linear, evaluation.linear's settings) on draws from the kNN bank
        "few_label": {
            "enabled": False,
            "per_class": 5,
            "draws": 5,
            "seed": 0,
            "feature_augment": {"samples": 0},  # per labelled image, methods that have one
        },
    },
    # raw pixels once; the untrained backbone once per seed of `seeds`
    "floors": {"raw_pixel_size": None},
    # Fair tuning (solo_clamp.compare.tuning); lr_multipliers: a list, or method -> list;
    # method_kwargs: {method: {kwarg: [values]}}.
    "tuning": {
        "enabled": False,
        "lr_multipliers": None,
        "method_kwargs": {},
        "val_per_class": 50,
        "epochs": 4,
        "seed": 0,
        "only": False,  # stop after tuning: validation scores only, no final (test) runs
        "curves": False,  # trials record validation kNN every curves.every_n_epochs
        "max_extensions": 2,  # bracketing: lr steps past an edge of the grid, per method
    },
    "quick": False,
    **strength.STUDY_DEFAULTS,  # variants (the strength axis), geometry: compare/strength.py
}


def default_config_path(dataset: str = "fashion_mnist") -> Path:
    """The shipped comparison config of ``dataset`` (``scripts/compare/<dataset>.yaml``)."""
    path = CONFIG_DIR / f"{dataset}.yaml"
    if not path.exists() or path == RUN_YAML:
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p != RUN_YAML)
        raise ConfigError(f"dataset {dataset!r} has no shipped config; shipped: {shipped}.")
    return path


def _read_yaml(path: Path, depth: int = 0) -> DictConfig:
    """Reads one config; ``base: other.yaml`` (relative to it) is merged underneath."""
    if not path.is_file():
        raise ConfigError(f"config {str(path)!r} does not exist or is not a file.")
    loaded = OmegaConf.load(path)
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"config {str(path)!r} must be a YAML mapping.")
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    if depth >= 4:
        raise ConfigError(f"config {str(path)!r}: base chains deeper than 4 files (a cycle?).")
    return OmegaConf.merge(_read_yaml(path.parent / str(base), depth + 1), loaded)


def load_config(path: Optional[os.PathLike] = None, dataset: Optional[str] = None) -> DictConfig:
    """Loads a comparison config over :data:`DEFAULTS`: ``path``, else the shipped config of
    ``dataset``; with both, ``dataset`` replaces the file's ``dataset``."""
    path = Path(path) if path is not None else default_config_path(dataset or "fashion_mnist")
    cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), _read_yaml(path))
    OmegaConf.set_struct(cfg, False)
    if dataset is not None:
        cfg.dataset = dataset
    return cfg


def apply_quick(cfg: DictConfig) -> DictConfig:
    """The tiny smoke setting: a few images per class (MNIST / Fashion-MNIST; elsewhere only
    the evaluation sets shrink), 2 epochs, small batches, one seed; tuning (when enabled): 4
    validation images per class, 1 epoch per trial, the same grid."""
    if cfg.dataset in IDX_DATASETS:
        cfg.data.train_per_class, cfg.data.val_per_class = 16, 8
    else:
        cfg.evaluation.train_per_class, cfg.evaluation.val_per_class = 16, 8
    cfg.curves.per_class = 4
    cfg.curves.every_n_epochs = 1
    cfg.epochs = 2
    cfg.batch_size = 16
    cfg.seeds = [int(cfg.seeds[0])]
    cfg.evaluation.linear.epochs = 20
    cfg.tuning.val_per_class, cfg.tuning.epochs = 4, 1
    strength.quick_geometry(cfg)
    cfg.quick = True
    return cfg


def _integer(cfg: DictConfig, key: str, minimum: Optional[int] = 1, allow_none=False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    low = minimum is not None and isinstance(value, int) and value < minimum
    if isinstance(value, bool) or not isinstance(value, int) or low:
        kind = {None: "an integer", 0: "an integer >= 0", 1: "a positive integer"}[minimum]
        raise ConfigError(f"{key} must be {kind}{' or null' if allow_none else ''}, got {value!r}.")


def _flag(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key, default=False)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}.")


def validate_config(cfg: DictConfig) -> None:
    """Checks a comparison config; raises ValueError naming the field and the allowed values."""
    if cfg.get("dataset") not in DATASETS:
        raise ConfigError(f"dataset must be one of {list(DATASETS)}, got {cfg.get('dataset')!r}.")
    recipes = cfg.get("recipes") or {}
    methods = list(cfg.get("methods") or [])
    if not methods:
        raise ConfigError(f"methods must list at least one of {sorted(recipes)}.")
    for method in methods:
        if method not in recipes:
            raise ConfigError(
                f"methods: {method!r} has no recipe in this config; allowed: {sorted(recipes)}."
            )
        if method not in known():
            raise ConfigError(f"methods: {method!r} is not supported; allowed: {known()}.")
    budgets = list(cfg.get("budgets") or [])
    if not budgets or any(b not in BUDGETS for b in budgets):
        raise ConfigError(f"budgets must be a non-empty subset of {list(BUDGETS)}, got {budgets}.")
    seeds = list(cfg.get("seeds") or [])
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of integers, got {seeds}.")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must not repeat, got {seeds}.")
    for key in (
        "epochs",
        "batch_size",
        "curves.every_n_epochs",
        "evaluation.k",
        "evaluation.batch_size",
        "evaluation.linear.epochs",
    ):
        _integer(cfg, key)
    for key in (
        "data.train_per_class",
        "data.val_per_class",
        "curves.per_class",
        "trainer.threads",
    ):
        _integer(cfg, key, allow_none=True)
    scale = cfg.get("projector_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ConfigError(f"projector_scale must be in (0, 1], got {scale!r}.")
    augmentations = cfg.get("augmentations")
    if not augmentations:
        raise ConfigError("augmentations must list at least one transform set.")
    crop = augmentations[0].get("crop_size")
    if any(aug.get("crop_size") != crop for aug in augmentations):
        raise ConfigError("augmentations[*].crop_size must be equal: all views are large crops.")
    for method in methods:
        views = recipes[method].get("views", 2)
        if isinstance(views, bool) or not isinstance(views, int) or views < 2:
            raise ConfigError(f"recipes.{method}.views must be an integer >= 2, got {views!r}.")
        if views % len(augmentations):
            raise ConfigError(
                f"recipes.{method}.views ({views}) must be a multiple of the number of "
                f"augmentation sets ({len(augmentations)}): each set gives views/sets crops."
            )
        rule = facts_of(method).views
        if not rule.allows(views):
            raise ConfigError(
                f"recipes.{method}.views must be {rule.wanted} ({rule.why}), got {views}."
            )
        for key in ("warmup_epochs", "warmup_start_lr"):
            if OmegaConf.select(recipes[method], f"scheduler.{key}") is not None:
                raise ConfigError(
                    f"recipes.{method}.scheduler.{key}: every method warms up by the "
                    f"comparison's scheduler.{key} (one policy for all); remove it from the "
                    "recipe."
                )
    if OmegaConf.select(cfg, "floors.seed") is not None:
        raise ConfigError(
            "floors.seed was removed: the untrained backbone is scored for every seed of "
            "`seeds` (the initial weights of that seed's runs); remove floors.seed."
        )
    if cfg.evaluation.get("distance", "cosine") not in ("cosine", "euclidean"):
        raise ConfigError(
            f"evaluation.distance must be 'cosine' or 'euclidean', got {cfg.evaluation.distance!r}."
        )
    if cfg.dataset not in IDX_DATASETS:
        for key in ("data.train_per_class", "data.val_per_class"):
            if OmegaConf.select(cfg, key) is not None:
                raise ConfigError(
                    f"{key} applies only to the datasets {list(IDX_DATASETS)} (prepared "
                    f"subsets), not to {cfg.dataset!r}: use evaluation.train_per_class / "
                    "val_per_class to subsample the evaluation sets."
                )
    if cfg.dataset in ("imagenet100", "image_folder"):
        for key in ("data.train_path", "data.val_path"):
            if not OmegaConf.select(cfg, key):
                raise ConfigError(
                    f"{key} is required for dataset {cfg.dataset!r} (an ImageFolder)."
                )
    strength.validate_study(cfg)  # variants (the tuning they refuse) and geometry
    _validate_stages(cfg)


def _validate_stages(cfg: DictConfig) -> None:
    """The fields of ``evaluation.few_label`` and ``tuning`` (its grid: ``validate_grid``)."""
    _flag(cfg, "evaluation.few_label.enabled")
    _integer(cfg, "evaluation.few_label.per_class")
    _integer(cfg, "evaluation.few_label.draws")
    _integer(cfg, "evaluation.few_label.seed", minimum=None)
    _integer(cfg, "evaluation.few_label.feature_augment.samples", minimum=0)
    tuning = cfg.tuning
    if not isinstance(tuning.get("enabled"), bool):
        raise ConfigError(f"tuning.enabled must be true or false, got {tuning.get('enabled')!r}.")
    _flag(cfg, "tuning.only")
    _flag(cfg, "tuning.curves")
    if tuning.get("clamp_rs") is not None:  # the field of earlier versions
        raise ConfigError(
            "tuning.clamp_rs was replaced by tuning.method_kwargs: write "
            f"`method_kwargs: {{clamp: {{rs: {list(tuning.clamp_rs)}}}}}`."
        )
    if not tuning.enabled:
        if tuning.get("only", False):
            raise ConfigError(
                "tuning.only=true (--tune-only) needs tuning.enabled=true: "
                "there is no tuning to stop after."
            )
        return
    _integer(cfg, "tuning.val_per_class")
    _integer(cfg, "tuning.epochs")
    _integer(cfg, "tuning.seed", minimum=None)
    _integer(cfg, "tuning.max_extensions", minimum=0)
    train_per_class = cfg.data.get("train_per_class")
    if train_per_class is not None and tuning.val_per_class >= train_per_class:
        raise ConfigError(
            f"tuning.val_per_class ({tuning.val_per_class}) must be smaller than "
            f"data.train_per_class ({train_per_class}): the validation images are taken from "
            "the training images, and the rest train and form the kNN bank."
        )
    validate_grid(cfg)


@contextlib.contextmanager
def torch_threads(cfg: DictConfig) -> Iterator[None]:
    """``trainer.threads``: torch's intra-op threads while the comparison runs (null: torch's
    default), restored afterwards. On a CPU shared with other jobs, 1 thread (plus one
    data-loading worker) avoids the OpenMP stalls of a parallel region waiting for a
    descheduled thread."""
    threads = OmegaConf.select(cfg, "trainer.threads")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
