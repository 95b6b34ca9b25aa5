"""kNN and linear-probe scores of a frozen feature extractor; the untrained floor."""

from __future__ import annotations

from functools import partial
from typing import Any, Optional

import torch
from omegaconf import DictConfig

from solo_clamp.compare.data import (
    ComparisonData,
    bank_indices,
    normalisation,
    stratified_indices,
)
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.training import build_solo_cfg, parse


def evaluation_device(cfg: DictConfig) -> torch.device:
    name = cfg.evaluation.get("device", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _features(
    cfg: DictConfig,
    data: ComparisonData,
    extractor: torch.nn.Module,
    split: str,
    indices,
    crop_size: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of the ``indices`` images of ``split`` (a function of the split's
    targets), centre crop, no augmentation."""
    from torch.utils.data import DataLoader, Subset

    from solo_clamp.evaluation import eval_transform, extract_features

    ev = cfg.evaluation
    mean, std = normalisation(cfg, data)
    transform = eval_transform(crop_size or cfg.augmentations[0].crop_size, mean, std)
    device = evaluation_device(cfg)
    dataset = data.dataset(split, transform)
    loader = DataLoader(
        Subset(dataset, indices(dataset.targets)),
        batch_size=ev.batch_size,
        shuffle=False,
        num_workers=int(cfg.data.get("num_workers", 0)),
    )
    return extract_features(extractor.to(device), loader, desc=f"{split} features", device=device)


def _knn(cfg: DictConfig, bank, queries) -> tuple[float, float]:
    from solo_clamp.evaluation import knn_accuracy

    ev = cfg.evaluation
    return knn_accuracy(
        *bank,
        *queries,
        k=ev.k,
        temperature=ev.temperature,
        distance=ev.get("distance", "cosine"),
    )


def evaluate_features(
    cfg: DictConfig,
    data: ComparisonData,
    extractor: torch.nn.Module,
    seed: int,
    crop_size: Optional[int] = None,
) -> dict[str, float]:
    """kNN top-1/top-5 and linear-probe top-1 of ``extractor``'s features on the test split."""
    from solo_clamp.evaluation import linear_probe_accuracy

    ev = cfg.evaluation
    bank = _features(cfg, data, extractor, "train", partial(bank_indices, cfg, data), crop_size)
    tests = _features(
        cfg,
        data,
        extractor,
        "val",
        lambda targets: stratified_indices(targets, ev.val_per_class),
        crop_size,
    )
    top1, top5 = _knn(cfg, bank, tests)
    linear = linear_probe_accuracy(
        *bank,
        *tests,
        epochs=ev.linear.epochs,
        lr=ev.linear.lr,
        weight_decay=ev.linear.weight_decay,
        seed=seed,
    )
    return {
        "knn_top1": top1,
        "knn_top5": top5,
        "linear_top1": linear,
        "train_images": len(bank[1]),
        "test_images": len(tests[1]),
    }


def validation_scores(
    cfg: DictConfig,
    data: ComparisonData,
    extractor: torch.nn.Module,
    crop_size: Optional[int] = None,
) -> dict[str, float]:
    """Tuning's score: kNN top-1/top-5 with the comparison's protocol, bank = the training
    images left after the hold-out (as for the test scores), queries = the held-out
    validation images. Never reads the test split. Non-finite features raise
    FloatingPointError (a diverged backbone)."""
    bank = _features(cfg, data, extractor, "train", partial(bank_indices, cfg, data), crop_size)
    queries = _features(cfg, data, extractor, "train", lambda _: list(data.held_out), crop_size)
    if not (bank[0].isfinite().all() and queries[0].isfinite().all()):
        raise FloatingPointError("non-finite features: the backbone diverged.")
    top1, top5 = _knn(cfg, bank, queries)
    return {
        "val_knn_top1": top1,
        "val_knn_top5": top5,
        "bank_images": len(bank[1]),
        "val_images": len(queries[1]),
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


def validation_floor(cfg: DictConfig, data: ComparisonData, floor: str) -> dict[str, Any]:
    """A floor on the validation split, scored as the trials are: ``raw_pixels`` (at
    ``floors.raw_pixel_size``) or ``untrained``, the backbone every trial starts from (seed
    ``tuning.seed``). A trial below them has learned nothing its input did not already give."""
    seed = int(cfg.tuning.seed)
    if floor == "raw_pixels":
        scores = validation_scores(cfg, data, torch.nn.Flatten(), cfg.floors.get("raw_pixel_size"))
    else:
        scores = validation_scores(cfg, data, untrained_backbone(cfg, data, seed))
    return {"run_id": f"floor-{floor}", "kind": "floor", "method": floor, "seed": seed, **scores}
