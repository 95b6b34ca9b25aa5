"""``solo-clamp few-label``: few-label evaluation of a frozen backbone, by one of two protocols
(``protocol``; both in ``docs/downstream.md``, "Few-label evaluation"):

* ``linear_probe`` (the default): per draw of ``labels.per_class`` labelled training images per
  class (:func:`~solo_clamp.data.label_subset.stratified_draw`), a linear probe on their frozen
  features, and with ``feature_augment.samples = n`` a second one with ``n`` prior samples
  ``T(c) z`` of each as extra labelled features (a ManifoldCLR checkpoint is needed). Only the
  labelled images and the evaluation split go through a backbone.
* ``semi_supervised``: the paper's protocol (official ``eval_ssl.py``,
  :mod:`solo_clamp.training.semi_supervised`): an MLP head with an EMA copy, trained on the
  labelled features and a FixMatch consistency term on the UNLABELLED ones (every other training
  image), with and without the learned augmentation ``T(c) z``.

The floors (raw pixels, the untrained backbone) are evaluated on the same draws. Per-draw (or
per-trial) top-1 %, their mean and sample standard deviation are printed as a table and written
to ``few_label.json`` in the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from lightning.pytorch import seed_everything
from omegaconf import DictConfig, OmegaConf
from solo.utils.checkpointer import Checkpointer
from torch.utils.data import Dataset
from torchvision import datasets

from solo_clamp.backbones import PretrainedBackbone, pretrained_from_cfg
from solo_clamp.data import prepare_image_folder
from solo_clamp.data.label_subset import relative_names, stratified_draw
from solo_clamp.errors import ConfigError, DataError
from solo_clamp.evaluation import (
    eval_transform,
    label_draws,
    probe_draws,
    subset_features,
    summarise,
)
from solo_clamp.io import atomic_write_text
from solo_clamp.training.checks import check_field_types, check_image_folders
from solo_clamp.training.feature_augment import (
    check_feature_augment,
    load_feature_augmenter,
    semi_supervised_arms,
)
from solo_clamp.training.few_label_settings import (
    check_few_label_cfg,
    check_semi_supervised_cfg,
    format_table,
)
from solo_clamp.training.finetune import check_disjoint
from solo_clamp.training.linear import build_probed_backbone, compute_threads, probed_with_floors
from solo_clamp.training.semi_supervised import SemiSupervisedSettings, semi_supervised_trials


def _apply_prepare_data(cfg: DictConfig) -> None:
    node = cfg.get("prepare_data")
    if not node:
        return
    prepared = prepare_image_folder(
        name=node.name,
        root=node.get("root", "datasets"),
        source=node.get("source"),
        train_per_class=node.get("train_per_class"),
        val_per_class=node.get("val_per_class"),
        seed=node.get("seed", 0),
    )
    cfg.data.train_path, cfg.data.val_path = str(prepared.train), str(prepared.val)


PROTOCOLS = ("linear_probe", "semi_supervised")
"""The few-label protocols of ``protocol`` (module docstring); the first is the default."""
ARM_DESCRIPTIONS = {
    "none": "no augmentation",
    "prior": "consistency on prior samples T(c) z of unlabelled features",
}
"""How the semi-supervised protocol's result rows describe each arm."""


def _header(
    protocol: str, description: str, source: Optional[PretrainedBackbone], per_class: int, draws
) -> dict[str, Any]:
    """The fields every few-label result starts with, whatever the protocol."""
    return {
        "protocol": protocol,
        "backbone": description,
        "method": source.method if source else None,
        "labels_per_class": per_class,
        "labelled_images": len(draws[0]),
    }


def _write_result(
    cfg: DictConfig, result: dict[str, Any], draws: list[list[int]], train_set: datasets.ImageFolder
) -> dict[str, Any]:
    """Adds the drawn images' names (``labelled``) to ``result`` and writes it as
    ``few_label.json`` in a new run directory under ``output_dir``; returns it with
    ``run_dir``."""
    names = relative_names([path for path, _ in train_set.samples], train_set.root)
    result["labelled"] = [[names[i] for i in draw] for draw in draws]
    output_dir = Path(str(cfg.get("output_dir", "trained_models/few_label")))
    run_dir = output_dir / Checkpointer.random_string()
    atomic_write_text(run_dir / "few_label.json", json.dumps(result, indent=2))
    return {"run_dir": str(run_dir), **result}


def _prepare(
    cfg: DictConfig, source: Optional[PretrainedBackbone]
) -> tuple[int, torch.nn.Module, str, datasets.ImageFolder, datasets.ImageFolder]:
    """What both protocols start from: the data prepared and checked, the seed set, then
    ``(seed, backbone, description, training images, evaluation images)``."""
    _apply_prepare_data(cfg)
    check_image_folders(cfg, ("data.train_path", "data.val_path"))
    seed = int(cfg.get("seed", 0))
    seed_everything(seed)
    backbone, description = build_probed_backbone(cfg, source)
    aug = cfg.data.augmentations
    transform = eval_transform(aug.crop_size, aug.mean, aug.std)
    train_set = datasets.ImageFolder(str(cfg.data.train_path), transform)
    test_set = datasets.ImageFolder(str(cfg.data.val_path), transform)
    return seed, backbone, description, train_set, test_set


def _features(
    cfg: DictConfig, extractor: torch.nn.Module, images: Dataset, indices: Sequence[int], desc: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``extractor``'s features and the labels of the images ``indices`` of ``images``."""
    batch_size, workers = int(cfg.get("batch_size", 256)), int(cfg.data.get("num_workers", 0))
    return subset_features(extractor, images, indices, batch_size, workers, desc=desc)


def run_few_label(cfg: DictConfig) -> dict[str, Any]:
    """Few-label evaluation of ``pretrained_feature_extractor`` (checkpoint, run directory, zoo
    name, or null for the untrained backbone) by ``protocol`` (module docstring)."""
    OmegaConf.set_struct(cfg, False)
    check_field_types(cfg)
    protocol = cfg.get("protocol", PROTOCOLS[0])
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}.")
    if protocol == "semi_supervised":
        return run_semi_supervised(cfg)
    settings = check_few_label_cfg(cfg)
    source = pretrained_from_cfg(cfg)
    check_feature_augment(
        settings.samples, source and source.method, source.origin if source else "null"
    )
    augmenter = load_feature_augmenter(source) if settings.samples else None
    seed, backbone, description, train_set, test_set = _prepare(cfg, source)
    draws = label_draws(train_set.targets, settings)
    labelled = sorted({i for draw in draws for i in draw})
    check_disjoint([path for path, _ in train_set.samples], labelled, test_set)
    row_of = {index: row for row, index in enumerate(labelled)}
    draw_rows = torch.tensor([[row_of[i] for i in draw] for draw in draws])

    extractors = probed_with_floors(cfg, source, backbone, description, settings.floors, seed)
    everything = range(len(test_set))
    results: dict[str, dict[str, Any]] = {}
    with compute_threads(cfg):
        for key, (extractor, text) in extractors.items():
            train_z, train_y = _features(cfg, extractor, train_set, labelled, f"{key} labelled")
            test_z, test_y = _features(cfg, extractor, test_set, everything, f"{key} evaluation")
            extra = augmenter if key == "backbone" else None
            plain, augmented = probe_draws(
                train_z[draw_rows], train_y[draw_rows], test_z, test_y, settings, extra
            )
            results[key] = {"description": text, **summarise(plain)}
            if augmented:
                results["backbone_feature_augment"] = {
                    "description": (
                        f"{text} + {settings.samples} prior samples per labelled image as "
                        "extra labelled features"
                    ),
                    **summarise(augmented),
                }

    result = {
        **_header("linear_probe", description, source, settings.per_class, draws),
        "draws": settings.draws,
        "seeds": list(settings.seeds),
        "training_images": len(train_set),
        "evaluation_images": len(test_set),
        "probe": {
            "epochs": settings.epochs,
            "lr": settings.lr,
            "weight_decay": settings.weight_decay,
        },
        "feature_augment": {
            "samples": settings.samples,
            "threshold": augmenter.threshold if augmenter else None,
        },
        "results": results,
    }
    summary = _write_result(cfg, result, draws, train_set)
    seeds = (
        f"{settings.draws} draws (seeds {settings.seeds[0]}-{settings.seeds[-1]})"
        if settings.draws > 1
        else f"1 draw (seed {settings.seeds[0]})"
    )
    print(
        f"few-label linear probes: {settings.per_class} labelled images per class "
        f"({len(draws[0])} in all), {seeds}, scored on {len(test_set)} images of "
        f"{cfg.data.val_path}"
    )
    print(f"probed: {description}")
    print(format_table(results))
    print(f"results: {Path(summary['run_dir']) / 'few_label.json'}")
    return summary


def run_semi_supervised(cfg: DictConfig) -> dict[str, Any]:
    """The paper's semi-supervised protocol (``protocol=semi_supervised``): every training
    image of ``data.train_path`` is in the pool, ``labels.per_class`` per class labelled in
    each trial and the others unlabelled; scored on ``data.val_path``."""
    settings = check_semi_supervised_cfg(cfg)
    linear = check_few_label_cfg(cfg)  # the floors, and the fields shared with the probe
    if linear.samples:
        raise ConfigError(
            f"feature_augment.samples={linear.samples} is the linear probe's (prior samples as "
            "extra labelled features); protocol=semi_supervised augments unlabelled features "
            "with semi_supervised.augmentations: set feature_augment.samples=0."
        )
    source = pretrained_from_cfg(cfg)
    arms, augment, note = semi_supervised_arms(settings, source)
    seed, backbone, description, train_set, test_set = _prepare(cfg, source)
    draws = [
        stratified_draw(train_set.targets, per_class=settings.per_class, seed=s).tolist()
        for s in settings.seeds
    ]
    labelled = sorted({i for draw in draws for i in draw})
    check_disjoint([path for path, _ in train_set.samples], labelled, test_set)
    if len(train_set) <= len(draws[0]):
        raise DataError(
            f"data.train_path holds {len(train_set)} images, all labelled at "
            f"labels.per_class={settings.per_class}: the protocol needs unlabelled images."
        )
    extractors = probed_with_floors(cfg, source, backbone, description, linear.floors, seed)
    progress = bool(cfg.get("progress", True))
    whole_pool, everything = range(len(train_set)), range(len(test_set))
    results: dict[str, dict[str, Any]] = {}
    with compute_threads(cfg):
        for key, (extractor, text) in extractors.items():
            pool_z, pool_y = _features(cfg, extractor, train_set, whole_pool, f"{key} pool")
            test_z, test_y = _features(cfg, extractor, test_set, everything, f"{key} evaluation")
            for arm in arms if key == "backbone" else ["none"]:
                arm_augment = augment if arm == "prior" else None
                per_trial = semi_supervised_trials(
                    pool_z, pool_y, draws, test_z, test_y, settings, arm_augment, progress
                )
                name = key if arm == "none" else f"{key}_prior"
                description_of_arm = f"{text}, semi-supervised, {ARM_DESCRIPTIONS[arm]}"
                results[name] = {"description": description_of_arm, **summarise(per_trial)}

    result = {
        **_header("semi_supervised", description, source, settings.per_class, draws),
        "unlabelled_images": len(train_set) - len(draws[0]),
        "trials": settings.trials,
        "seeds": list(settings.seeds),
        "training_images": len(train_set),
        "evaluation_images": len(test_set),
        "arms": arms,
        "settings": {
            "iterations": settings.iterations,
            "official_iterations": SemiSupervisedSettings().iterations,
            "hidden_dim": settings.hidden_dim,
            "lr": settings.lr,
            "weight_decay": settings.weight_decay,
            "labelled_batch": settings.labelled_batch,
            "unlabelled_batch": settings.unlabelled_batch,
            "confidence": settings.confidence,
            "consistency_weight": settings.consistency_weight,
            "ema": settings.ema_momentum,
            "soft_threshold": settings.soft_threshold,
        },
        "notes": [note] if note else [],
        "results": results,
    }
    summary = _write_result(cfg, result, draws, train_set)
    print(
        f"few-label, semi-supervised protocol: {settings.per_class} labelled images per class "
        f"({len(draws[0])} in all) and {result['unlabelled_images']} unlabelled, "
        f"{settings.trials} trials (seeds {settings.seeds[0]}-{settings.seeds[-1]}), "
        f"{settings.iterations} iterations (official {result['settings']['official_iterations']}), "
        f"scored on {len(test_set)} images of {cfg.data.val_path}"
    )
    print(f"evaluated: {description}")
    if note:
        print(note)
    print(format_table(results))
    print(f"results: {Path(summary['run_dir']) / 'few_label.json'}")
    return summary
