"""Intervals for the held-out transport check (:mod:`solo_clamp.geometry.transport`): each
ratio of a map's error to the identity's with a percentile bootstrap interval over the pairs,
and each learned row's paired difference from every control on the same resampled pairs
(``scipy.stats.bootstrap``), so that "the posterior beats a control" is read from an interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

LEARNED = ("posterior", "posterior_location")
"""The rows that move ``z0`` with the pair's own coefficients."""

CONFIDENCE, RESAMPLES = 0.95, 2000
"""The bootstrap of the ratios: a percentile interval over resampled pairs."""


def per_pair_errors(
    moved: dict[str, torch.Tensor], z0: torch.Tensor, z1: torch.Tensor
) -> dict[str, dict[str, np.ndarray]]:
    """``{row: {"error": [B], "angular": [B]}}`` float64: each pair's squared error
    ``‖map(z0_i) − z1_i‖²`` and angular error ``1 − cos(map(z0_i), z1_i)``; a ratio of
    :func:`control_table` is the mean of a row's over the mean of the identity's."""
    z1d = z1.detach().double()
    return {
        name: {
            "error": (value.double() - z1d).pow(2).sum(dim=-1).numpy(),
            "angular": (1 - F.cosine_similarity(value.double(), z1d, dim=-1)).numpy(),
        }
        for name, value in moved.items()
    }


def _ratio(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """``mean(a) / mean(identity)``, or ``(mean(a) − mean(b)) / mean(identity)``."""
    *maps, identity = (np.mean(s, axis=axis) for s in samples)
    return (maps[0] - (maps[1] if len(maps) > 1 else 0)) / identity


def _interval(samples: tuple[np.ndarray, ...], resamples: int, seed: int) -> list[float]:
    """``[statistic, low, high]`` of :func:`_ratio` with its percentile bootstrap interval over
    the (paired) pairs."""
    ci = stats.bootstrap(
        samples,
        _ratio,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=seed,
    ).confidence_interval
    return [float(_ratio(*samples)), float(ci.low), float(ci.high)]


def ratio_intervals(
    moved: dict[str, torch.Tensor],
    z0: torch.Tensor,
    z1: torch.Tensor,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap intervals (resampling the pairs) of the ratios of :func:`control_table`.

    Returns:
        ``{"confidence", "resamples", "rows": {row: {"error_ratio": [value, low, high],
        "angular_ratio": [...]}}, "differences": {"<learned> - <control>": {...}}}``: every
        learned row (:data:`LEARNED`) minus every control on the same resampled pairs; below 0
        (the whole interval) the learned row beats that control.
    """
    errors = per_pair_errors(moved, z0, z1)
    identity = errors["identity"]

    def both(*names: str) -> dict[str, list[float]]:
        return {
            f"{kind}_ratio": _interval(
                tuple(errors[n][kind] for n in names) + (identity[kind],), resamples, seed
            )
            for kind in ("error", "angular")
        }

    learned = [name for name in LEARNED if name in errors]
    return {
        "confidence": CONFIDENCE,
        "resamples": resamples,
        "rows": {name: both(name) for name in errors if name != "identity"},
        "differences": {
            f"{a} - {b}": both(a, b) for a in learned for b in errors if b not in LEARNED
        },
    }
