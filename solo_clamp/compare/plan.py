"""The run plan: one :class:`RunSpec` per run (final runs and tuning trials), the budget
arithmetic, each run's solo-learn cfg composed from ``run.yaml``, and the settings fingerprint
that lets a restart skip a finished run."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from solo.args.pretrain import parse_cfg

from solo_clamp.compare.data import ComparisonData, augmentation_sets
from solo_clamp.compare.strength import transfer_config, variant_names
from solo_clamp.configs import config_dir
from solo_clamp.errors import ConfigError
from solo_clamp.methods import facts_of
from solo_clamp.training.common import parse_solo_cfg

FLOORS = ("raw_pixels", "untrained")
RUN_YAML = config_dir("compare") / "run.yaml"
"""The skeleton every run's solo-learn cfg starts from (``scripts/compare/run.yaml``)."""
# Settings that change how a run is displayed or how fast it goes, not its result.
_COSMETIC = (
    "num_workers",
    "enable_progress_bar",
    "log_every_n_steps",
    "enable_model_summary",
    "device",
)

if not OmegaConf.has_resolver("compare.not"):  # run.yaml: disable_channel_last
    OmegaConf.register_new_resolver("compare.not", lambda value: not value)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Setting:
    """One grid point of a method's tuning: its learning rate (per 256 images), the multiplier
    of the recipe's that gave it, and the ``method_kwargs`` values it tries (name, value)."""

    lr: float
    lr_multiplier: float
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def tuned(self) -> dict[str, Any]:
        return dict(self.kwargs)

    @property
    def label(self) -> str:
        """Short id used in trial names, e.g. ``lr0.12-rs7``."""
        return f"lr{self.lr:g}" + "".join(f"-{k}{_number(v)}" for k, v in self.kwargs)

    def describe(self) -> str:
        """For the tables, e.g. ``lr 0.12 (×0.3), rs 7``."""
        return f"lr {self.lr:g} (×{self.lr_multiplier:g})" + "".join(
            f", {k} {_number(v)}" for k, v in self.kwargs
        )


@dataclass(frozen=True)
class RunSpec:
    """One training run of the plan."""

    method: str
    budget: str  # the budget that fixed its steps (2-view methods: always equal_epochs)
    seed: int
    views: int
    steps: int
    steps_per_epoch: int
    batch_size: int
    setting: Optional[Setting] = None  # lr and method_kwargs replacing the recipe's
    trial: bool = False  # a tuning trial (scored on the validation split), not a final run
    variant: Optional[str] = None  # its augmentations (compare.strength); None: `augmentations`

    @property
    def run_id(self) -> str:
        if self.trial:
            return f"{self.method}-{self.setting.label}-s{self.seed}"
        return final_run_id(self.method, self.budget, self.seed, self.variant)

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def max_epochs(self) -> int:
        return math.ceil(self.steps / self.steps_per_epoch)


def final_run_id(method: str, budget: str, seed: int, variant: Optional[str] = None) -> str:
    """``<method>-<budget>[-<variant>]-s<seed>``: a final run's id (and its folder's name)."""
    return f"{method}-{budget}" + (f"-{variant}" if variant else "") + f"-s{seed}"


def run_budget(views: int, budget: str) -> str:
    """The budget whose run serves ``budget`` for a method with ``views`` views."""
    return "equal_epochs" if views == 2 else budget


def plan_runs(
    cfg: DictConfig, steps_per_epoch: int, settings: Optional[dict[str, Setting]] = None
) -> list[RunSpec]:
    """Seed-major list of distinct runs (an interrupted plan keeps whole seeds first), then
    variant by variant (in order of strength; ``compare.strength``). ``settings``: the tuned
    setting per method (tuning; a method without one has no runs); None: every method's
    recipe."""
    runs: dict[str, RunSpec] = {}
    for seed, variant, method in itertools.product(cfg.seeds, variant_names(cfg), cfg.methods):
        if settings is not None and method not in settings:
            continue
        views = int(cfg.recipes[method].get("views", 2))
        for budget in cfg.budgets:
            budget = run_budget(views, budget)
            total = cfg.epochs * steps_per_epoch
            steps = total if budget == "equal_epochs" else max(1, round(total * 2 / views))
            spec = RunSpec(
                method,
                budget,
                int(seed),
                views,
                int(steps),
                steps_per_epoch,
                int(cfg.batch_size),
                settings[method] if settings is not None else None,
                variant=variant,
            )
            runs.setdefault(spec.run_id, spec)
    return list(runs.values())


def steps_per_epoch(cfg: DictConfig, data: ComparisonData) -> int:
    """Optimiser steps per epoch (solo-learn drops the last incomplete batch); the images
    held out for tuning do not train."""
    size = len(data.dataset("train", None)) - len(data.held_out)
    steps = size // cfg.batch_size
    if steps < 1:
        held = f" (after the {len(data.held_out)} held out for tuning)" if data.held_out else ""
        raise ConfigError(
            f"batch_size ({cfg.batch_size}) must not exceed the {size} training images{held} "
            "(raise data.train_per_class or lower batch_size)."
        )
    return steps


@dataclass(frozen=True)
class FloorSpec:
    """One floor of the test scores: raw pixels once; the untrained backbone once per seed
    (the initial weights of that seed's runs, so a paired comparison can use it)."""

    floor: str
    seed: Optional[int] = None

    @property
    def run_id(self) -> str:
        return f"floor-{self.floor}" + (f"-s{self.seed}" if self.seed is not None else "")


def plan_floors(cfg: DictConfig) -> list[FloorSpec]:
    """The floors the test scores stand beside: raw pixels, then the untrained backbone of
    every seed of ``seeds``."""
    return [FloorSpec("raw_pixels")] + [FloorSpec("untrained", int(s)) for s in cfg.seeds]


def expected_run_ids(
    cfg: DictConfig, spe: int = 1, settings: Optional[dict[str, Setting]] = None
) -> list[str]:
    """Ids of every run the plan needs (floors first)."""
    floors = [f.run_id for f in plan_floors(cfg)]
    return floors + [s.run_id for s in plan_runs(cfg, spe, settings)]


def method_of(cfg: DictConfig, entry: str) -> str:
    """The solo-learn method an entry of ``methods`` trains: ``recipes.<entry>.method``, else
    the entry's own name. Two entries of one method (e.g. an ablation beside the full method)
    are compared as two methods."""
    recipe = cfg.recipes[entry]
    return str((recipe.get("method") if OmegaConf.is_dict(recipe) else None) or entry)


def _scaled_kwargs(method: str, kwargs: DictConfig, scale: float) -> dict[str, Any]:
    """``kwargs`` with the projector's (and BYOL's predictor's) widths times ``projector_scale``:
    the fields ``method``'s facts name in ``projector_width_fields`` (e.g. not ManifoldCLR's
    block_dim or vi_hidden_dim)."""
    widths = set(facts_of(method).projector_width_fields)
    out = OmegaConf.to_container(kwargs, resolve=True)
    for key, value in out.items():
        if key in widths and isinstance(value, int):
            out[key] = max(1, round(value * scale))
    return out


def solo_cfg(cfg: DictConfig, spec: RunSpec, data: ComparisonData) -> DictConfig:
    """The run's pretraining cfg in solo-learn's layout, before solo-learn's ``parse_cfg``:
    ``run.yaml`` (its ``${study.*}`` fields read from the comparison config) <- the entry's
    recipe (``recipes.<entry>`` without ``views`` and ``method``) <- the run's own values:
    name, method, seed, data, views, batch size, steps, and ``spec.setting``'s lr and
    ``method_kwargs``."""
    root = OmegaConf.create({"study": cfg, "run": OmegaConf.load(RUN_YAML)})
    OmegaConf.resolve(root)
    recipe = cfg.recipes[spec.method]
    recipe = OmegaConf.masked_copy(
        recipe, [key for key in recipe if key not in ("views", "method")]
    )
    setting = spec.setting
    kwargs = OmegaConf.merge(recipe.method_kwargs, setting.tuned if setting else {})
    own = {
        "name": spec.run_id,
        "method": method_of(cfg, spec.method),
        "seed": spec.seed,
        "data": {"dataset": data.solo_dataset, "train_path": data.train_path},
        "augmentations": [
            OmegaConf.to_container(a) for a in augmentation_sets(cfg, spec.views, spec.variant)
        ],
        "method_kwargs": _scaled_kwargs(
            method_of(cfg, spec.method), kwargs, cfg.get("projector_scale", 1.0)
        ),
        "optimizer": {"batch_size": spec.batch_size, **({"lr": setting.lr} if setting else {})},
        "max_epochs": spec.max_epochs,
        "max_steps": spec.steps,
    }
    composed = OmegaConf.merge(root.run, recipe, own)
    OmegaConf.set_struct(composed, False)
    # One warm-up policy for every method: the same fraction of every run, i.e. the study's
    # scheduler.warmup_epochs of its `epochs`-epoch budget, scaled to this run's length.
    warmup = float(cfg.scheduler.get("warmup_epochs") or 0)
    composed.scheduler.warmup_epochs = float(f"{warmup * spec.epochs / cfg.epochs:.6g}")
    return composed


def parse(solo: DictConfig) -> DictConfig:
    """solo-learn's ``parse_cfg`` (per-256 learning rates scaled, crops counted)."""
    return parse_solo_cfg(solo, parse_cfg)


def _plain(node: Any) -> Any:
    """``node`` as plain data, without the :data:`_COSMETIC` keys (at any depth)."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if k not in _COSMETIC}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _fingerprint(*parts: Any) -> str:
    """A short hash of the settings that determine a result."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _eval_settings(cfg: DictConfig, data: ComparisonData, validation: bool) -> dict[str, Any]:
    """What a score depends on besides the backbone; ``validation``: a tuning score, which
    has no linear probe, no few-label probe and no test images."""
    evaluation = _plain(cfg.evaluation)
    evaluation.pop("batch_size", None)
    if validation or not (evaluation.get("few_label") or {}).get("enabled"):
        evaluation.pop("few_label", None)
    if validation:
        evaluation.pop("linear", None)
        evaluation.pop("val_per_class", None)
    settings = {"dataset": cfg.dataset, "data": _plain(cfg.data), "evaluation": evaluation}
    if data.held_out:  # tuning: which training images neither train nor sit in a bank
        settings["held_out"] = list(data.held_out)
    return settings


def run_fingerprint(cfg: DictConfig, spec: RunSpec, data: ComparisonData) -> str:
    solo = _plain(solo_cfg(cfg, spec, data))
    if spec.trial:  # scored by validation kNN only: no curves probe, no linear probe
        evaluation = _eval_settings(cfg, data, validation=True)
        if cfg.tuning.get("curves"):  # a trial without its validation curve is not reused
            return _fingerprint(solo, "validation", evaluation, cfg.curves.every_n_epochs)
        return _fingerprint(solo, "validation", evaluation)
    parts = [solo, _plain(cfg.curves), _eval_settings(cfg, data, validation=False)]
    if OmegaConf.select(cfg, "geometry.enabled"):  # the encoder-against-projector measures
        parts.append(_plain(cfg.geometry))
    return _fingerprint(*parts)


def floor_fingerprint(
    cfg: DictConfig, floor: str, data: ComparisonData, validation: bool = False, seed: int = 0
) -> str:
    """A floor's settings: on the test split (with the curves' probe set, whose reference lines
    it also scores) for the backbone of ``seed``, or, ``validation``, on the tuning's
    validation split like a trial, for the backbone of ``tuning.seed``."""
    crop_size = cfg.augmentations[0].crop_size
    settings: list[Any] = [floor]
    if validation:
        settings += ["validation", _eval_settings(cfg, data, True), crop_size]
        seed = cfg.tuning.seed
    else:
        settings += [_eval_settings(cfg, data, False), crop_size, "probe", cfg.curves.per_class]
    if floor == "untrained":
        settings += [_plain(cfg.backbone), seed, cfg.methods[0]]
    else:
        settings.append(cfg.floors.get("raw_pixel_size"))
    transfer = transfer_config(cfg)
    if transfer is not None and not validation:  # the floors' transfer scores
        settings.append(_plain(transfer))
    return _fingerprint(*settings)


def finished_result(run_dir: Path, expected: str) -> Optional[dict[str, Any]]:
    """The stored ``result.json`` of a finished run with the same settings, else None."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if result.get("fingerprint") == expected else None
