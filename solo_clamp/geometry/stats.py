"""The numbers of the geometry report: summaries of the measures for ``geometry.json``, and
the per-epoch statistics a method logs (CLAMP's neighbour count and mean radius) read from a
Lightning ``metrics.csv``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from solo_clamp.geometry.features import class_radii, mean_class_separation, participation_ratio
from solo_clamp.geometry.measures import (
    centroid_distances,
    centroid_similarity,
    neighbour_counts,
    orientation_similarity,
    own_centroid_fraction,
    submanifold_radii,
)
from solo_clamp.geometry.pairs import upper_pairs


def projector_stats(z: torch.Tensor, rs: float, max_range: float) -> dict[str, Any]:
    """Loss-space statistics of ``z [V, B, D]`` (centred and L2-normalised like the loss)."""
    return {
        "mean_radius": submanifold_radii(z, rs).mean().item(),
        "neighbours_mean": neighbour_counts(z, rs, max_range=max_range).double().mean().item(),
        "centroid_distance_mean": upper_pairs(centroid_distances(z)).mean().item(),
        "centroid_similarity_mean": centroid_similarity(z).mean().item(),
        "orientation_similarity_mean": orientation_similarity(z).mean().item(),
        "own_centroid_fraction": own_centroid_fraction(z).item(),
    }


def backbone_stats(feats: torch.Tensor) -> dict[str, Any]:
    """Centroid statistics of backbone features ``[V, B, F]`` (normalised like the loss)."""
    return {
        "centroid_distance_mean": upper_pairs(centroid_distances(feats)).mean().item(),
        "own_centroid_fraction": own_centroid_fraction(feats).item(),
    }


def class_stats(feats: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Class radius, separation and effective dimension of unaugmented features ``[N, F]``."""
    classes, radii = class_radii(feats, labels)
    radius = radii.nanmean().item() if not radii.isnan().all() else None
    separation = mean_class_separation(feats, labels).item() if len(classes) > 1 else None
    ratio = separation / radius if separation is not None and radius else None
    return {
        "participation_ratio": participation_ratio(feats).item(),
        "class_radius_mean": radius,
        "class_separation_mean": separation,
        "separation_over_radius": ratio,
    }


def read_curves(
    path: Path, metrics: Mapping[str, str]
) -> tuple[Optional[dict[str, list]], Optional[str]]:
    """Per-epoch curves from a Lightning ``metrics.csv``.

    Args:
        path: the ``metrics.csv``.
        metrics: curve name (``neighbours``, ``mean_radius``) -> the metric key the method logs
            (its ``MethodFacts.curve_keys``); the file's column is ``<key>_epoch``.

    Returns:
        ``(curves, None)`` with the list ``epoch`` and one list per curve, or ``(None, note)``
        saying why the file gives no curves.
    """
    columns_of = {name: f"{key}_epoch" for name, key in metrics.items()}
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        return None, f"cannot read {path}: {err}"
    columns = set(rows[0]) if rows else set()
    missing = [c for c in ("epoch", *columns_of.values()) if c not in columns]
    if missing:
        return None, f"{path} lacks the column(s) {', '.join(missing)}: curves skipped."
    per_epoch: dict[int, dict[str, float]] = {}
    for row in rows:
        try:
            epoch = int(float(row["epoch"]))
        except (TypeError, ValueError):
            continue
        for key, column in columns_of.items():
            try:
                per_epoch.setdefault(epoch, {})[key] = float(row[column])
            except (TypeError, ValueError):
                continue
    epochs = sorted(e for e, values in per_epoch.items() if values)
    if not epochs:
        wanted = ", ".join(columns_of.values())
        return None, f"{path} holds no per-epoch values of {wanted}: curves skipped."
    curves: dict[str, list] = {"epoch": epochs}
    for key in columns_of:
        curves[key] = [per_epoch[e].get(key) for e in epochs]
    return curves, None
