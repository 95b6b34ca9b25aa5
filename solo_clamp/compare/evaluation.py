"""kNN and linear-probe scores of a frozen feature extractor; the untrained floor."""

from __future__ import annotations

from typing import Optional

import torch
from omegaconf import DictConfig

from solo_clamp.compare.data import ComparisonData, normalisation, stratified_indices
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.training import build_solo_cfg, parse


def evaluation_device(cfg: DictConfig) -> torch.device:
    name = cfg.evaluation.get("device", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate_features(
    cfg: DictConfig,
    data: ComparisonData,
    extractor: torch.nn.Module,
    seed: int,
    crop_size: Optional[int] = None,
) -> dict[str, float]:
    """kNN top-1/top-5 and linear-probe top-1 of ``extractor``'s features."""
    from torch.utils.data import DataLoader, Subset

    from solo_clamp.evaluation import (
        eval_transform,
        extract_features,
        knn_accuracy,
        linear_probe_accuracy,
    )

    ev = cfg.evaluation
    mean, std = normalisation(cfg, data)
    transform = eval_transform(crop_size or cfg.augmentations[0].crop_size, mean, std)
    device = evaluation_device(cfg)
    extractor = extractor.to(device)
    feats = []
    for split, per_class in (("train", ev.train_per_class), ("val", ev.val_per_class)):
        dataset = data.dataset(split, transform)
        subset = Subset(dataset, stratified_indices(dataset.targets, per_class))
        loader = DataLoader(
            subset,
            batch_size=ev.batch_size,
            shuffle=False,
            num_workers=int(cfg.data.get("num_workers", 0)),
        )
        feats.append(extract_features(extractor, loader, desc=f"{split} features", device=device))
    (train_x, train_y), (test_x, test_y) = feats
    top1, top5 = knn_accuracy(
        train_x,
        train_y,
        test_x,
        test_y,
        k=ev.k,
        temperature=ev.temperature,
        distance=ev.get("distance", "cosine"),
    )
    linear = linear_probe_accuracy(
        train_x,
        train_y,
        test_x,
        test_y,
        epochs=ev.linear.epochs,
        lr=ev.linear.lr,
        weight_decay=ev.linear.weight_decay,
        seed=seed,
    )
    return {
        "knn_top1": top1,
        "knn_top5": top5,
        "linear_top1": linear,
        "train_images": len(train_y),
        "test_images": len(test_y),
    }


def untrained_backbone(cfg: DictConfig, data: ComparisonData, seed: int) -> torch.nn.Module:
    """The backbone every run of ``seed`` starts from (solo-learn builds it first)."""
    from lightning.pytorch import seed_everything
    from solo.methods import METHODS

    import solo_clamp

    solo_clamp.register()
    method = cfg.methods[0]
    spec = RunSpec(
        method,
        "equal_epochs",
        seed,
        int(cfg.recipes[method].get("views", 2)),
        1,
        1,
        int(cfg.batch_size),
    )
    seed_everything(seed)
    return METHODS[method](parse(build_solo_cfg(cfg, spec, data))).backbone
