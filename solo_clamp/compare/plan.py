"""The run plan: one :class:`RunSpec` per run (final runs and tuning trials), one
:class:`FloorSpec` per floor, and the budget arithmetic that fixes each run's steps."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.strength import variant_names
from solo_clamp.errors import ConfigError


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
