"""Fair tuning: each method's learning rate (and any ``method_kwargs``) chosen from a grid by a
validation score, with the same number of trials for every method; the trials are trained and
scored by :mod:`~solo_clamp.compare.trials`. The whole protocol: ``docs/compare.md``, "Fair
tuning".

* Grid: ``tuning.lr_multipliers`` (of each recipe's ``optimizer.lr``, per 256 images; one list
  for every method, or a mapping ``method -> list``) × the product of the method's
  ``tuning.method_kwargs`` grids, and every method gets the same number of trials
  (:func:`validate_grid`).
* Selection: the highest validation kNN top-1 among the finished trials with a finite score
  (a diverged trial is never selected); an exact tie goes to the earlier grid point.
* Bracketing (``tuning.max_extensions``): when a method's selected lr is the smallest or
  largest it tried, its grid is extended one step past that edge, by the ratio of the grid's
  two values at that edge (×0.1, ×0.3 → ×0.0333), and the selection is made again, at most
  ``max_extensions`` times per method (0: never).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.fingerprints import finished_result, run_fingerprint
from solo_clamp.compare.plan import RunSpec, Setting, method_of
from solo_clamp.errors import ConfigError
from solo_clamp.methods import facts_of, known


def _values(value: Any, key: str, positive: bool = False) -> list[Any]:
    """A non-empty list of distinct scalars or nulls (``positive``: positive numbers), else
    ConfigError naming ``key``."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)

    def ok(v: Any) -> bool:
        if not positive:
            return v is None or isinstance(v, (int, float, str, bool))
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        return number and math.isfinite(v) and v > 0

    if not (isinstance(value, list) and value and all(ok(v) for v in value)):
        kind = "positive numbers" if positive else "values"
        raise ConfigError(f"{key} must be a non-empty list of {kind}, got {value!r}.")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key} must not repeat a value, got {value!r}.")
    return [float(v) for v in value] if positive else value


def lr_multipliers(cfg: DictConfig, method: str) -> list[float]:
    """``method``'s lr multipliers: the shared list, or its entry of the mapping."""
    grid = cfg.tuning.lr_multipliers
    if OmegaConf.is_dict(grid) or isinstance(grid, dict):
        if method not in grid:
            raise ConfigError(
                f"tuning.lr_multipliers has no list for {method!r}: as a mapping it must give "
                f"one for every method of `methods` ({list(cfg.methods)})."
            )
        return _values(grid[method], f"tuning.lr_multipliers.{method}", positive=True)
    return _values(grid, "tuning.lr_multipliers", positive=True)


def kwarg_grids(cfg: DictConfig, method: str) -> dict[str, list[Any]]:
    """``tuning.method_kwargs.<method>``: each tuned kwarg's values (empty: none tuned)."""
    grids = (cfg.tuning.get("method_kwargs") or {}).get(method) or {}
    return {str(k): _values(v, f"tuning.method_kwargs.{method}.{k}") for k, v in grids.items()}


def method_grid(
    cfg: DictConfig, method: str, multipliers: Optional[list[float]] = None
) -> list[Setting]:
    """The settings ``method`` tries, lr-major: lr values (``multipliers``, default its
    ``tuning.lr_multipliers``) × the product of its kwarg grids."""
    recipe_lr = float(cfg.recipes[method].optimizer.lr)
    grids = kwarg_grids(cfg, method)
    return [
        Setting(float(f"{recipe_lr * multiplier:.6g}"), multiplier, tuple(zip(grids, values)))
        for multiplier in (lr_multipliers(cfg, method) if multipliers is None else multipliers)
        for values in itertools.product(*grids.values())
    ]


def extension(multipliers: list[float], selected: float) -> Optional[float]:
    """The multiplier one step past the edge ``selected`` sits on (the ratio of the grid's two
    values at that edge), None when ``selected`` is inside the grid or the grid has one value."""
    grid = sorted(multipliers)
    if len(grid) < 2 or grid[0] < selected < grid[-1]:
        return None
    low, high = (grid[0], grid[1]) if selected == grid[0] else (grid[-1], grid[-2])
    return float(f"{low * low / high:.6g}")


def _check_kwargs(cfg: DictConfig) -> None:
    for method, grids in (cfg.tuning.get("method_kwargs") or {}).items():
        if method not in cfg.recipes:
            raise ConfigError(f"tuning.method_kwargs.{method}: {method!r} has no recipe.")
        fields = set(cfg.recipes[method].get("method_kwargs") or {})
        solo_method = method_of(cfg, method)
        schema = facts_of(solo_method).kwargs_schema if solo_method in known() else None
        fields |= set(schema.__dataclass_fields__) if schema else set()
        for kwarg in grids or {}:
            if kwarg not in fields:
                raise ConfigError(
                    f"tuning.method_kwargs.{method}.{kwarg}: {method} has no method_kwargs "
                    f"field {kwarg!r}; fields: {sorted(fields)}."
                )


def validate_grid(cfg: DictConfig) -> None:
    """Checks the grid of an enabled ``tuning`` (the types of its fields: the config's schema):
    every tuned kwarg is a field of its method, and every method gets the same number of
    trials; raises ConfigError naming the field."""
    _check_kwargs(cfg)
    counts = {}
    for method in cfg.methods:
        sizes = [len(lr_multipliers(cfg, method))]
        sizes += [f"{len(v)} {k}" for k, v in kwarg_grids(cfg, method).items()]
        counts[method] = (len(method_grid(cfg, method)), sizes)
    if len({total for total, _ in counts.values()}) > 1:
        found = ", ".join(
            f"{m} {total}" + (f" (= {sizes[0]} lr × {' × '.join(sizes[1:])})" if sizes[1:] else "")
            for m, (total, sizes) in counts.items()
        )
        raise ConfigError(
            "tuning: every method must get the same number of trials (its "
            "tuning.lr_multipliers × the product of its tuning.method_kwargs grids), got "
            f"{found}. Give tuning.lr_multipliers as a mapping method -> list (shorter lists "
            "for the methods that tune method_kwargs too), or change tuning.method_kwargs."
        )


def _trial(cfg: DictConfig, method: str, setting: Setting, steps_per_epoch: int) -> RunSpec:
    return RunSpec(
        method,
        "equal_epochs",
        int(cfg.tuning.seed),
        int(cfg.recipes[method].get("views", 2)),
        int(cfg.tuning.epochs) * steps_per_epoch,
        steps_per_epoch,
        int(cfg.batch_size),
        setting,
        trial=True,
    )


def trial_specs(cfg: DictConfig, steps_per_epoch: int) -> list[RunSpec]:
    """Every trial of the first grid, grid-point-major (an interrupted tuning leaves the
    methods level); bracketing may add more (:func:`extend`)."""
    grids = {method: method_grid(cfg, method) for method in cfg.methods}
    size = min(len(grid) for grid in grids.values())  # equal, by validate_grid
    return [
        _trial(cfg, method, grids[method][point], steps_per_epoch)
        for point in range(size)
        for method in cfg.methods
    ]


def select(grid: Iterable[tuple[str, Setting, Optional[dict[str, Any]]]]) -> dict[str, Setting]:
    """Per method, the setting of its best finished trial (highest ``val_knn_top1``; the earlier
    grid point on an exact tie). ``grid``: (method, setting, result or None) in grid order.
    Methods whose trials all failed (or are unfinished) are absent."""
    best: dict[str, tuple[float, Setting]] = {}
    for method, setting, result in grid:
        score = (result or {}).get("val_knn_top1")
        ok = (result or {}).get("status") == "ok" and score is not None and math.isfinite(score)
        if ok and (method not in best or score > best[method][0]):
            best[method] = (score, setting)
    return {method: setting for method, (_, setting) in best.items()}


@dataclass
class Tuning:
    """The tuning stage's state, filled as it goes (the reports read it when interrupted)."""

    specs: list[RunSpec]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # finished, by run_id
    floors: dict[str, dict[str, Any]] = field(default_factory=dict)  # on the validation split
    selected: dict[str, Setting] = field(default_factory=dict)  # absent: no finite trial
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    extensions: dict[str, list[float]] = field(default_factory=dict)  # multipliers added

    @property
    def finished(self) -> bool:
        return len(self.results) == len(self.specs)

    def multipliers(self, cfg: DictConfig, method: str) -> list[float]:
        """``method``'s lr multipliers tried so far: its grid and the extensions."""
        return lr_multipliers(cfg, method) + self.extensions.get(method, [])

    def bracket(self, cfg: DictConfig, method: str) -> str:
        """Whether ``method``'s selected lr is inside the lr values it tried."""
        setting = self.selected.get(method)
        if setting is None:
            return "no finite trial"
        grid = self.multipliers(cfg, method)
        if len(grid) < 2:
            return "one lr only: not bracketed"
        if min(grid) < setting.lr_multiplier < max(grid):
            return "bracketed"
        count = len(self.extensions.get(method, []))
        return f"at the edge after {count} extension{'s' if count != 1 else ''}"


def extend(cfg: DictConfig, tuning: Tuning) -> list[RunSpec]:
    """Bracketing: for every method whose selected lr sits on an edge of the lr values it
    tried, and that has fewer than ``tuning.max_extensions`` extensions, the trials of the
    next lr past that edge (× its kwarg grid); they are added to ``tuning.specs``."""
    limit = int(cfg.tuning.get("max_extensions") or 0)
    spe = tuning.specs[0].steps_per_epoch if tuning.specs else 1
    added = []
    for method, setting in tuning.selected.items():
        if len(tuning.extensions.get(method, [])) >= limit:
            continue
        multiplier = extension(tuning.multipliers(cfg, method), setting.lr_multiplier)
        if multiplier is None:
            continue
        tuning.extensions.setdefault(method, []).append(multiplier)
        added += [_trial(cfg, method, s, spe) for s in method_grid(cfg, method, [multiplier])]
    tuning.specs += added
    return added


def settle(
    cfg: DictConfig, data: ComparisonData, out: Path, tuning: Tuning, log: Callable = print
) -> list[RunSpec]:
    """Reads the finished trials of ``out`` into ``tuning``; while every trial has finished,
    selects and brackets (:func:`extend`). Returns the trials still to train (none: the
    selection in ``tuning.selected`` is final)."""
    while True:
        todo = []
        for spec in tuning.specs:
            if spec.run_id in tuning.results:
                continue
            done = finished_result(out / "tuning" / spec.run_id, run_fingerprint(cfg, spec, data))
            if done:
                tuning.results[spec.run_id] = done
                tuning.skipped.append(spec.run_id)
            else:
                todo.append(spec)
        if todo:
            return todo
        tuning.selected = select(
            (s.method, s.setting, tuning.results[s.run_id]) for s in tuning.specs
        )
        added = extend(cfg, tuning)
        if not added:
            return []
        for method in dict.fromkeys(s.method for s in added):
            count = len(tuning.extensions[method])
            log(
                f"tuning: {method} selected {tuning.selected[method].describe()}, an edge of "
                f"its lr grid: trying ×{tuning.extensions[method][-1]:g} (extension {count} "
                f"of at most {cfg.tuning.max_extensions})"
            )
