"""The two passes of the geometry report over an ImageFolder, each with the trained and the
untrained model: unaugmented images (class statistics, t-SNE) and ``V`` augmented views per
image at increasing augmentation strength (invariance; sub-manifolds at ``s = 1``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from solo_clamp.geometry.features import participation_ratio
from solo_clamp.geometry.figures import (
    plot_invariance,
    plot_submanifolds,
    plot_tsne,
    tsne_embedding,
)
from solo_clamp.geometry.measures import within_image_variance_fraction
from solo_clamp.geometry.stats import backbone_stats, class_stats, projector_stats
from solo_clamp.geometry.views import (
    AugmentedViews,
    base_transform,
    embed_views,
    scaled_transform,
)

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class Embedder:
    """Embeds images of ``dataset`` with the trained and the untrained model, and measures."""

    dataset: Any
    models: list[nn.Module]  # trained, untrained
    device: torch.device
    crop: int
    mean: Sequence[float]
    std: Sequence[float]
    batch_size: int
    seed: int
    progress: bool

    def unaugmented(self, indices: list[int], out: Path, figures: list[str], notes: list[str]):
        """Class statistics and participation ratios of unaugmented views; the t-SNE."""
        transform = base_transform(self.crop, self.mean, self.std)
        loader = DataLoader(
            AugmentedViews(self.dataset, indices, transform, 1), batch_size=self.batch_size
        )
        ((feats, z), (feats_untrained, _)), labels = embed_views(
            self.models, loader, self.device, "unaugmented", self.progress
        )
        feats, z, feats_untrained = feats[0], z[0], feats_untrained[0]  # V = 1
        try:
            points = tsne_embedding(feats, self.seed)
            plot_tsne(points, labels, self.dataset.classes, out, figures)
        except ValueError as err:
            notes.append(f"t-SNE skipped: {err}")
        return {
            "backbone": class_stats(feats, labels),
            "projector": {"participation_ratio": participation_ratio(z).item()},
            "untrained_backbone": class_stats(feats_untrained, labels),
        }

    def augmented(
        self,
        indices: list[int],
        num_views: int,
        settings: dict[str, float],
        rs: float,
        max_range: float,
        out: Path,
        figures: list[str],
    ):
        """Invariance at every strength of :data:`STRENGTHS`; sub-manifolds at ``s = 1``."""
        rows = max(1, self.batch_size // num_views)
        invariance: dict[str, list] = {
            "strengths": list(STRENGTHS),
            "backbone": [],
            "projector": [],
        }
        submanifolds: dict[str, Any] = {}
        for step, strength in enumerate(STRENGTHS):
            torch.manual_seed(self.seed + step)
            transform = scaled_transform(strength, self.crop, settings, self.mean, self.std)
            loader = DataLoader(
                AugmentedViews(self.dataset, indices, transform, num_views), batch_size=rows
            )
            models = self.models if strength == 1.0 else self.models[:1]
            outputs, _ = embed_views(
                models, loader, self.device, f"views s={strength:g}", self.progress
            )
            trained_feats, trained_z = outputs[0]
            invariance["backbone"].append(within_image_variance_fraction(trained_feats).item())
            invariance["projector"].append(within_image_variance_fraction(trained_z).item())
            if strength == 1.0:
                for name, (f, z) in zip(("trained", "untrained"), outputs):
                    submanifolds[name] = {
                        "projector": projector_stats(z, rs, max_range),
                        "backbone": backbone_stats(f),
                    }
                plot_submanifolds(outputs[0], outputs[1], out, figures)
        plot_invariance(invariance, out, figures)
        return invariance, submanifolds
