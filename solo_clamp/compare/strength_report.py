"""The strength study's part of the report: per method, budget and variant the encoder-against-
projector measures (mean ± std over seeds) for ``results.md``, the floors' transfer scores,
and the figure ``strength.png``: each measure against strength, encoder and projector side by
side, one column per method."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Optional

from matplotlib.figure import Figure
from omegaconf import DictConfig

from solo_clamp.compare.encoder_projector import geometry_enabled
from solo_clamp.evaluation import FLOORS

PAIRED = (
    ("invariance", "invariance"),
    ("effective rank", "effective_rank"),
    ("participation ratio", "participation_ratio"),
    ("kNN top-1 (%)", "knn_top1"),
    ("few-label top-1 (%)", "few_label_mean"),
    ("transfer kNN top-1 (%)", "transfer_{space}_knn_top1"),
    ("transfer few-label top-1 (%)", "transfer_{space}_few_label_mean"),
)
"""``(label, key)``: the measures read from the encoder and from the projector; the key is
``<space>_<key>``, or the key with ``{space}`` filled in."""


def measure_key(key: str, space: str) -> str:
    return key.format(space=space) if "{space}" in key else f"{space}_{key}"


def _values(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in runs if isinstance(r.get(key), (int, float))]


def strength_context(
    cfg: DictConfig, results: dict[str, dict[str, Any]]
) -> Optional[dict[str, Any]]:
    """The rows of the strength section (None without ``geometry.enabled``): per (method,
    budget, variant) in order of method, then strength, each measure's per-seed values
    (``encoder`` and ``projector`` lists), the tangent share and its chance level; and the
    floors' transfer scores."""
    if not geometry_enabled(cfg):
        return None
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in results.values():
        if run.get("kind") != "floor" and run.get("encoder_invariance") is not None:
            groups.setdefault((run["method"], run["budget"], run.get("variant")), []).append(run)
    methods = list(cfg.methods)
    order = sorted(
        groups,
        key=lambda g: (methods.index(g[0]), g[1], groups[g][0].get("strength") or 0.0),
    )
    rows = []
    for method, budget, variant in order:
        runs = sorted(groups[(method, budget, variant)], key=lambda r: r["seed"])
        measures = {
            label: {space: _values(runs, measure_key(key, space)) for space in ENCODER_PROJECTOR}
            for label, key in PAIRED
        }
        rows.append(
            {
                "method": method,
                "budget": budget,
                "variant": variant,
                "strength": runs[0].get("strength"),
                "seeds": len(runs),
                "measures": measures,
                "tangent_share": _values(runs, "tangent_share"),
                "tangent_chance": _values(runs, "tangent_chance"),
            }
        )
    floors = []
    for floor in FLOORS:
        members = [r for r in results.values() if r.get("kind") == "floor" and r["method"] == floor]
        knn = _values(members, "transfer_encoder_knn_top1")
        if knn:
            few = _values(members, "transfer_encoder_few_label_mean")
            floors.append({"floor": floor, "runs": len(members), "knn": knn, "few_label": few})
    transfer = cfg.geometry.transfer.get("dataset")
    return {
        "rows": rows,
        "labels": [label for label, _ in PAIRED],
        "floors": floors,
        "transfer": transfer,
    }


ENCODER_PROJECTOR = ("encoder", "projector")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot_strength(context: dict[str, Any], path: Path) -> Optional[Path]:
    """``strength.png``: one row of panels per measure (the :data:`PAIRED` ones and the
    tangent share), one column per method and budget; in each panel the encoder (solid) and
    the projector (dashed) against strength, mean ± std over seeds; the transfer panels draw
    the floors' transfer scores as grey lines. None when no row has a strength (no
    ``variants``)."""
    rows = [r for r in context["rows"] if r["strength"] is not None]
    if not rows:
        return None
    columns = list(dict.fromkeys((r["method"], r["budget"]) for r in rows))
    labels = [*context["labels"], "tangent share"]
    fig = Figure(figsize=(3.6 * len(columns), 2.4 * len(labels)))
    axes = fig.subplots(len(labels), len(columns), squeeze=False)
    floor_keys = {"transfer kNN top-1 (%)": "knn", "transfer few-label top-1 (%)": "few_label"}
    for col, (method, budget) in enumerate(columns):
        members = sorted(
            (r for r in rows if (r["method"], r["budget"]) == (method, budget)),
            key=lambda r: r["strength"],
        )
        strengths = [r["strength"] for r in members]
        for row, label in enumerate(labels):
            ax = axes[row][col]
            if label == "tangent share":
                lines = [("tangent share", "tangent_share", "-"), ("chance", "tangent_chance", ":")]
                series = [(name, [r[key] for r in members], style) for name, key, style in lines]
            else:
                series = [
                    (space, [r["measures"][label][space] for r in members], style)
                    for space, style in zip(ENCODER_PROJECTOR, ("-", "--"))
                ]
            for colour, (name, per_row, style) in enumerate(series):
                points = [(s, *_mean_std(v)) for s, v in zip(strengths, per_row) if v]
                if points:
                    xs, means, stds = zip(*points)
                    ax.errorbar(
                        xs,
                        means,
                        yerr=stds,
                        linestyle=style,
                        marker="o",
                        color=f"C{colour}",
                        capsize=3,
                        label=name,
                    )
            for floor in context["floors"] if label in floor_keys else []:
                values = floor[floor_keys[label]]
                if values:
                    style = ":" if floor["floor"] == "raw_pixels" else "-."
                    ax.axhline(
                        statistics.fmean(values),
                        color="grey",
                        linestyle=style,
                        label=floor["floor"].replace("_", " "),
                    )
            ax.set(xlabel="strength", ylabel=label)
            if row == 0:
                ax.set_title(f"{method} ({budget})")
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
