"""Few-label linear probes of a frozen backbone, optionally with ManifoldCLR's feature
augmentation (``solo-clamp few-label``): the downstream use of ManifoldCLR's learned prior.

For each of ``draws`` seeds, ``labels.per_class`` labelled training images per class are drawn
(class-stratified, :func:`~solo_clamp.data.label_subset.stratified_draw`) and a linear probe
(:func:`~solo_clamp.evaluation.linear_probe_accuracy`) is trained on their frozen backbone
features and scored on the evaluation split. With ``feature_augment.samples = n > 0`` a second
probe per draw is trained on the labelled features plus ``n`` samples ``T(c) z``,
``c ~ p(c | z)``, of ManifoldCLR's learned prior per labelled feature, with the same label
(:func:`~solo_clamp.losses.variational.prior_augment`; a ManifoldCLR checkpoint is needed).
The floors (raw pixels, the untrained backbone) are probed on the same draws. Only the
labelled images of the draws and the evaluation split go through a backbone. Per-draw
top-1 %, their mean and sample standard deviation are printed as a table and written to
``few_label.json`` in the run directory.
"""

from __future__ import annotations

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
from solo_clamp.data.label_subset import relative_names
from solo_clamp.errors import CheckpointError, ConfigError
from solo_clamp.evaluation import (
    FLOORS,
    RawPixels,
    check_few_label_cfg,
    eval_transform,
    format_table,
    label_draws,
    probe_draws,
    subset_features,
    summarise,
)
from solo_clamp.io import atomic_write_text
from solo_clamp.methods import facts_of, known
from solo_clamp.training.checks import check_field_types, check_image_folders
from solo_clamp.training.finetune import check_disjoint
from solo_clamp.training.linear import build_probed_backbone, compute_threads


def check_feature_augment(samples: int, method: Optional[str], origin: str) -> None:
    """Refuses feature augmentation for a backbone whose method has no feature augmenter
    (``facts.feature_augmenter``: ManifoldCLR's operators and prior).

    Args:
        samples: ``feature_augment.samples``.
        method: the pretraining method of the backbone (None: the untrained backbone).
        origin: where the backbone comes from (a checkpoint path, ``zoo:<name>``).
    """
    if samples == 0:
        return
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
            f"feature_augment.samples={samples} draws features from the method's learned "
            f"prior, but {why}; set feature_augment.samples=0."
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
        return facts_of(run_cfg.method).feature_augmenter(run_cfg, run.checkpoint)
    except ValueError as err:  # the method's feature augmenter (methods/) refuses the run
        raise CheckpointError(f"feature_augment.samples: {err}") from err
    finally:
        root_logger.setLevel(level)


def run_few_label(cfg: DictConfig) -> dict[str, Any]:
    """Few-label probes of ``pretrained_feature_extractor`` (checkpoint, run directory, zoo
    name, or null for the untrained backbone), with and without feature augmentation."""
    OmegaConf.set_struct(cfg, False)
    check_field_types(cfg)
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

    label = f"{source.method} backbone" if source else description
    extractors = {"backbone": (backbone, label)}
    floors = [f for f in settings.floors if not (f == "untrained" and source is None)]
    for floor in floors:
        if floor == "raw_pixels":
            extractors[floor] = (RawPixels(int(aug.crop_size)), FLOORS[floor])
        else:
            extractors[floor] = (
                build_backbone(source.spec, source.method, seed=seed),
                f"untrained {source.spec.name} (seed {seed})",
            )
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
                    "description": f"{text} + {settings.samples} prior samples per image",
                    **summarise(augmented),
                }

    names = relative_names(paths, train_set.root)
    run_dir = Path(str(cfg.get("output_dir", "trained_models/few_label"))) / (
        Checkpointer.random_string()
    )
    result = {
        "backbone": description,
        "method": source.method if source else None,
        "labels_per_class": settings.per_class,
        "labelled_images": len(draws[0]),
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
        "labelled": [[names[i] for i in draw] for draw in draws],
    }
    atomic_write_text(run_dir / "few_label.json", json.dumps(result, indent=2))
    seeds = (
        f"{settings.draws} draws (seeds {settings.seeds[0]}-{settings.seeds[-1]})"
        if settings.draws > 1
        else f"1 draw (seed {settings.seeds[0]})"
    )
    print(
        f"few-label probes: {settings.per_class} labelled images per class "
        f"({len(draws[0])} in all), {seeds}, scored on {len(test_set)} images of "
        f"{cfg.data.val_path}"
    )
    print(f"probed: {description}")
    print(format_table(results))
    print(f"results: {run_dir / 'few_label.json'}")
    return {"run_dir": str(run_dir), **result}
