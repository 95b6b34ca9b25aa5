"""The comparison config: loading (``base:`` chains over the defaults of its schema,
:class:`~solo_clamp.compare.schema.ComparisonConfig`), quick mode, validation and the torch
thread setting."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare import strength
from solo_clamp.compare.data import DATASETS, IDX_DATASETS
from solo_clamp.compare.plan import method_of
from solo_clamp.compare.run_cfg import RUN_YAML
from solo_clamp.compare.schema import BUDGETS, ComparisonConfig, defaults
from solo_clamp.compare.tuning import validate_grid
from solo_clamp.configs import config_dir
from solo_clamp.errors import ConfigError
from solo_clamp.methods import facts_of, known
from solo_clamp.validation import validated

CONFIG_DIR = config_dir("compare")
DEFAULTS: dict[str, Any] = defaults(ComparisonConfig)
"""Every field a comparison config may leave out, with its default."""


def default_config_path(dataset: str = "fashion_mnist") -> Path:
    """The shipped comparison config of ``dataset`` (``scripts/compare/<dataset>.yaml``)."""
    path = CONFIG_DIR / f"{dataset}.yaml"
    if not path.exists() or path == RUN_YAML:
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p != RUN_YAML)
        raise ConfigError(f"dataset {dataset!r} has no shipped config; shipped: {shipped}.")
    return path


def _merged(below: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``below``: mappings merge key by key, any other value replaces."""
    out = dict(below)
    for key, value in over.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def _read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """Reads one config as plain data (interpolations kept); ``base: other.yaml`` (relative to
    it) is merged underneath."""
    if not path.is_file():
        raise ConfigError(f"config {str(path)!r} does not exist or is not a file.")
    loaded = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(loaded, dict):
        raise ConfigError(f"config {str(path)!r} must be a YAML mapping.")
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    if depth >= 4:
        raise ConfigError(f"config {str(path)!r}: base chains deeper than 4 files (a cycle?).")
    return _merged(_read_yaml(path.parent / str(base), depth + 1), loaded)


def load_config(path: Optional[os.PathLike] = None, dataset: Optional[str] = None) -> DictConfig:
    """Loads a comparison config over :data:`DEFAULTS` (untyped: later code may add fields;
    :func:`validate_config` checks it): ``path``, else the shipped config of ``dataset``; with
    both, ``dataset`` replaces the file's ``dataset``."""
    path = Path(path) if path is not None else default_config_path(dataset or "fashion_mnist")
    cfg = OmegaConf.create(_merged(DEFAULTS, _read_yaml(path)))
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


def validate_config(cfg: DictConfig) -> None:
    """Checks a comparison config: every field's type and minimum by :class:`ComparisonConfig`,
    then what a type cannot say; raises ConfigError naming the field and the allowed values.
    Completes the recipe of an entry that names another method (``recipes.<entry>.method``)."""
    if OmegaConf.select(cfg, "floors.seed") is not None:
        raise ConfigError(
            "floors.seed was removed: the untrained backbone is scored for every seed of "
            "`seeds` (the initial weights of that seed's runs); remove floors.seed."
        )
    if OmegaConf.select(cfg, "tuning.clamp_rs") is not None:  # the field of earlier versions
        raise ConfigError(
            "tuning.clamp_rs was replaced by tuning.method_kwargs: write "
            f"`method_kwargs: {{clamp: {{rs: {list(cfg.tuning.clamp_rs)}}}}}`."
        )
    validated(ComparisonConfig, OmegaConf.to_container(cfg, resolve=True))
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {list(DATASETS)}, got {cfg.dataset!r}.")
    recipes, methods = cfg.recipes, list(cfg.methods)
    if not methods:
        raise ConfigError(f"methods must list at least one of {sorted(recipes)}.")
    for method in methods:
        if method not in recipes:
            raise ConfigError(
                f"methods: {method!r} has no recipe in this config; allowed: {sorted(recipes)}."
            )
        solo_method = method_of(cfg, method)
        if solo_method not in known():
            field = f"recipes.{method}.method" if solo_method != method else "methods"
            raise ConfigError(f"{field}: {solo_method!r} is not supported; allowed: {known()}.")
    _complete_entries(cfg)
    budgets = list(cfg.budgets)
    if not budgets or any(b not in BUDGETS for b in budgets):
        raise ConfigError(f"budgets must be a non-empty subset of {list(BUDGETS)}, got {budgets}.")
    seeds = list(cfg.seeds)
    if not seeds:
        raise ConfigError("seeds must be a non-empty list of integers, got [].")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must not repeat, got {seeds}.")
    if not 0 < cfg.projector_scale <= 1:
        raise ConfigError(f"projector_scale must be in (0, 1], got {cfg.projector_scale!r}.")
    augmentations = cfg.augmentations
    if not augmentations:
        raise ConfigError("augmentations must list at least one transform set.")
    crop = augmentations[0].get("crop_size")
    if any(aug.get("crop_size") != crop for aug in augmentations):
        raise ConfigError("augmentations[*].crop_size must be equal: all views are large crops.")
    for method in methods:
        _validate_recipe(method, method_of(cfg, method), recipes[method], len(augmentations))
    if cfg.evaluation.distance not in ("cosine", "euclidean"):
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
    _validate_tuning(cfg)


def _complete_entries(cfg: DictConfig) -> None:
    """An entry whose recipe names another method (``recipes.<entry>.method``, e.g. an
    ablation) gets that method's recipe under its own fields, so it states only what differs
    (the method's recipe as ``--set`` left it)."""
    for entry in cfg.methods:
        method = method_of(cfg, entry)
        if method != entry and OmegaConf.is_dict(cfg.recipes.get(method)):
            cfg.recipes[entry] = OmegaConf.merge(cfg.recipes[method], cfg.recipes[entry])


def _validate_recipe(method: str, solo_method: str, recipe: DictConfig, sets: int) -> None:
    """``recipes.<method>``'s views (its solo-learn method's rule, a multiple of the
    augmentation sets) and its lack of a warm-up of its own."""
    if not OmegaConf.is_dict(recipe):
        raise ConfigError(
            f"recipes.{method} must be a mapping of solo-learn fields, got {recipe!r}."
        )
    views = recipe.get("views", 2)
    if isinstance(views, bool) or not isinstance(views, int) or views < 2:
        raise ConfigError(f"recipes.{method}.views must be an integer >= 2, got {views!r}.")
    if views % sets:
        raise ConfigError(
            f"recipes.{method}.views ({views}) must be a multiple of the number of "
            f"augmentation sets ({sets}): each set gives views/sets crops."
        )
    rule = facts_of(solo_method).views
    if not rule.allows(views):
        raise ConfigError(
            f"recipes.{method}.views must be {rule.wanted} ({rule.why}), got {views}."
        )
    for key in ("warmup_epochs", "warmup_start_lr"):
        if OmegaConf.select(recipe, f"scheduler.{key}") is not None:
            raise ConfigError(
                f"recipes.{method}.scheduler.{key}: every method warms up by the "
                f"comparison's scheduler.{key} (one policy for all); remove it from the recipe."
            )


def _validate_tuning(cfg: DictConfig) -> None:
    """``tuning`` beyond its types: --tune-only needs tuning, the validation images come out
    of the training images, and the grid (``validate_grid``)."""
    tuning = cfg.tuning
    if not tuning.enabled:
        if tuning.only:
            raise ConfigError(
                "tuning.only=true (--tune-only) needs tuning.enabled=true: "
                "there is no tuning to stop after."
            )
        return
    train_per_class = cfg.data.train_per_class
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
