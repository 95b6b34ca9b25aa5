"""Encoder against projector, per run (``geometry.enabled``): the measures of
:func:`solo_clamp.geometry.projection.encoder_projector_geometry` on held-out images, kNN and
few-label scores read from the encoder's and from the projector's features, and (with
``geometry.transfer``) both scored on a dataset the run did not train on.

Held-out images: ``geometry.per_class`` images per class of the test split (no run trains on
them), each seen in ``geometry.views`` views drawn with the run's own training augmentations
(its variant's transform sets, solo-learn's pipeline, view ``v`` from set ``v mod sets``),
with ``geometry.seed``: the same random draws for every run. Scores: the comparison's kNN bank
and test images (:func:`solo_clamp.compare.scores.test_features`), the projector's features
being the projector applied to the encoder's.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from solo.data.pretrain_dataloader import build_transform_pipeline

from solo_clamp.compare.data import ComparisonData, augmentation_sets, stratified_indices
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.scores import evaluation_device, probe_scores
from solo_clamp.compare.transfer import prefixed, project, transfer_scores
from solo_clamp.geometry.projection import encoder_projector_geometry

COLUMNS = (
    tuple(
        f"{space}_{measure}"
        for measure in ("invariance", "effective_rank", "participation_ratio")
        for space in ("encoder", "projector")
    )
    + ("tangent_share", "tangent_chance")
    + tuple(
        f"{where}{space}_{score}"
        for where in ("", "transfer_")
        for score in ("knn_top1", "few_label_mean")
        for space in ("encoder", "projector")
    )
)
"""The columns these measures fill in ``results.csv`` (a floor fills ``transfer_encoder_*``
with its own features' transfer scores)."""


def geometry_enabled(cfg: DictConfig) -> bool:
    return bool(cfg.get("geometry") and cfg.geometry.get("enabled"))


@torch.no_grad()
def held_out_views(
    cfg: DictConfig, data: ComparisonData, spec: RunSpec, backbone: torch.nn.Module
) -> torch.Tensor:
    """``[V, B, F]`` backbone features of ``geometry.views`` augmented views of the held-out
    images (module docstring); Python's and torch's random states are left as they were."""
    dataset = data.dataset("val", None)  # PIL images
    indices = stratified_indices(dataset.targets, int(cfg.geometry.per_class))
    images = [dataset[i][0] for i in indices]
    sets = augmentation_sets(cfg, spec.views, spec.variant)
    pipelines = [build_transform_pipeline(data.solo_dataset, aug) for aug in sets]
    device = evaluation_device(cfg)
    was_training = backbone.training
    backbone.to(device).eval()
    state = random.getstate()
    views = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg.geometry.seed))
            random.seed(int(cfg.geometry.seed))
            for view in range(int(cfg.geometry.views)):
                pipeline = pipelines[view % len(pipelines)]
                batch = torch.stack([pipeline(image) for image in images])
                feats = [
                    backbone(chunk.to(device)).float().cpu()
                    for chunk in batch.split(int(cfg.evaluation.batch_size))
                ]
                views.append(torch.cat(feats))
    finally:
        random.setstate(state)
        backbone.train(was_training)
    return torch.stack(views)


def run_measures(
    cfg: DictConfig,
    data: ComparisonData,
    spec: RunSpec,
    backbone: torch.nn.Module,
    projector: Optional[torch.nn.Module],
    features: tuple[tuple, tuple],
) -> dict[str, Any]:
    """The run's :data:`COLUMNS` (empty when ``geometry.enabled`` is false, or the method has
    no projector); ``features``: the encoder's ``(bank, tests)``."""
    if not geometry_enabled(cfg) or projector is None:
        return {}
    views = held_out_views(cfg, data, spec, backbone)
    projector = projector.cpu().eval()
    scores: dict[str, Any] = encoder_projector_geometry(views, projector)
    bank, tests = features
    scores.update(prefixed(probe_scores(cfg, bank, tests), "encoder_"))
    projected = probe_scores(cfg, project(projector, bank), project(projector, tests))
    scores.update(prefixed(projected, "projector_"))
    if data.transfer is not None:
        scores.update(transfer_scores(cfg, data.transfer, backbone, projector))
    return scores


def floor_measures(
    cfg: DictConfig, data: ComparisonData, extractor: torch.nn.Module, crop_size: Optional[int]
) -> dict[str, Any]:
    """A floor's transfer scores (``transfer_encoder_*``: its own features), when
    ``geometry.transfer`` is set; else nothing."""
    if not geometry_enabled(cfg) or data.transfer is None:
        return {}
    return transfer_scores(cfg, data.transfer, extractor, crop_size=crop_size)
