"""The run plan: one :class:`RunSpec` per distinct run and the budget arithmetic."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig

from solo_clamp.compare.config import FLOORS
from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.tuning import Setting


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
    setting: Optional[Setting] = None  # lr (and rs) replacing the recipe's; None: the recipe
    trial: bool = False  # a tuning trial (scored on the validation split), not a final run

    @property
    def run_id(self) -> str:
        if self.trial:
            return f"{self.method}-{self.setting.label}-s{self.seed}"
        return f"{self.method}-{self.budget}-s{self.seed}"

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def max_epochs(self) -> int:
        return math.ceil(self.steps / self.steps_per_epoch)


def run_budget(views: int, budget: str) -> str:
    """The budget whose run serves ``budget`` for a method with ``views`` views."""
    return "equal_epochs" if views == 2 else budget


def plan_runs(
    cfg: DictConfig, steps_per_epoch: int, settings: Optional[dict[str, Setting]] = None
) -> list[RunSpec]:
    """Seed-major list of distinct runs (an interrupted plan keeps whole seeds first).
    ``settings``: the tuned setting per method (tuning; a method without one has no runs);
    None: every method's recipe."""
    runs: dict[str, RunSpec] = {}
    for seed in cfg.seeds:
        for method in cfg.methods:
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
        raise ValueError(
            f"batch_size ({cfg.batch_size}) must not exceed the {size} training images{held} "
            "(raise data.train_per_class or lower batch_size)."
        )
    return steps


def expected_run_ids(
    cfg: DictConfig, spe: int = 1, settings: Optional[dict[str, Setting]] = None
) -> list[str]:
    """Ids of every run the plan needs (floors first)."""
    return [f"floor-{f}" for f in FLOORS] + [s.run_id for s in plan_runs(cfg, spe, settings)]
