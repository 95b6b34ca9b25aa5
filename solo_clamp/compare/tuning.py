"""Fair tuning: each method's learning rate (CLAMP: also ``rs``) chosen from a small grid by a
validation score, with the same number of trials for every method.

Config (``tuning:``; see ``scripts/compare/fashion_mnist_tuned.yaml``):

* ``lr_multipliers``: multipliers of each recipe's ``optimizer.lr`` (per 256 images), one list
  for every method, or a mapping ``method -> list`` (then every method needs its list).
* ``clamp_rs``: CLAMP's ``rs`` values (null: the recipe's ``rs`` only).
* **Equal trials** (the rule): CLAMP's trials are its lr multipliers × ``clamp_rs`` values,
  every other method's trials its lr multipliers, and all methods must get the same number:
  when CLAMP also tunes ``rs`` over R values, its lr list is R times shorter than the others'
  (or the others' R times longer). :func:`validate_tuning` enforces it.
* ``val_per_class``, ``seed``: the validation split, drawn from the training images and held
  out of everything else (``solo_clamp.compare.data.held_out_indices``).
* ``epochs``: every trial trains this many epochs (equal_epochs budget) with seed ``seed``.

Selection: the highest validation kNN top-1 among the finished trials with a finite score
(a diverged trial is never selected); an exact tie goes to the earlier grid point. Test
images and test labels are never read by a trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class Setting:
    """One grid point of a method: its learning rate (per 256 images) and CLAMP's ``rs``."""

    lr: float
    lr_multiplier: float
    rs: Optional[float] = None

    @property
    def label(self) -> str:
        """Short id used in trial names, e.g. ``lr0.12-rs7``."""
        return f"lr{self.lr:g}" + (f"-rs{self.rs:g}" if self.rs is not None else "")

    def describe(self) -> str:
        """For the tables, e.g. ``lr 0.12 (×0.3), rs 7``."""
        rs = f", rs {self.rs:g}" if self.rs is not None else ""
        return f"lr {self.lr:g} (×{self.lr_multiplier:g}){rs}"


def _numbers(value: Any, key: str) -> list[float]:
    """A non-empty list of distinct positive numbers, else ValueError naming ``key``."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    ok = (
        isinstance(value, list)
        and value
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in value
        )
    )
    if not ok:
        raise ValueError(f"{key} must be a non-empty list of positive numbers, got {value!r}.")
    if len(set(value)) != len(value):
        raise ValueError(f"{key} must not repeat a value, got {value!r}.")
    return [float(v) for v in value]


def lr_multipliers(cfg: DictConfig, method: str) -> list[float]:
    """``method``'s lr multipliers: the shared list, or its entry of the mapping."""
    grid = cfg.tuning.lr_multipliers
    if OmegaConf.is_dict(grid) or isinstance(grid, dict):
        if method not in grid:
            raise ValueError(
                f"tuning.lr_multipliers has no list for {method!r}: as a mapping it must give "
                f"one for every method of `methods` ({list(cfg.methods)})."
            )
        return _numbers(grid[method], f"tuning.lr_multipliers.{method}")
    return _numbers(grid, "tuning.lr_multipliers")


def rs_values(cfg: DictConfig, method: str) -> list[Optional[float]]:
    """CLAMP's ``rs`` grid (``[None]``: the recipe's ``rs``, untuned; other methods too)."""
    values = cfg.tuning.get("clamp_rs")
    if method != "clamp" or values is None:
        return [None]
    return _numbers(values, "tuning.clamp_rs")


def method_grid(cfg: DictConfig, method: str) -> list[Setting]:
    """The settings ``method`` tries, lr-major (lr values × rs values for CLAMP)."""
    recipe_lr = float(cfg.recipes[method].optimizer.lr)
    return [
        Setting(float(f"{recipe_lr * multiplier:.6g}"), multiplier, rs)
        for multiplier in lr_multipliers(cfg, method)
        for rs in rs_values(cfg, method)
    ]


def _positive_int(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}.")


def validate_tuning(cfg: DictConfig) -> None:
    """Checks ``tuning``; raises ValueError naming the field (nothing to check when disabled)."""
    tuning = cfg.get("tuning")
    if tuning is None:
        return
    if not isinstance(tuning.get("enabled"), bool):
        raise ValueError(f"tuning.enabled must be true or false, got {tuning.get('enabled')!r}.")
    for flag in ("only", "curves"):
        if not isinstance(tuning.get(flag, False), bool):
            raise ValueError(f"tuning.{flag} must be true or false, got {tuning.get(flag)!r}.")
    if not tuning.enabled:
        if tuning.get("only", False):
            raise ValueError(
                "tuning.only=true (--tune-only) needs tuning.enabled=true: "
                "there is no tuning to stop after."
            )
        return
    _positive_int(tuning.get("val_per_class"), "tuning.val_per_class")
    _positive_int(tuning.get("epochs"), "tuning.epochs")
    seed = tuning.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"tuning.seed must be an integer, got {seed!r}.")
    train_per_class = cfg.data.get("train_per_class")
    if train_per_class is not None and tuning.val_per_class >= train_per_class:
        raise ValueError(
            f"tuning.val_per_class ({tuning.val_per_class}) must be smaller than "
            f"data.train_per_class ({train_per_class}): the validation images are taken from "
            "the training images, and the rest train and form the kNN bank."
        )
    counts = {}
    for method in cfg.methods:
        lrs, rs = lr_multipliers(cfg, method), rs_values(cfg, method)
        counts[method] = (len(lrs) * len(rs), len(lrs), len(rs) if rs != [None] else None)
    if len({total for total, _, _ in counts.values()}) > 1:
        found = ", ".join(
            f"{m} {total}" + (f" (= {lrs} lr × {rs} rs)" if rs else "")
            for m, (total, lrs, rs) in counts.items()
        )
        raise ValueError(
            "tuning: every method must get the same number of trials (CLAMP: its lr multipliers "
            "× tuning.clamp_rs values; every other method: its lr multipliers), got "
            f"{found}. Give tuning.lr_multipliers as a mapping method -> list (e.g. CLAMP's list "
            "shorter by the number of rs values), or change tuning.clamp_rs."
        )


def select(
    grid: Iterable[tuple[str, Setting, Optional[dict[str, Any]]]],
) -> dict[str, Setting]:
    """Per method, the setting of its best finished trial (highest ``val_knn_top1``; the earlier
    grid point on an exact tie). ``grid``: (method, setting, result or None) in grid order.
    Methods whose trials all failed (or are unfinished) are absent."""
    best: dict[str, tuple[float, Setting]] = {}
    for method, setting, result in grid:
        score = (result or {}).get("val_knn_top1")
        if result is None or result.get("status") != "ok" or score is None:
            continue
        if not math.isfinite(score):
            continue
        if method not in best or score > best[method][0]:
            best[method] = (score, setting)
    return {method: setting for method, (_, setting) in best.items()}
