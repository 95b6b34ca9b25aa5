"""Augmented views for the geometry report: the training augmentation of a solo-learn cfg,
scaled to a strength ``s`` in [0, 1], and a dataset/loader of ``V`` views per image.

``s`` scales ``augmentations[0]``: the RandomResizedCrop scale range becomes
``(1 - s * (1 - crop_min_scale), 1)`` and its log aspect-ratio range
``s * log(3/4) .. s * log(4/3)`` (``s = 0`` is the plain resize); the colour-jitter strengths
are multiplied by ``s`` (probability unchanged). Grayscale, blur, solarization and flip are left
out.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn
from torchvision import transforms as T
from tqdm import tqdm

# solo-learn's usual values, used where augmentations[0] leaves a field out.
JITTER_DEFAULTS = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.1, "prob": 0.8}
MIN_SCALE_DEFAULT = 0.08


def augmentation_settings(aug: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """Crop min scale and colour jitter of ``augmentations[0]``; names of defaults used."""
    defaults_used = []
    rrc = aug.get("rrc") or {}
    if "crop_min_scale" in rrc:
        min_scale = float(rrc["crop_min_scale"])
    else:
        min_scale = MIN_SCALE_DEFAULT
        defaults_used.append("rrc.crop_min_scale")
    if rrc.get("enabled") is False:
        min_scale = 1.0
    jitter = aug.get("color_jitter") or {}
    settings = {"crop_min_scale": min_scale}
    for name, default in JITTER_DEFAULTS.items():
        if name in jitter:
            settings[name] = float(jitter[name])
        else:
            settings[name] = default
            defaults_used.append(f"color_jitter.{name}")
    return settings, defaults_used


def base_transform(crop: int, mean: Sequence[float], std: Sequence[float]):
    """Resize, centre crop and normalise: the unaugmented view."""
    return T.Compose(
        [
            T.Resize(crop, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(crop),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def scaled_transform(
    strength: float,
    crop: int,
    settings: dict[str, float],
    mean: Sequence[float],
    std: Sequence[float],
):
    """The training pipeline scaled to ``strength`` in [0, 1] (see the module docstring)."""
    low = 1.0 - strength * (1.0 - settings["crop_min_scale"])
    ratio = (math.exp(strength * math.log(3 / 4)), math.exp(strength * math.log(4 / 3)))
    steps = [
        T.RandomResizedCrop(
            crop, scale=(low, 1.0), ratio=ratio, interpolation=T.InterpolationMode.BICUBIC
        )
    ]
    jitter = [settings[k] * strength for k in ("brightness", "contrast", "saturation", "hue")]
    if strength > 0 and settings["prob"] > 0 and any(jitter):
        steps.append(T.RandomApply([T.ColorJitter(*jitter)], p=settings["prob"]))
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


class AugmentedViews:
    """Dataset of ``[V, C, H, W]`` views of the images ``indices`` of ``dataset``."""

    def __init__(self, dataset, indices: Sequence[int], transform, views: int):
        self.dataset, self.indices, self.transform, self.views = dataset, indices, transform, views

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.dataset[self.indices[i]]
        return torch.stack([self.transform(image) for _ in range(self.views)]), label


def embed_views(models: Sequence[nn.Module], loader, device, desc: str, progress: bool):
    """Runs every model on the same batches of ``[b, V, C, H, W]`` views.

    Returns:
        For each model ``(feats [V, N, F], z [V, N, D])`` and the labels ``[N]``.
    """
    feats: list[list[torch.Tensor]] = [[] for _ in models]
    zs: list[list[torch.Tensor]] = [[] for _ in models]
    labels = []
    with torch.no_grad():
        for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
            batch, views = x.shape[:2]
            flat = x.flatten(0, 1).to(device)
            for k, model in enumerate(models):
                f = model.backbone(flat)
                z = model.projector(f)
                feats[k].append(f.float().cpu().reshape(batch, views, -1))
                zs[k].append(z.float().cpu().reshape(batch, views, -1))
            labels.append(y)
    return [
        (torch.cat(f).transpose(0, 1), torch.cat(z).transpose(0, 1)) for f, z in zip(feats, zs)
    ], torch.cat(labels)
