"""Frozen-feature evaluation: feature extraction, weighted kNN (solo-learn's) and a linear probe."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from tqdm.auto import tqdm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_transform(
    crop_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> transforms.Compose:
    """Deterministic transform for evaluation: resize to ``crop_size``, tensor, normalise."""
    return transforms.Compose(
        [
            transforms.Resize(crop_size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(crop_size),
            transforms.ToTensor(),
            transforms.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def image_folder_loader(
    path: Path, transform, batch_size: int = 256, num_workers: int = 0
) -> DataLoader:
    """Unshuffled loader over an ImageFolder tree."""
    dataset = datasets.ImageFolder(str(path), transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    loader: DataLoader,
    desc: str = "features",
    device: Optional[torch.device] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs ``backbone`` in eval mode over ``loader``; returns ``(features [N, F], labels [N])``.

    A module without parameters (``nn.Flatten()``: the raw-pixel floor) runs on the CPU."""
    if device is None:
        weights = next(backbone.parameters(), None)
        device = weights.device if weights is not None else torch.device("cpu")
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    for images, targets in tqdm(loader, desc=desc, leave=False, unit="batch"):
        feats.append(backbone(images.to(device)).float().cpu())
        labels.append(targets)
    backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    distance: str = "cosine",
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (%) of solo-learn's temperature-weighted kNN classifier."""
    from solo.utils.knn import WeightedKNNClassifier

    if distance not in ("cosine", "euclidean"):
        raise ValueError(f"distance must be 'cosine' or 'euclidean', got {distance!r}.")
    knn = WeightedKNNClassifier(k=k, T=temperature, distance_fx=distance)
    knn.update(
        train_features=train_feats,
        train_targets=train_labels,
        test_features=test_feats,
        test_targets=test_labels,
    )
    top1, top5 = knn.compute()
    return float(top1), float(top5)


def linear_probe_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-5,
    seed: int = 0,
) -> float:
    """Top-1 accuracy (%) of a linear classifier trained on frozen, standardised features
    (full-batch Adam with cosine decay: deterministic and quick for the small sets used here)."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = train_feats.mean(0), train_feats.std(0)
    # A feature constant on the training set (a border pixel with few labels) keeps its scale,
    # as scikit-learn's StandardScaler does: dividing by a clamped ~0 std would blow up every
    # test image where that feature is not constant.
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    x_train, x_test = (train_feats - mean) / std, (test_feats - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    layer = nn.Linear(x_train.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.01)
        layer.bias.zero_()
    optimizer = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(layer(x_train), train_labels).backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        return float((layer(x_test).argmax(1) == test_labels).float().mean() * 100)
