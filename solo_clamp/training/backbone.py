"""Building a solo-learn backbone as solo-learn's own methods and ``main_linear.py`` do."""

from __future__ import annotations

import torch.nn as nn
from omegaconf import DictConfig

CIFAR_DATASETS = ("cifar10", "cifar100")


def build_backbone(
    name: str, dataset: str, kwargs: dict | None = None, method: str = "clamp"
) -> nn.Module:
    """A solo-learn backbone with its classification head removed (ResNets get the CIFAR
    stem for CIFAR datasets, exactly as ``BaseMethod`` builds it)."""
    from solo.methods.base import BaseMethod

    if name not in BaseMethod._BACKBONES:
        raise ValueError(
            f"backbone.name must be one of {sorted(BaseMethod._BACKBONES)}, got {name!r}."
        )
    backbone = BaseMethod._BACKBONES[name](method, **dict(kwargs or {}))
    if name.startswith("resnet"):
        backbone.fc = nn.Identity()
        if dataset in CIFAR_DATASETS:
            backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
            backbone.maxpool = nn.Identity()
    return backbone


def backbone_from_cfg(cfg: DictConfig) -> nn.Module:
    return build_backbone(
        cfg.backbone.name,
        cfg.data.dataset,
        cfg.backbone.get("kwargs") or {},
        cfg.get("method") or cfg.get("pretrain_method") or "clamp",
    )
