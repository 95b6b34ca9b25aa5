"""Frozen-feature evaluation, the one home of it: feature extraction, solo-learn's weighted kNN,
a linear probe, few-label probes and the two floors (raw pixels, the untrained backbone).

Used by the pretrain report (``solo_clamp.training.pretrain_report.knn_report``), ``solo-clamp
compare``, ``solo-clamp knn`` and ``solo-clamp few-label``: every kNN, probe and floor number
of the project is computed here, with the same transform and the same rules.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms
from tqdm.auto import tqdm

from solo_clamp.backbones import build_backbone, method_of, spec_from_cfg
from solo_clamp.data.label_subset import stratified_draw

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLOORS = {"raw_pixels": "raw pixels", "untrained": "untrained backbone"}
"""The two floors every learned representation is measured against, and their names."""


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


class RawPixels(nn.Flatten):
    """The raw-pixel floor: the normalised evaluation image, flattened, as features
    (``inplanes`` is how solo-learn's ``LinearModel`` reads a backbone's width)."""

    def __init__(self, crop_size: int):
        super().__init__()
        self.inplanes = 3 * crop_size * crop_size


def untrained_backbone(solo_cfg: DictConfig, seed: int) -> nn.Module:
    """The untrained floor: the backbone a pretraining run of the parsed ``solo_cfg`` with
    ``seed`` starts from (solo-learn's ``BaseMethod`` builds the backbone first, right after
    seeding, as :func:`~solo_clamp.backbones.build_backbone` does: the same weights)."""
    return build_backbone(spec_from_cfg(solo_cfg), method_of(solo_cfg), seed=seed)


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    loader: DataLoader,
    desc: str = "features",
    device: Optional[torch.device] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs ``backbone`` in eval mode over ``loader``; returns ``(features [N, F], labels [N])``.

    A module without parameters (``RawPixels``: the raw-pixel floor) runs on the CPU."""
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


def subset_features(
    backbone: nn.Module,
    dataset: Dataset,
    indices: Sequence[int],
    batch_size: int = 256,
    num_workers: int = 0,
    desc: str = "features",
    device: Optional[torch.device] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_features` of the ``indices`` images of ``dataset``, in that order."""
    loader = DataLoader(
        Subset(dataset, list(indices)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
    )
    return extract_features(backbone, loader, desc=desc, device=device)


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
    # solo-learn is optional (the `solo` extra) and this module serves torch-only users too
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


@torch.no_grad()
def knn_predictions(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    distance: str = "cosine",
    chunk_size: int = 1024,
) -> torch.Tensor:
    """``[N_test]`` top-1 labels of the same weighted kNN vote as :func:`knn_accuracy`
    (solo-learn's ``WeightedKNNClassifier``), one per test image: what a bootstrap over test
    images resamples (an exact tie of two classes' vote sums may break the other way)."""
    if distance not in ("cosine", "euclidean"):
        raise ValueError(f"distance must be 'cosine' or 'euclidean', got {distance!r}.")
    if distance == "cosine":
        train_feats, test_feats = F.normalize(train_feats), F.normalize(test_feats)
    num_classes = int(train_labels.max()) + 1
    k = min(k, len(train_labels))
    predictions = []
    for queries in test_feats.split(chunk_size):
        if distance == "cosine":
            similarity = queries @ train_feats.T
        else:
            similarity = 1 / (torch.cdist(queries, train_feats) + 1e-5)
        similarity, neighbours = similarity.topk(k, largest=True, sorted=True)
        weights = (similarity / temperature).exp() if distance == "cosine" else similarity
        votes = torch.zeros(len(queries), num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[neighbours], weights)
        predictions.append(votes.argmax(1))
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)


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
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    predictions = linear_probe_predictions(
        train_feats, train_labels, test_feats, epochs, lr, weight_decay, seed, num_classes
    )
    return float((predictions == test_labels).float().mean() * 100)


def linear_probe_predictions(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-5,
    seed: int = 0,
    num_classes: Optional[int] = None,
) -> torch.Tensor:
    """``[N_test]`` labels predicted by :func:`linear_probe_accuracy`'s probe (``num_classes``
    outputs; default: the training labels' largest + 1)."""
    generator = torch.Generator().manual_seed(seed)
    mean, std = train_feats.mean(0), train_feats.std(0)
    # A feature constant on the training set (a border pixel with few labels) keeps its scale,
    # as scikit-learn's StandardScaler does: dividing by a clamped ~0 std would blow up every
    # test image where that feature is not constant.
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    x_train, x_test = (train_feats - mean) / std, (test_feats - mean) / std
    num_classes = num_classes or int(train_labels.max()) + 1
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
        return layer(x_test).argmax(1)


@dataclass(frozen=True)
class FewLabelSettings:
    """A few-label protocol: ``per_class`` labelled images per class, one draw per seed of
    ``seeds`` (``draws`` of them), a linear probe per draw (``epochs``, ``lr``,
    ``weight_decay``), and ``samples`` feature-augmentation samples per labelled image
    (0: none). ``floors``: the floors a command probes beside the backbone."""

    per_class: int
    draws: int
    seeds: tuple[int, ...]
    samples: int
    floors: tuple[str, ...]
    epochs: int
    lr: float
    weight_decay: float


def label_draws(targets: Sequence[int], settings: FewLabelSettings) -> list[list[int]]:
    """The labelled images of every draw: sorted positions in ``targets``, class-stratified
    (:func:`~solo_clamp.data.label_subset.stratified_draw`, one seed per draw)."""
    return [
        stratified_draw(targets, per_class=settings.per_class, seed=seed).tolist()
        for seed in settings.seeds
    ]


def probe_draws(
    train_z: torch.Tensor,
    train_y: torch.Tensor,
    test_z: torch.Tensor,
    test_y: torch.Tensor,
    settings: FewLabelSettings,
    augmenter=None,
) -> tuple[list[float], list[float]]:
    """Top-1 % of the probe of each draw, and with ``augmenter`` (a method's feature
    augmenter, e.g. ManifoldCLR's prior) of the probe on the draw's features plus
    ``settings.samples`` prior samples each.

    Args:
        train_z, train_y: ``[draws, n, d]`` labelled features and ``[draws, n]`` labels.
        test_z, test_y: ``[N, d]`` and ``[N]``, the evaluation split.

    Returns:
        ``(plain, augmented)``, one value per draw (``augmented`` empty without augmenter).
    """
    plain, augmented = [], []
    for seed, z, y in zip(settings.seeds, train_z, train_y):
        probe = dict(
            epochs=settings.epochs, lr=settings.lr, weight_decay=settings.weight_decay, seed=seed
        )
        plain.append(linear_probe_accuracy(z, y, test_z, test_y, **probe))
        if augmenter is None:
            continue
        extra = augmenter.augment(z, settings.samples, torch.Generator().manual_seed(seed))
        labels = torch.cat([y, y.repeat_interleave(settings.samples)])
        augmented.append(
            linear_probe_accuracy(torch.cat([z, extra]), labels, test_z, test_y, **probe)
        )
    return plain, augmented


def summarise(per_draw: Sequence[float]) -> dict[str, Any]:
    """``{"per_draw", "mean", "std"}`` of per-draw accuracies (std: the sample standard
    deviation, null for a single draw)."""
    values = [float(v) for v in per_draw]
    return {
        "per_draw": values,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }
