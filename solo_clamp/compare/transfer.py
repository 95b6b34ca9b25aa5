"""Transfer scores (``geometry.transfer``): a run's encoder and projector features, and the
floors' features, scored on a dataset the runs did not train on (e.g. Fashion-MNIST for MNIST
runs), with the comparison's kNN and few-label protocol.

The transfer images go through the runs' own evaluation transform (centre crop at the views'
size, the pretraining data's mean and std: what the backbone was trained to take). Only the
transfer dataset's two splits are read: its ``train`` split (``train_per_class`` per class)
is the kNN bank and the few-label draws' pool, its ``val`` split (``val_per_class`` per class)
the scored images. The pretraining dataset's images are never opened here (tested).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from omegaconf import DictConfig

from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.scores import probe_scores, split_features, transfer_indices


@torch.no_grad()
def project(projector: torch.nn.Module, features: tuple, batch_size: int = 1024) -> tuple:
    """``(features, labels, indices)`` with the features passed through ``projector`` (in eval
    mode, on the CPU, in batches)."""
    feats, *rest = features
    projector = projector.cpu().eval()
    projected = [projector(chunk).float() for chunk in feats.split(batch_size)]
    return (torch.cat(projected) if projected else feats[:, :0], *rest)


def prefixed(scores: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}{key}": value for key, value in scores.items()}


def transfer_scores(
    cfg: DictConfig,
    transfer: ComparisonData,
    backbone: torch.nn.Module,
    projector: Optional[torch.nn.Module] = None,
    crop_size: Optional[int] = None,
) -> dict[str, Optional[float]]:
    """kNN top-1 and few-label mean of ``backbone``'s features (``transfer_encoder_*``) and,
    with a ``projector``, of the projector's features of the same images
    (``transfer_projector_*``) on the transfer dataset ``transfer``; ``crop_size``: a floor's
    (raw pixels at another size), default the views'."""
    bank = split_features(
        cfg, transfer, backbone, "train", lambda t: transfer_indices(cfg, "train", t), crop_size
    )
    tests = split_features(
        cfg, transfer, backbone, "val", lambda t: transfer_indices(cfg, "val", t), crop_size
    )
    scores = prefixed(probe_scores(cfg, bank, tests), "transfer_encoder_")
    if projector is not None:
        projected = probe_scores(cfg, project(projector, bank), project(projector, tests))
        scores.update(prefixed(projected, "transfer_projector_"))
    return scores
