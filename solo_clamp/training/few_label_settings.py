"""The few-label command's fields, checked with the field named, for both of its protocols:
the linear probe's (:class:`~solo_clamp.evaluation.FewLabelSettings`) and the semi-supervised
one's (:class:`~solo_clamp.training.semi_supervised.SemiSupervisedSettings`); and the table it
prints. Pure torch (no solo-learn), like the protocols themselves.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Literal, Optional

from omegaconf import DictConfig, OmegaConf
from pydantic import Field
from pydantic.dataclasses import dataclass

from solo_clamp.evaluation import FLOORS, FewLabelSettings
from solo_clamp.training.semi_supervised import SemiSupervisedSettings
from solo_clamp.validation import Count, Index, Number, validated


@dataclass
class _Labels:  # open: the node may hold other programs' fields
    per_class: Count = 5
    seed: Index = 0


@dataclass
class _Probe:
    epochs: Count = 100
    lr: Number = Field(1e-2, gt=0)
    weight_decay: Number = Field(1e-5, ge=0)


@dataclass
class _FeatureAugment:
    samples: Index = 0


@dataclass
class _FewLabel:
    draws: Count = 5
    floors: Optional[tuple[Literal[tuple(FLOORS)], ...]] = tuple(FLOORS)  # type: ignore[misc]
    probe: _Probe = field(default_factory=_Probe)
    feature_augment: _FeatureAugment = field(default_factory=_FeatureAugment)


def _labels(cfg: DictConfig) -> _Labels:
    return validated(_Labels, OmegaConf.to_container(cfg.get("labels") or {}), "labels")


def check_few_label_cfg(cfg: DictConfig) -> FewLabelSettings:
    """The linear-probe protocol's fields of a few-label cfg, checked; errors name the field."""
    labels = _labels(cfg)
    given = {k: cfg[k] for k in ("draws", "probe", "feature_augment") if cfg.get(k) is not None}
    if "floors" in cfg:  # null: no floors
        given["floors"] = cfg.floors
    node = validated(_FewLabel, OmegaConf.to_container(OmegaConf.create(given)))
    return FewLabelSettings(
        per_class=labels.per_class,
        draws=node.draws,
        seeds=tuple(range(labels.seed, labels.seed + node.draws)),
        samples=node.feature_augment.samples,
        floors=tuple(node.floors or ()),
        epochs=node.probe.epochs,
        lr=float(node.probe.lr),
        weight_decay=float(node.probe.weight_decay),
    )


def check_semi_supervised_cfg(cfg: DictConfig) -> SemiSupervisedSettings:
    """The semi-supervised protocol's fields of a few-label cfg, checked; errors name the field."""
    labels = _labels(cfg)
    node = OmegaConf.to_container(cfg.get("semi_supervised") or OmegaConf.create({}))
    node = {**node, "per_class": labels.per_class, "first_seed": labels.seed}
    return validated(SemiSupervisedSettings, node, "semi_supervised")


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
