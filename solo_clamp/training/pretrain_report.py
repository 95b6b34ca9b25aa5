"""The end of a pretraining run's report (``evaluate.knn``): kNN top-1 on a held-out split for
the trained backbone and its two floors, the same backbone at initialisation and raw pixels,
and how spread the backbones' features are (mean cosine, effective rank), printed and written
to ``knn.json`` in the run directory; then the run's problems, if any: what the method's
``facts.diagnose`` finds in its final metrics (a diverged training), collapsed features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig

from solo_clamp.evaluation import (
    FLOORS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RawPixels,
    eval_transform,
    extract_features,
    image_folder_loader,
    knn_accuracy,
    untrained_backbone,
)
from solo_clamp.geometry.features import COLLAPSE_EFFECTIVE_RANK, collapsed, feature_spread
from solo_clamp.methods import facts_of


def knn_report(cfg: DictConfig, trained_backbone: torch.nn.Module) -> dict[str, Any]:
    """kNN top-1/top-5 of the trained backbone (keys ``<method>_knn_top1/5``) and of its two
    floors (:mod:`solo_clamp.evaluation`), measured the same way (same bank, same held-out
    images, same k, T and distance): the same backbone at initialisation, and raw pixels (the
    normalised evaluation image, flattened)."""
    node = cfg.evaluate.knn
    aug = cfg.augmentations[0]
    transform = eval_transform(
        aug.crop_size, aug.get("mean", IMAGENET_MEAN), aug.get("std", IMAGENET_STD)
    )
    batch_size = node.get("batch_size", 256)
    train_loader = image_folder_loader(Path(node.train_path), transform, batch_size)
    val_loader = image_folder_loader(Path(node.val_path), transform, batch_size)
    results: dict[str, Any] = {
        "k": node.get("k", 20),
        "temperature": node.get("T", 0.07),
        "distance": node.get("distance", "cosine"),
        "split": node.get("split", "held-out"),
        "seed": cfg.seed,
        "crop_size": aug.crop_size,
        "train_images": len(train_loader.dataset),
        "test_images": len(val_loader.dataset),
    }
    extractors = {
        "untrained": untrained_backbone(cfg, cfg.seed),
        "raw_pixels": RawPixels(aug.crop_size),
        cfg.method: trained_backbone,
    }
    for label, extractor in extractors.items():
        extractor = extractor.cpu()
        train = extract_features(extractor, train_loader, desc=f"{label} bank features")
        test = extract_features(extractor, val_loader, desc=f"{label} {results['split']} features")
        top1, top5 = knn_accuracy(
            *train,
            *test,
            k=results["k"],
            temperature=results["temperature"],
            distance=results["distance"],
        )
        results[f"{label}_knn_top1"] = top1
        results[f"{label}_knn_top5"] = top5
        if label != "raw_pixels":
            spread = feature_spread(train[0])
            results[f"{label}_mean_cosine"] = spread["mean_cosine"]
            results[f"{label}_effective_rank"] = spread["effective_rank"]
    results["floors_beaten"] = [
        floor
        for floor in FLOORS
        if results[f"{cfg.method}_knn_top1"] > results[f"{floor}_knn_top1"]
    ]
    return results


def format_knn_report(report: dict[str, Any], method: str, name: str) -> str:
    """The report's printed lines: the three kNN top-1 numbers, then the verdict on each floor
    (``name`` is the method as printed, ``method`` its key prefix in the report)."""
    clamp = report[f"{method}_knn_top1"]
    numbers = ", ".join(
        f"{label} {report[f'{floor}_knn_top1']:.2f}%" for floor, label in FLOORS.items()
    )
    lines = [
        f"kNN top-1 (k={report['k']}, {report['distance']}, T={report['temperature']}; bank "
        f"{report['train_images']} training images; training seed {report.get('seed')}) on "
        f"{report['test_images']} "
        f"{report['split']} images: {name} {clamp:.2f}% vs {numbers}"
    ]
    below = [floor for floor in FLOORS if floor not in report["floors_beaten"]]
    for floor in below:
        gap = clamp - report[f"{floor}_knn_top1"]
        lines.append(f"{name} is BELOW the {FLOORS[floor]} floor ({gap:+.2f} points).")
    if not below:
        gaps = ", ".join(
            f"{clamp - report[f'{floor}_knn_top1']:+.2f} points over {label}"
            for floor, label in FLOORS.items()
        )
        lines.append(f"{name} beats both floors ({gaps}).")
    return "\n".join([*lines, *report.get("problems", [])])


def collapse_problems(report: dict[str, Any], method: str, name: str) -> list[str]:
    """A sentence when the trained backbone's bank features have collapsed
    (:func:`solo_clamp.geometry.features.collapsed`), with the untrained backbone's values
    beside."""
    keys = ("mean_cosine", "effective_rank")
    spread = {key: report[f"{method}_{key}"] for key in keys}
    untrained = {key: report[f"untrained_{key}"] for key in keys}
    if not collapsed(spread, untrained):
        return []
    return [
        f"{name}'s features COLLAPSED: effective rank {spread['effective_rank']:.1f} over the "
        f"bank images (bound {COLLAPSE_EFFECTIVE_RANK:g}, the untrained backbone "
        f"{untrained['effective_rank']:.1f}), mean cosine {spread['mean_cosine']:.2f} "
        f"(untrained {untrained['mean_cosine']:.2f})."
    ]


def training_problems(cfg: DictConfig, metrics: Mapping[str, Any]) -> list[str]:
    """What the method's ``facts.diagnose`` finds in the final epoch's logged metrics (e.g.
    ManifoldCLR's diverged posterior), one sentence each; empty when nothing is wrong."""
    diagnose = facts_of(cfg.method).diagnose
    if diagnose is None:
        return []
    values = {key: float(value) for key, value in metrics.items()}
    return diagnose(values, cfg.method_kwargs)
