"""The strength axis of a comparison (``variants:``) and the settings of the encoder-against-
projector measurements (``geometry:``), with their checks (their types: compare/schema.py).

``variants`` (default null: one unnamed variant, the comparison as it always was) maps a name
to ``{strength: <number>, augmentations: [<overrides>, ...]}``. Every method is trained under
every variant with the same seeds, budget and recipe; a variant's ``augmentations`` list gives,
per transform set of the config's ``augmentations``, the fields it changes (merged over that
set; ``{}`` keeps it), and ``strength`` is a number that orders the variants (the study's
x axis). A variant changes the augmentations only: crop size, mean and std are shared, since
they are also the evaluation transform's. Run ids carry the variant's name
(``<method>-<budget>-<variant>-s<seed>``).

``geometry`` (off by default): per run, the encoder (backbone) against the projector on the
views of held-out test images (:mod:`solo_clamp.compare.encoder_projector`), and, with
``geometry.transfer.dataset``, both scored on a dataset the runs did not train on
(:mod:`solo_clamp.compare.transfer`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from solo_clamp.errors import ConfigError

TRANSFER_DATASETS = ("mnist", "fashion_mnist", "image_folder")
SHARED_FIELDS = ("crop_size", "mean", "std", "num_crops")
"""Fields of a transform set that a variant may not change."""
_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def variant_names(cfg: DictConfig) -> list[Optional[str]]:
    """The variants in order of strength; ``[None]`` without ``variants``."""
    variants = cfg.get("variants")
    if not variants:
        return [None]
    return sorted(variants, key=lambda name: float(variants[name].strength))


def strength_of(cfg: DictConfig, variant: Optional[str]) -> Optional[float]:
    """The variant's ``strength``; None for the unnamed variant."""
    return None if variant is None else float(cfg.variants[variant].strength)


def variant_augmentations(cfg: DictConfig, variant: Optional[str]) -> list[DictConfig]:
    """The transform sets of ``variant``: each of ``augmentations`` with the variant's
    overrides merged over it (``augmentations`` itself for None)."""
    if variant is None:
        return list(cfg.augmentations)
    overrides = cfg.variants[variant].get("augmentations") or [{}] * len(cfg.augmentations)
    return [OmegaConf.merge(base, extra) for base, extra in zip(cfg.augmentations, overrides)]


def transfer_config(cfg: DictConfig) -> Optional[DictConfig]:
    """The transfer dataset as a comparison config's ``dataset`` and ``data`` fields (for
    locating or preparing it like the comparison's own data); None without one."""
    if not OmegaConf.select(cfg, "geometry.enabled"):
        return None
    node = cfg.geometry.transfer
    if node.get("dataset") is None:
        return None
    keys = ("source", "train_path", "val_path", "train_per_class", "val_per_class", "seed")
    data = {"root": cfg.data.root, **{key: node.get(key) for key in keys}}
    return OmegaConf.create({"dataset": node.dataset, "data": data})


def quick_geometry(cfg: DictConfig) -> None:
    """``--quick``: 2 held-out images per class, 4 views, a small transfer set."""
    cfg.geometry.per_class, cfg.geometry.views = 2, 4
    cfg.geometry.transfer.train_per_class, cfg.geometry.transfer.val_per_class = 16, 8


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"{key} {message}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _unknown_paths(override: Any, base: Any, prefix: str) -> list[str]:
    """The dotted paths of ``override`` that ``base`` does not have (typos)."""
    if not isinstance(override, dict):
        return []
    if not isinstance(base, dict):
        return [prefix]
    found = []
    for key, value in override.items():
        path = f"{prefix}.{key}"
        found += [path] if key not in base else _unknown_paths(value, base[key], path)
    return found


def _check_variant(cfg: DictConfig, name: str, node: Any, strengths: dict) -> None:
    key = f"variants.{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        _fail(key, "is not a valid name: use letters, digits and _ (it goes into run ids).")
    if not isinstance(node, dict):
        _fail(key, f"must be a mapping {{strength: <number>, augmentations: [...]}}, got {node!r}.")
    unknown = sorted(set(node) - {"strength", "augmentations"})
    if unknown:
        _fail(f"{key}.{unknown[0]}", "is not a field of a variant (strength, augmentations).")
    strength = node.get("strength")
    if not _number(strength):
        _fail(
            f"{key}.strength",
            f"must be a finite number (it orders the variants), got {strength!r}.",
        )
    if strength in strengths:
        _fail(
            f"{key}.strength",
            f"({strength}) repeats variants.{strengths[strength]}'s: strengths order the variants.",
        )
    strengths[strength] = name
    sets = OmegaConf.to_container(cfg.augmentations, resolve=True)
    overrides = node.get("augmentations", [{}] * len(sets))
    if not isinstance(overrides, list) or len(overrides) != len(sets):
        _fail(
            f"{key}.augmentations",
            f"must be a list of {len(sets)} mapping(s), one per set of `augmentations` (the "
            f"fields each changes; {{}} keeps a set), got {overrides!r}.",
        )
    for index, (override, base) in enumerate(zip(overrides, sets)):
        where = f"{key}.augmentations[{index}]"
        if not isinstance(override, dict):
            _fail(where, f"must be a mapping of the fields it changes, got {override!r}.")
        shared = [field for field in SHARED_FIELDS if field in override]
        if shared:
            _fail(
                f"{where}.{shared[0]}",
                "may not be set by a variant: crop size, mean and std are shared by every "
                "variant (the evaluation transform's), and the views set num_crops.",
            )
        typos = _unknown_paths(override, base, where)
        if typos:
            _fail(
                typos[0],
                f"is not a field of augmentations[{index}]: a variant changes the fields "
                "the shared set has.",
            )


def validate_study(cfg: DictConfig) -> None:
    """Checks ``variants`` and ``geometry``; raises ConfigError naming the field."""
    validate_variants(cfg)
    validate_geometry(cfg)


def validate_variants(cfg: DictConfig) -> None:
    """Checks ``variants``; raises ConfigError naming the field."""
    variants = cfg.get("variants")
    if variants is None:
        return
    container = (
        OmegaConf.to_container(variants, resolve=True)
        if OmegaConf.is_config(variants)
        else variants
    )
    if not isinstance(container, dict) or not container:
        _fail(
            "variants",
            "must be null or a non-empty mapping name -> {strength, augmentations}, got "
            f"{container!r}.",
        )
    if OmegaConf.select(cfg, "tuning.enabled"):
        _fail(
            "variants",
            "cannot be combined with tuning.enabled: a strength study trains every variant at "
            "fixed recipes (set recipes.<method>.optimizer.lr, e.g. to a tuned study's "
            "selection) and turns tuning off.",
        )
    strengths: dict[float, str] = {}
    for name, node in container.items():
        _check_variant(cfg, name, node, strengths)


def validate_geometry(cfg: DictConfig) -> None:
    """Checks ``geometry.transfer`` beyond its types (``schema.GeometryConfig``); raises
    ConfigError naming the field."""
    transfer = cfg.geometry.transfer
    dataset = transfer.dataset
    if dataset is None:
        return
    if not cfg.geometry.enabled:
        _fail(
            "geometry.transfer.dataset",
            "needs geometry.enabled: true (transfer scores are part of the geometry measurements).",
        )
    if dataset not in TRANSFER_DATASETS:
        _fail(
            "geometry.transfer.dataset",
            f"must be null or one of {list(TRANSFER_DATASETS)}, got {dataset!r}.",
        )
    if dataset == cfg.dataset and dataset != "image_folder":
        _fail(
            "geometry.transfer.dataset",
            f"({dataset!r}) must differ from dataset: it is scored on images the runs did "
            "not train on.",
        )
    if dataset == "image_folder":
        for key in ("train_path", "val_path"):
            if not transfer.get(key):
                _fail(
                    f"geometry.transfer.{key}",
                    "is required for geometry.transfer.dataset 'image_folder'.",
                )
