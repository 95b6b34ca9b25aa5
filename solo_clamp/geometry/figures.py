"""Figures of the geometry report (matplotlib's object-oriented API: no pyplot state, no
display backend) and its t-SNE (scikit-learn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from solo_clamp.geometry.measures import (
    centroid_distances,
    centroid_similarity,
    orientation_similarity,
)
from solo_clamp.geometry.pairs import upper_pairs

CURVE_LABELS = {"neighbours": "neighbours per sub-manifold", "mean_radius": "mean radius"}


def tsne_embedding(feats: torch.Tensor, seed: int):
    """2-D t-SNE embedding ``[N, 2]`` of ``feats [N, F]``."""
    n = feats.shape[0]
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        feats.double().numpy()
    )


def save_figure(fig: Figure, out: Path, name: str, figures: list[str]) -> None:
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)
    figures.append(name)


def histograms(
    out: Path, name: str, panels: list[tuple[str, dict[str, Any]]], figures: list[str]
) -> None:
    """One panel per ``(title, {legend: values})``, overlaid histograms."""
    fig = Figure(figsize=(5 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels):
        arrays = {label: values.double().numpy() for label, values in series.items()}
        bins = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=30)
        for label, values in arrays.items():
            ax.hist(values, bins=bins, alpha=0.55, density=True, label=label)
        ax.set_title(title)
        ax.set_ylabel("density")
        ax.legend()
    save_figure(fig, out, name, figures)


def plot_submanifolds(
    trained: tuple[torch.Tensor, torch.Tensor],
    untrained: tuple[torch.Tensor, torch.Tensor],
    out: Path,
    figures: list[str],
) -> None:
    """``centroid_distances.png`` and ``similarities.png``, trained vs untrained, from the
    ``(backbone features, projector outputs)`` ``[V, B, *]`` of each model."""
    (f_t, z_t), (f_u, z_u) = trained, untrained
    distances = {
        "centroid distance, projector (loss space)": (z_t, z_u),
        "centroid distance, backbone (normalised)": (f_t, f_u),
    }
    panels = [
        (
            title,
            {
                "trained": upper_pairs(centroid_distances(t)),
                "untrained": upper_pairs(centroid_distances(u)),
            },
        )
        for title, (t, u) in distances.items()
    ]
    histograms(out, "centroid_distances.png", panels, figures)
    similarities = {
        "orientation similarity (principal axes, cos^2)": orientation_similarity,
        "centroid cosine similarity": centroid_similarity,
    }
    panels = [
        (title, {"trained": measure(z_t), "untrained": measure(z_u)})
        for title, measure in similarities.items()
    ]
    histograms(out, "similarities.png", panels, figures)


def plot_training_curves(curves: dict[str, list], out: Path, figures: list[str]) -> None:
    """One panel per curve of ``curves`` (its ``epoch`` list and the curves by name)."""
    names = [key for key in curves if key != "epoch"]
    fig = Figure(figsize=(5 * len(names), 3.8))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, key in zip(axes, names):
        points = [(e, v) for e, v in zip(curves["epoch"], curves[key]) if v is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(CURVE_LABELS.get(key, key))
    save_figure(fig, out, "training_curves.png", figures)


def plot_tsne(
    points, labels: torch.Tensor, names: Sequence[str], out: Path, figures: list[str]
) -> None:
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    for k, name in enumerate(names):
        mask = (labels == k).numpy()
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=6, color=cmap(k % cmap.N), label=name)
    if len(names) <= 20:
        ax.legend(markerscale=2, fontsize=7)
    ax.set_title("t-SNE of backbone features")
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, out, "tsne.png", figures)


def plot_invariance(invariance: dict[str, list], out: Path, figures: list[str]) -> None:
    fig = Figure(figsize=(5, 3.8))
    ax = fig.subplots()
    for key, label in (("backbone", "backbone (encoder)"), ("projector", "projector")):
        ax.plot(invariance["strengths"], invariance[key], marker="o", label=label)
    ax.set_xlabel("augmentation strength s")
    ax.set_ylabel("within-image variance fraction")
    ax.set_ylim(0, 1)
    ax.legend()
    save_figure(fig, out, "invariance.png", figures)
