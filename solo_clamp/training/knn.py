"""Offline weighted kNN of a pretrained checkpoint (backbone and projector features).

Like solo-learn's ``main_knn.py`` (temperature-weighted kNN, grid over k, T and distance),
but configured with Hydra, CPU-capable, and loading the checkpoint with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from solo.methods import METHODS

import solo_clamp
from solo_clamp.checkpoints import load_run
from solo_clamp.errors import ConfigError
from solo_clamp.evaluation import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    extract_features,
    image_folder_loader,
    knn_accuracy,
)
from solo_clamp.training.checks import check_field_types, check_image_folders


class _Features(torch.nn.Module):
    """Backbone features, and projector features when the method has a projector."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        feats = self.model.backbone(images)
        projector = getattr(self.model, "projector", None)
        z = projector(feats) if projector is not None else feats
        return torch.cat([feats, z], dim=1)


def run_knn(cfg: DictConfig) -> list[dict[str, Any]]:
    """Evaluates ``pretrained_checkpoint`` with kNN on ``data.train_path``/``data.val_path``."""
    solo_clamp.register()
    check_field_types(cfg)
    if OmegaConf.is_missing(cfg, "pretrained_checkpoint"):
        raise ConfigError("pretrained_checkpoint: give a .ckpt file or its run directory.")
    check_image_folders(cfg, ("data.train_path", "data.val_path"))
    run = load_run(cfg.pretrained_checkpoint)
    run_cfg = OmegaConf.create(run.cfg)
    OmegaConf.set_struct(run_cfg, False)
    model = METHODS[run_cfg.method](run_cfg)
    model.load_state_dict(run.state_dict, strict=False)
    aug = run_cfg.augmentations[0]
    crop = cfg.get("crop_size") or aug.crop_size
    transform = eval_transform(
        crop,
        cfg.get("mean") or aug.get("mean", IMAGENET_MEAN),
        cfg.get("std") or aug.get("std", IMAGENET_STD),
    )
    batch = cfg.get("batch_size", 256)
    loaders = [
        image_folder_loader(Path(p), transform, batch, cfg.get("num_workers", 0))
        for p in (cfg.data.train_path, cfg.data.val_path)
    ]
    extractor = _Features(model)
    (train_all, train_y), (test_all, test_y) = (
        extract_features(extractor, loader, desc=name)
        for loader, name in zip(loaders, ("train features", "test features"))
    )
    width = model.features_dim
    features = {
        "backbone": (train_all[:, :width], test_all[:, :width]),
        "projector": (train_all[:, width:], test_all[:, width:]),
    }
    results = []
    for kind in cfg.get("feature_type", ["backbone", "projector"]):
        if kind not in features:
            raise ConfigError(f"feature_type must be 'backbone' or 'projector', got {kind!r}.")
        for k in cfg.get("k", [20]):
            for distance in cfg.get("distance_function", ["cosine"]):
                temperatures = cfg.get("temperature", [0.07]) if distance == "cosine" else [None]
                for temperature in temperatures:
                    top1, top5 = knn_accuracy(
                        features[kind][0],
                        train_y,
                        features[kind][1],
                        test_y,
                        k=k,
                        temperature=temperature or 0.07,
                        distance=distance,
                    )
                    row = {
                        "features": kind,
                        "k": k,
                        "distance": distance,
                        "temperature": temperature,
                        "top1": top1,
                        "top5": top5,
                    }
                    print(
                        f"kNN {kind} k={k} {distance} T={temperature}: "
                        f"acc@1={top1:.2f} acc@5={top5:.2f}"
                    )
                    results.append(row)
    return results
