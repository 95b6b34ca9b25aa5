"""What a comparison measures of a frozen feature extractor, with :mod:`solo_clamp.evaluation`:
kNN, linear and few-label probes on the test split, kNN on the tuning validation split, and
the two floors' extractors."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Optional, Sequence

import torch
from omegaconf import DictConfig

from solo_clamp.compare.data import (
    ComparisonData,
    bank_indices,
    eval_split,
    knn_settings,
    stratified_indices,
    test_indices,
)
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.run_cfg import parse, solo_cfg
from solo_clamp.errors import ConfigError
from solo_clamp.evaluation import (
    FewLabelSettings,
    RawPixels,
    knn_accuracy,
    knn_predictions,
    label_draws,
    linear_probe_predictions,
    probe_draws,
    subset_features,
    summarise,
    untrained_backbone,
)


def evaluation_device(cfg: DictConfig) -> torch.device:
    name = cfg.evaluation.get("device", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def split_features(
    cfg: DictConfig,
    data: ComparisonData,
    extractor: torch.nn.Module,
    split: str,
    indices: Callable[[Sequence[int]], list[int]],
    crop_size: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Features, labels and dataset indices of the ``indices(targets)`` images of ``split``
    (centre crop, no augmentation)."""
    dataset = eval_split(cfg, data, split, crop_size)
    chosen = indices(dataset.targets)
    device = evaluation_device(cfg)
    feats, labels = subset_features(
        extractor.to(device),
        dataset,
        chosen,
        batch_size=cfg.evaluation.batch_size,
        num_workers=int(cfg.data.get("num_workers", 0)),
        desc=f"{split} features",
        device=device,
    )
    return feats, labels, chosen


def _knn(cfg: DictConfig, bank, queries) -> tuple[float, float]:
    return knn_accuracy(*bank[:2], *queries[:2], **knn_settings(cfg))


def correct_string(correct: torch.Tensor) -> str:
    """Per-image correctness as a compact string of ``0`` / ``1`` (result.json, CSV-free)."""
    return "".join("1" if c else "0" for c in correct.tolist())


def few_label_settings(cfg: DictConfig) -> Optional[FewLabelSettings]:
    """The few-label protocol of ``evaluation.few_label`` (probe: ``evaluation.linear``);
    None when disabled."""
    node = cfg.evaluation.get("few_label") or {}
    if not node.get("enabled", False):
        return None
    linear, seed = cfg.evaluation.linear, int(node.seed)
    return FewLabelSettings(
        per_class=int(node.per_class),
        draws=int(node.draws),
        seeds=tuple(range(seed, seed + int(node.draws))),
        samples=int((node.get("feature_augment") or {}).get("samples", 0)),
        floors=(),
        epochs=int(linear.epochs),
        lr=float(linear.lr),
        weight_decay=float(linear.weight_decay),
    )


def check_few_label(cfg: DictConfig, data: ComparisonData) -> None:
    """Refuses (before anything trains) a few-label draw larger than a class of the kNN bank."""
    settings = few_label_settings(cfg)
    if settings is None:
        return
    targets = data.dataset("train", None).targets
    banks = [("the kNN bank", Counter(int(targets[i]) for i in bank_indices(cfg, data, targets)))]
    if data.transfer is not None:
        targets = data.transfer.dataset("train", None).targets
        indices = transfer_indices(cfg, "train", targets)
        banks.append(("the transfer bank", Counter(int(targets[i]) for i in indices)))
    for bank, counts in banks:
        label, fewest = min(counts.items(), key=lambda item: item[1])
        if fewest < settings.per_class:
            raise ConfigError(
                f"evaluation.few_label.per_class ({settings.per_class}) must not exceed the "
                f"images of any class in {bank}, where the draws come from: class {label} has "
                f"{fewest}."
            )


def transfer_indices(cfg: DictConfig, split: str, targets: Sequence[int]) -> list[int]:
    """The images of ``geometry.transfer``'s ``train`` split (its bank) or ``val`` split (its
    test images) that transfer scores read: ``<split>_per_class`` per class (null: all)."""
    return stratified_indices(targets, cfg.geometry.transfer.get(f"{split}_per_class"))


def _few_label(settings: FewLabelSettings, bank, tests, augmenter=None) -> dict[str, Any]:
    """Few-label probes: draws of ``settings.per_class`` images per class from the kNN bank
    (the same for every extractor: they depend on the bank's labels only), probed on the
    test images; ``few_label_images``: the drawn images' indices in the training split."""
    bank_z, bank_y, bank_images = bank
    draws = label_draws(bank_y.tolist(), settings)
    rows = torch.tensor(draws)
    plain, augmented = probe_draws(
        bank_z[rows], bank_y[rows], tests[0], tests[1], settings, augmenter
    )
    scores: dict[str, Any] = {
        "few_label_images": [[bank_images[row] for row in draw] for draw in draws]
    }
    for name, values in (("few_label", plain), ("few_label_augmented", augmented)):
        if values:
            summary = summarise(values)
            scores.update({f"{name}_{key}": value for key, value in summary.items()})
    return scores


def test_features(
    cfg: DictConfig, data: ComparisonData, extractor: torch.nn.Module, crop_size=None
) -> tuple[tuple, tuple]:
    """``(bank, tests)``: features, labels and indices of the kNN bank and the test images."""
    bank = split_features(
        cfg, data, extractor, "train", lambda t: bank_indices(cfg, data, t), crop_size
    )
    tests = split_features(cfg, data, extractor, "val", lambda t: test_indices(cfg, t), crop_size)
    return bank, tests


def probe_scores(cfg: DictConfig, bank, tests) -> dict[str, Optional[float]]:
    """``knn_top1`` and (``evaluation.few_label``, else None) ``few_label_mean`` of features
    ``bank`` and ``tests`` (as :func:`test_features` gives them), with the comparison's
    protocol."""
    settings = few_label_settings(cfg)
    few_label = _few_label(settings, bank, tests)["few_label_mean"] if settings else None
    return {"knn_top1": _knn(cfg, bank, tests)[0], "few_label_mean": few_label}


def test_split_scores(
    cfg: DictConfig,
    data: ComparisonData,
    extractor: torch.nn.Module,
    seed: int,
    crop_size: Optional[int] = None,
    augmenter=None,
    features: Optional[tuple[tuple, tuple]] = None,
) -> dict[str, Any]:
    """kNN top-1/top-5, linear-probe top-1 and (``evaluation.few_label``) few-label probes
    of ``extractor``'s features on the test split; ``augmenter``: the method's feature
    augmenter for ``few_label_augmented``; ``features``: :func:`test_features`'s, if done."""
    ev = cfg.evaluation
    bank, tests = features or test_features(cfg, data, extractor, crop_size)
    top1, top5 = _knn(cfg, bank, tests)
    knn_correct = knn_predictions(*bank[:2], tests[0], **knn_settings(cfg)) == tests[1]
    num_classes = int(max(bank[1].max(), tests[1].max())) + 1
    linear_correct = (
        linear_probe_predictions(
            *bank[:2],
            tests[0],
            epochs=ev.linear.epochs,
            lr=ev.linear.lr,
            weight_decay=ev.linear.weight_decay,
            seed=seed,
            num_classes=num_classes,
        )
        == tests[1]
    )
    scores = {
        "knn_top1": top1,
        "knn_top5": top5,
        "linear_top1": float(linear_correct.float().mean() * 100),
        "train_images": len(bank[1]),
        "test_images": len(tests[1]),
        # per test image (in test-index order), for the paired bootstrap over test images
        "knn_correct": correct_string(knn_correct),
        "linear_correct": correct_string(linear_correct),
    }
    settings = few_label_settings(cfg)
    if settings is not None:
        scores.update(_few_label(settings, bank, tests, augmenter))
    return scores


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
    bank = split_features(
        cfg, data, extractor, "train", lambda t: bank_indices(cfg, data, t), crop_size
    )
    queries = split_features(
        cfg, data, extractor, "train", lambda _: list(data.held_out), crop_size
    )
    if not (bank[0].isfinite().all() and queries[0].isfinite().all()):
        raise FloatingPointError("non-finite features: the backbone diverged.")
    top1, top5 = _knn(cfg, bank, queries)
    return {
        "val_knn_top1": top1,
        "val_knn_top5": top5,
        "bank_images": len(bank[1]),
        "val_images": len(queries[1]),
    }


def floor_extractor(
    cfg: DictConfig, data: ComparisonData, floor: str, seed: int
) -> tuple[torch.nn.Module, Optional[int]]:
    """A floor's feature extractor and its crop size (None: the views'): raw pixels at
    ``floors.raw_pixel_size``, or the backbone every run of ``seed`` starts from."""
    crop = cfg.augmentations[0].crop_size
    if floor == "raw_pixels":
        size = cfg.floors.get("raw_pixel_size")
        return RawPixels(int(size or crop)), size
    method = cfg.methods[0]
    views = int(cfg.recipes[method].get("views", 2))
    spec = RunSpec(method, "equal_epochs", seed, views, 1, 1, int(cfg.batch_size))
    return untrained_backbone(parse(solo_cfg(cfg, spec, data)), seed), None
