"""The few-label command's fields, checked with the field named, for both of its protocols:
the linear probe's (:class:`~solo_clamp.evaluation.FewLabelSettings`) and the semi-supervised
one's (:class:`~solo_clamp.training.semi_supervised.SemiSupervisedSettings`); and the table it
prints. Pure torch (no solo-learn), like the protocols themselves.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from solo_clamp.errors import ConfigError
from solo_clamp.evaluation import FLOORS, FewLabelSettings
from solo_clamp.training.semi_supervised import ARMS, SemiSupervisedSettings


def _integer(node: Any, field: str, default: int, minimum: int) -> int:
    """``node``'s integer ``field`` (its key: the field's last part), checked."""
    value = node.get(field.rpartition(".")[2], default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{field} must be an integer >= {minimum}, got {value!r}.")
    return value


def _number(node: Any, field: str, default: float, low: float, high=None) -> float:
    """``node``'s number ``field`` in ``[low, high]``, checked."""
    value = node.get(field.rpartition(".")[2], default)
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value >= low
    if high is not None:
        ok = ok and value <= high
    if not ok:
        span = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ConfigError(f"{field} must be a number {span}, got {value!r}.")
    return float(value)


def check_few_label_cfg(cfg: DictConfig) -> FewLabelSettings:
    """The linear-probe protocol's fields of a few-label cfg, checked; errors name the field."""
    labels = cfg.get("labels") or {}
    per_class = _integer(labels, "labels.per_class", 5, 1)
    first_seed = _integer(labels, "labels.seed", 0, 0)
    draws = _integer(cfg, "draws", 5, 1)
    samples = _integer(cfg.get("feature_augment") or {}, "feature_augment.samples", 0, 0)
    floors = tuple(cfg.get("floors", list(FLOORS)) or ())
    unknown = [floor for floor in floors if floor not in FLOORS]
    if unknown:
        raise ConfigError(f"floors must be a list of {sorted(FLOORS)}, got {unknown!r}.")
    probe = cfg.get("probe") or {}
    epochs = _integer(probe, "probe.epochs", 100, 1)
    lr, weight_decay = probe.get("lr", 1e-2), probe.get("weight_decay", 1e-5)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"probe.lr must be a number > 0, got {lr!r}.")
    if (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, (int, float))
        or (weight_decay < 0)
    ):
        raise ConfigError(f"probe.weight_decay must be a number >= 0, got {weight_decay!r}.")
    seeds = tuple(range(first_seed, first_seed + draws))
    return FewLabelSettings(
        per_class, draws, seeds, samples, floors, epochs, float(lr), float(weight_decay)
    )


def check_semi_supervised_cfg(cfg: DictConfig) -> SemiSupervisedSettings:
    """The semi-supervised protocol's fields of a few-label cfg, checked; errors name the field."""
    labels = cfg.get("labels") or {}
    node = cfg.get("semi_supervised") or {}
    known = {f for f in SemiSupervisedSettings.__dataclass_fields__} - {"per_class", "first_seed"}
    unknown = sorted(set(node) - known)
    if unknown:
        raise ConfigError(
            f"unknown semi_supervised fields {unknown}; the fields are {sorted(known)}."
        )
    defaults = SemiSupervisedSettings()
    lr = _number(node, "semi_supervised.lr", defaults.lr, 0.0)
    if not lr > 0:
        raise ConfigError(f"semi_supervised.lr must be a number > 0, got {lr!r}.")
    ema = node.get("ema", None)
    if ema is not None:
        ema = _number(node, "semi_supervised.ema", 0.0, 0.0, 1.0)
    soft_threshold = node.get("soft_threshold", defaults.soft_threshold)
    if not isinstance(soft_threshold, bool):
        raise ConfigError(
            f"semi_supervised.soft_threshold must be true or false, got {soft_threshold!r}."
        )
    arms = node.get("augmentations", None)
    if arms is not None:
        arms = tuple(arms)
        if not arms or any(arm not in ARMS for arm in arms) or len(set(arms)) < len(arms):
            raise ConfigError(
                f"semi_supervised.augmentations must be null (both arms when the backbone's "
                f"method has a learned augmentation) or a list of distinct {list(ARMS)}, got "
                f"{list(arms)!r}."
            )
    return SemiSupervisedSettings(
        per_class=_integer(labels, "labels.per_class", 5, 1),
        trials=_integer(node, "semi_supervised.trials", defaults.trials, 1),
        first_seed=_integer(labels, "labels.seed", 0, 0),
        iterations=_integer(node, "semi_supervised.iterations", defaults.iterations, 1),
        hidden_dim=_integer(node, "semi_supervised.hidden_dim", defaults.hidden_dim, 1),
        lr=lr,
        weight_decay=_number(node, "semi_supervised.weight_decay", defaults.weight_decay, 0.0),
        labelled_batch=_integer(node, "semi_supervised.labelled_batch", defaults.labelled_batch, 1),
        unlabelled_batch=_integer(
            node, "semi_supervised.unlabelled_batch", defaults.unlabelled_batch, 1
        ),
        confidence=_number(node, "semi_supervised.confidence", defaults.confidence, 0.0, 1.0),
        consistency_weight=_number(
            node, "semi_supervised.consistency_weight", defaults.consistency_weight, 0.0
        ),
        ema=ema,
        soft_threshold=soft_threshold,
        augmentations=arms,
    )


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """One line per probed feature set: description, mean ± std and the per-draw values."""
    width = max(len(row["description"]) for row in results.values())
    lines = [f"{'features':<{width}}  {'mean ± std':>14}  per draw (top-1 %)"]
    for row in results.values():
        spread = "n/a" if row["std"] is None else f"{row['std']:.2f}"
        per_draw = ", ".join(f"{v:.2f}" for v in row["per_draw"])
        lines.append(
            f"{row['description']:<{width}}  {row['mean']:>6.2f} ± {spread:>5}  {per_draw}"
        )
    return "\n".join(lines)
