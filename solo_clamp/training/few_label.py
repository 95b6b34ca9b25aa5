"""``solo-clamp few-label``: few-label evaluation of a frozen backbone, by one of two protocols
(``protocol``):

* ``linear_probe`` (the default; this command's protocol before ``protocol`` existed): for each
  of ``draws`` seeds, ``labels.per_class`` labelled training images per class are drawn
  (class-stratified, :func:`~solo_clamp.data.label_subset.stratified_draw`) and a linear probe
  (:func:`~solo_clamp.evaluation.linear_probe_accuracy`) is trained on their frozen backbone
  features and scored on the evaluation split. With ``feature_augment.samples = n > 0`` a
  second probe per draw is trained on the labelled features plus ``n`` prior samples ``T(c) z``,
  ``c ~ p(c | z)``, of each, with the same label: prior samples as extra labelled features
  (:func:`~solo_clamp.losses.variational.prior_augment`; a ManifoldCLR checkpoint is needed).
  It is not the paper's protocol: no unlabelled data, a linear probe. Only the labelled images
  of the draws and the evaluation split go through a backbone.
* ``semi_supervised``: the paper's semi-supervised protocol (official ``eval_ssl.py``): an MLP
  head with an EMA copy, trained on the labelled features and a FixMatch consistency term on the
  learned augmentation ``T(c) z`` of the UNLABELLED features (every other training image), with
  and without that augmentation (:mod:`solo_clamp.training.semi_supervised`).

The floors (raw pixels, the untrained backbone) are evaluated on the same draws. Per-draw (or
per-trial) top-1 %, their mean and sample standard deviation are printed as a table and written
to ``few_label.json`` in the run directory.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import seed_everything
from omegaconf import DictConfig, OmegaConf
from solo.utils.checkpointer import Checkpointer
from torchvision import datasets

from solo_clamp.backbones import build_backbone, pretrained_from_cfg
from solo_clamp.checkpoints import load_run
from solo_clamp.data import prepare_image_folder
from solo_clamp.data.label_subset import relative_names, stratified_draw
from solo_clamp.errors import CheckpointError, ConfigError, DataError
from solo_clamp.evaluation import (
    FLOORS,
    RawPixels,
    eval_transform,
    label_draws,
    probe_draws,
    subset_features,
    summarise,
)
from solo_clamp.io import atomic_write_text
from solo_clamp.methods import facts_of, known
from solo_clamp.training.checks import check_field_types, check_image_folders
from solo_clamp.training.few_label_settings import (
    check_few_label_cfg,
    check_semi_supervised_cfg,
    format_table,
)
from solo_clamp.training.finetune import check_disjoint
from solo_clamp.training.linear import build_probed_backbone, compute_threads
from solo_clamp.training.semi_supervised import SemiSupervisedSettings, semi_supervised_trials


def check_feature_augment(
    samples: int,
    method: Optional[str],
    origin: str,
    asked: Optional[str] = None,
    fix: str = "set feature_augment.samples=0",
) -> None:
    """Refuses feature augmentation for a backbone whose method has no feature augmenter
    (``facts.feature_augmenter``: ManifoldCLR's operators and prior).

    Args:
        samples: ``feature_augment.samples`` (0: nothing to check).
        method: the pretraining method of the backbone (None: the untrained backbone).
        origin: where the backbone comes from (a checkpoint path, ``zoo:<name>``).
        asked, fix: the field that asks for the augmentation (default
            ``feature_augment.samples=<samples>``) and how to turn it off, for the message.
    """
    if samples == 0:
        return
    asked = asked or f"feature_augment.samples={samples}"
    why = None
    if method is None:
        why = (
            "pretrained_feature_extractor is null: the untrained backbone has no transport "
            "operators"
        )
    elif method not in known() or facts_of(method).feature_augmenter is None:
        why = (
            f"{origin} was pretrained with method {method!r}, which has no transport "
            "operators (nor a coefficient prior)"
        )
    elif origin.startswith("zoo:"):
        why = (
            f"{origin} holds the backbone's weights only, not the transport operators: "
            "give the ManifoldCLR run's .ckpt or run directory"
        )
    if why:
        raise ConfigError(
            f"{asked} draws features from the method's learned prior, but {why}; {fix}."
        )


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


def load_feature_augmenter(source):
    """The feature augmenter (``facts.feature_augmenter``) of the run of a checked ``source``
    (a :class:`PretrainedBackbone` whose method has one): for ManifoldCLR, its operators,
    prior and threshold in eval mode."""
    run = load_run(source.origin)
    run_cfg = OmegaConf.create(run.cfg)
    OmegaConf.set_struct(run_cfg, False)
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # solo-learn's warnings about training-only settings
    try:
        augmenter = facts_of(run_cfg.method).feature_augmenter(run_cfg, run.checkpoint)
    finally:
        root_logger.setLevel(level)
    if augmenter is None:
        raise CheckpointError(
            f"feature_augment.samples: {source.origin} has no trained feature augmentation "
            "(an ablation whose method_kwargs turn it off)."
        )
    return augmenter


def _extractors(cfg: DictConfig, source, backbone, description: str, floors, seed: int) -> dict:
    """``{key: (feature extractor, description)}``: the probed backbone and the floors (the
    untrained floor only for a pretrained backbone)."""
    label = f"{source.method} backbone" if source else description
    extractors = {"backbone": (backbone, label)}
    for floor in [f for f in floors if not (f == "untrained" and source is None)]:
        if floor == "raw_pixels":
            extractors[floor] = (RawPixels(int(cfg.data.augmentations.crop_size)), FLOORS[floor])
        else:
            extractors[floor] = (
                build_backbone(source.spec, source.method, seed=seed),
                f"untrained {source.spec.name} (seed {seed})",
            )
    return extractors


PROTOCOLS = ("linear_probe", "semi_supervised")
"""The few-label protocols of ``protocol`` (module docstring); the first is the default."""


def _header(protocol: str, description: str, source, per_class: int, draws) -> dict[str, Any]:
    """The fields every few-label result starts with, whatever the protocol."""
    return {
        "protocol": protocol,
        "backbone": description,
        "method": source.method if source else None,
        "labels_per_class": per_class,
        "labelled_images": len(draws[0]),
    }


def _write_result(cfg: DictConfig, result: dict, draws, paths, root) -> Path:
    """Adds the drawn images' names (``labelled``) to ``result`` and writes it as
    ``few_label.json`` in a new run directory under ``output_dir``; returns that directory."""
    names = relative_names(paths, root)
    result["labelled"] = [[names[i] for i in draw] for draw in draws]
    run_dir = Path(str(cfg.get("output_dir", "trained_models/few_label"))) / (
        Checkpointer.random_string()
    )
    atomic_write_text(run_dir / "few_label.json", json.dumps(result, indent=2))
    return run_dir


def run_few_label(cfg: DictConfig) -> dict[str, Any]:
    """Few-label evaluation of ``pretrained_feature_extractor`` (checkpoint, run directory, zoo
    name, or null for the untrained backbone) by ``protocol``: linear probes with and without
    prior samples as extra labelled features (default), or the paper's semi-supervised
    protocol (``protocol=semi_supervised``)."""
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
    _apply_prepare_data(cfg)
    check_image_folders(cfg, ("data.train_path", "data.val_path"))
    seed = int(cfg.get("seed", 0))
    seed_everything(seed)
    backbone, description = build_probed_backbone(cfg, source)
    aug = cfg.data.augmentations
    transform = eval_transform(aug.crop_size, aug.mean, aug.std)
    train_set = datasets.ImageFolder(str(cfg.data.train_path), transform)
    test_set = datasets.ImageFolder(str(cfg.data.val_path), transform)
    draws = label_draws(train_set.targets, settings)
    labelled = sorted({i for draw in draws for i in draw})
    paths = [path for path, _ in train_set.samples]
    check_disjoint(paths, labelled, test_set)
    row_of = {index: row for row, index in enumerate(labelled)}
    draw_rows = torch.tensor([[row_of[i] for i in draw] for draw in draws])

    extractors = _extractors(cfg, source, backbone, description, settings.floors, seed)
    results: dict[str, dict[str, Any]] = {}
    with compute_threads(cfg):
        for key, (extractor, text) in extractors.items():
            loading = dict(
                batch_size=int(cfg.get("batch_size", 256)),
                num_workers=int(cfg.data.get("num_workers", 0)),
            )
            train_z, train_y = subset_features(
                extractor, train_set, labelled, desc=f"{key} labelled", **loading
            )
            test_z, test_y = subset_features(
                extractor, test_set, range(len(test_set)), desc=f"{key} evaluation", **loading
            )
            plain, augmented = probe_draws(
                train_z[draw_rows],
                train_y[draw_rows],
                test_z,
                test_y,
                settings,
                augmenter if key == "backbone" else None,
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
    run_dir = _write_result(cfg, result, draws, paths, train_set.root)
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
    print(f"results: {run_dir / 'few_label.json'}")
    return {"run_dir": str(run_dir), **result}


def _prior_arm(settings: SemiSupervisedSettings, source) -> tuple[list[str], Any, Optional[str]]:
    """The arms of the semi-supervised protocol, the augmenter of the ``prior`` arm (None
    without it) and a note when the ``prior`` arm was dropped from the default arms."""
    asked = "semi_supervised.augmentations with prior"
    fix = "set semi_supervised.augmentations=[none]"
    method, origin = (source.method, source.origin) if source else (None, "null")
    if settings.augmentations is not None:
        arms = list(settings.augmentations)
        if "prior" in arms:
            check_feature_augment(1, method, origin, asked, fix)
            return arms, load_feature_augmenter(source), None
        return arms, None, None
    try:  # the default: both arms when the backbone's method has a learned augmentation
        check_feature_augment(1, method, origin, asked, fix)
        augmenter = load_feature_augmenter(source)
    except (ConfigError, CheckpointError) as err:
        return ["none"], None, f"no prior arm: {err}"
    return ["none", "prior"], augmenter, None


def _prior_augment(augmenter, soft_threshold: bool):
    """``(z, generator) -> T(c) z``, one prior draw per row; without ``soft_threshold`` the
    draws are not thresholded (the official ``eval_ssl.py`` sets the prior's λ to 0)."""
    if not soft_threshold and hasattr(augmenter, "threshold"):
        augmenter = copy.copy(augmenter)
        augmenter.threshold = 0.0
    return lambda z, generator: augmenter.augment(z, 1, generator)


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
    arms, augmenter, note = _prior_arm(settings, source)
    _apply_prepare_data(cfg)
    check_image_folders(cfg, ("data.train_path", "data.val_path"))
    seed = int(cfg.get("seed", 0))
    seed_everything(seed)
    backbone, description = build_probed_backbone(cfg, source)
    aug = cfg.data.augmentations
    transform = eval_transform(aug.crop_size, aug.mean, aug.std)
    train_set = datasets.ImageFolder(str(cfg.data.train_path), transform)
    test_set = datasets.ImageFolder(str(cfg.data.val_path), transform)
    draws = [
        stratified_draw(train_set.targets, per_class=settings.per_class, seed=s).tolist()
        for s in settings.seeds
    ]
    paths = [path for path, _ in train_set.samples]
    check_disjoint(paths, sorted({i for draw in draws for i in draw}), test_set)
    if len(train_set) <= len(draws[0]):
        raise DataError(
            f"data.train_path holds {len(train_set)} images, all labelled at "
            f"labels.per_class={settings.per_class}: the protocol needs unlabelled images."
        )
    augment = _prior_augment(augmenter, settings.soft_threshold) if augmenter else None
    extractors = _extractors(cfg, source, backbone, description, linear.floors, seed)
    progress = bool(cfg.get("progress", True))
    results: dict[str, dict[str, Any]] = {}
    with compute_threads(cfg):
        for key, (extractor, text) in extractors.items():
            loading = dict(
                batch_size=int(cfg.get("batch_size", 256)),
                num_workers=int(cfg.data.get("num_workers", 0)),
            )
            pool_z, pool_y = subset_features(
                extractor, train_set, range(len(train_set)), desc=f"{key} pool", **loading
            )
            test_z, test_y = subset_features(
                extractor, test_set, range(len(test_set)), desc=f"{key} evaluation", **loading
            )
            for arm in arms if key == "backbone" else ["none"]:
                per_trial = semi_supervised_trials(
                    pool_z,
                    pool_y,
                    draws,
                    test_z,
                    test_y,
                    settings,
                    augment if arm == "prior" else None,
                    progress,
                )
                name = key if arm == "none" else f"{key}_prior"
                what = (
                    "no augmentation"
                    if arm == "none"
                    else "consistency on prior samples T(c) z of unlabelled features"
                )
                results[name] = {
                    "description": f"{text}, semi-supervised, {what}",
                    **summarise(per_trial),
                }

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
    run_dir = _write_result(cfg, result, draws, paths, train_set.root)
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
    print(f"results: {run_dir / 'few_label.json'}")
    return {"run_dir": str(run_dir), **result}
