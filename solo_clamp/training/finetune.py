"""Semi-supervised fine-tuning: a pretrained backbone and a linear head trained end to end on
a labelled fraction of the training set (``solo-clamp finetune``).

The official CLAMP protocol (``semi_sl.py``, class ``FineTune``) is the default: SGD with
Nesterov momentum, no weight decay, cosine decay per epoch over 20 epochs, the backbone at
the head's learning rate times ``optimizer.backbone_lr_scale`` = 0.05. A scale of 0 keeps
the backbone frozen (eval-mode BatchNorm, no gradients): the linear probe on the same labels.

The labelled images are a seeded, class-stratified draw (``labels.fraction`` or
``labels.per_class``, ``labels.seed``) or a file list (``labels.file``, e.g. SimCLR's
ImageNet ``1percent.txt``); the list used is written to ``label_subset.txt`` in the run
directory, so ``labels.file=<that file>`` repeats the run. The model is scored on
``data.val_path`` (the test split), after the last epoch unless
``check_val_every_n_epoch`` says otherwise; scores go to ``finetune.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import seed_everything
from omegaconf import DictConfig, OmegaConf
from solo.args.linear import parse_cfg
from solo.methods.linear import LinearModel
from solo.utils.misc import remove_bias_and_norm_from_weight_decay
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader, Dataset, Subset

from solo_clamp.backbones import pretrained_from_cfg
from solo_clamp.data.label_subset import (
    indices_of,
    read_subset_file,
    relative_names,
    stratified_draw,
    write_subset_file,
)
from solo_clamp.errors import ConfigError, DataError
from solo_clamp.internals import solo_optimizers
from solo_clamp.io import atomic_write_text
from solo_clamp.training.checks import check_field_types, check_image_folders
from solo_clamp.training.common import loggers_and_callbacks, parse_solo_cfg
from solo_clamp.training.linear import (
    build_probed_backbone,
    classification_datasets,
    fit_and_validate,
    sample_paths,
    set_num_classes,
)

SUBSET_FILE = "label_subset.txt"


class FineTuneModel(LinearModel):
    """solo-learn's ``LinearModel`` with the backbone trained at ``lr ×
    backbone_lr_scale`` (frozen at 0), and ``scheduler.name: cosine`` stepped per epoch
    as the official ``FineTune``; ``none`` keeps the learning rates constant."""

    def __init__(self, backbone: torch.nn.Module, cfg: DictConfig, backbone_lr_scale: float):
        cfg.finetune = backbone_lr_scale > 0
        super().__init__(backbone, cfg=cfg, loss_func=torch.nn.CrossEntropyLoss())
        self.backbone_lr_scale = backbone_lr_scale

    def configure_optimizers(self):
        groups = [
            {"name": "classifier", "params": list(self.classifier.parameters()), "lr": self.lr}
        ]
        if self.finetune:
            groups.insert(
                0,
                {
                    "name": "backbone",
                    "params": list(self.backbone.parameters()),
                    "lr": self.lr * self.backbone_lr_scale,
                },
            )
        if self.exclude_bias_n_norm_wd:
            groups = remove_bias_and_norm_from_weight_decay(groups)
        optimizer = solo_optimizers(self)[self.optimizer](
            groups, lr=self.lr, weight_decay=self.weight_decay, **self.extra_optimizer_args
        )
        if self.scheduler == "none":
            return optimizer
        return [optimizer], [CosineAnnealingLR(optimizer, T_max=self.max_epochs)]


def check_finetune_cfg(cfg: DictConfig) -> float:
    """Checks the fine-tuning keys; returns ``optimizer.backbone_lr_scale``."""
    scale = cfg.optimizer.get("backbone_lr_scale", 0.05)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 1:
        raise ConfigError(
            f"optimizer.backbone_lr_scale must be a number in [0, 1] (0 freezes "
            f"the backbone), got {scale!r}."
        )
    if cfg.scheduler.name not in ("cosine", "none"):
        raise ConfigError(
            f"scheduler.name must be 'cosine' (per epoch, as the official "
            f"fine-tuning) or 'none', got {cfg.scheduler.name!r}."
        )
    names = list(solo_optimizers(LinearModel))
    if cfg.optimizer.name not in names:
        raise ConfigError(
            f"optimizer.name must be one of {', '.join(names)}, got {cfg.optimizer.name!r}."
        )
    return float(scale)


def choose_labelled(cfg: DictConfig, names: list[str], labels: list[int], where: str) -> list[int]:
    """Indices of the labelled images: ``labels.file`` if given, else the seeded draw."""
    node = cfg.get("labels")
    if node is None:
        raise ConfigError("labels: missing; give labels.fraction, labels.per_class or labels.file.")
    if OmegaConf.is_missing(node, "file"):
        raise ConfigError(
            "labels.file: give the list of labelled images (one path relative "
            "to the image folder per line, or SimCLR's 1percent.txt)."
        )
    if node.get("file"):
        if node.get("fraction") is not None or node.get("per_class") is not None:
            raise ConfigError(
                "labels.file lists the images: set labels.fraction and labels.per_class to null."
            )
        return indices_of(read_subset_file(node.file), names, where)
    draw = stratified_draw(
        labels, node.get("fraction"), node.get("per_class"), int(node.get("seed", 0))
    )
    return [int(i) for i in draw]


def check_disjoint(train_paths: list[Path], chosen: list[int], val_set: Dataset) -> None:
    """Refuses a labelled image that is also in the evaluation split."""
    try:
        val_paths, _, _ = sample_paths(val_set)
    except ConfigError:
        return  # arrays (CIFAR, ...): torchvision's train and test splits are disjoint
    scored = {os.path.abspath(p) for p in val_paths}
    shared = [train_paths[i] for i in chosen if os.path.abspath(train_paths[i]) in scored]
    if shared:
        raise DataError(
            f"{len(shared)} labelled image(s) are also in the evaluation split "
            f"(data.val_path), e.g. {shared[0]}: give disjoint data.train_path and "
            "data.val_path."
        )


def _loaders(cfg: DictConfig, train_set: Dataset, val_set: Dataset) -> tuple[DataLoader, ...]:
    batch, workers = int(cfg.optimizer.batch_size), int(cfg.data.num_workers)
    # A last batch of one image breaks BatchNorm in training mode; a subset smaller than a
    # batch is kept whole.
    train = DataLoader(
        train_set,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=len(train_set) > batch,
    )
    val = DataLoader(val_set, batch_size=batch, shuffle=False, num_workers=workers)
    return train, val


def run_finetune(cfg: DictConfig) -> dict[str, Any]:
    """Fine-tunes ``pretrained_feature_extractor`` (checkpoint, run directory, zoo name, or
    null for the untrained backbone) on the labelled subset; returns the scores."""
    OmegaConf.set_struct(cfg, False)
    check_field_types(cfg)
    check_image_folders(cfg, ("data.train_path", "data.val_path"))
    source = pretrained_from_cfg(cfg)
    cfg = parse_solo_cfg(cfg, parse_cfg)
    set_num_classes(cfg)
    scale = check_finetune_cfg(cfg)
    cfg.check_val_every_n_epoch = cfg.get("check_val_every_n_epoch") or cfg.max_epochs
    cfg.num_sanity_val_steps = cfg.get("num_sanity_val_steps", 0)
    seed_everything(cfg.seed)
    backbone, description = build_probed_backbone(cfg, source)

    train_set, val_set = classification_datasets(cfg)
    paths, root, labels = sample_paths(train_set)
    names = relative_names(paths, root)
    chosen = choose_labelled(cfg, names, labels, str(root))
    check_disjoint(paths, chosen, val_set)

    model = FineTuneModel(backbone, cfg, scale)
    cfg.method = "finetune"
    loggers, callbacks, run_dir = loggers_and_callbacks(cfg, model, None)
    subset_file = write_subset_file(
        Path(run_dir) / SUBSET_FILE,
        [names[i] for i in chosen],
        header=f"{len(chosen)} labelled images of {root}, relative paths\n"
        f"labels: {json.dumps(OmegaConf.to_container(cfg.labels))}",
    )
    train_loader, val_loader = _loaders(cfg, Subset(train_set, chosen), val_set)
    metrics = fit_and_validate(cfg, model, train_loader, val_loader, loggers, callbacks)
    result = {
        "backbone": description,
        "backbone_lr_scale": scale,
        "labelled_images": len(chosen),
        "training_images": len(names),
        "evaluation_images": len(val_set),
        "label_subset": str(subset_file),
        "labels": OmegaConf.to_container(cfg.labels),
        "epochs": int(cfg.max_epochs),
        "seed": int(cfg.seed),
        **metrics,
    }
    atomic_write_text(Path(run_dir) / "finetune.json", json.dumps(result, indent=2))
    print(
        f"fine-tuned: {description} on {len(chosen)} labelled images "
        f"(backbone lr x {scale:g}); labels: {subset_file}"
    )
    print("fine-tuning:", ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return {"run_dir": run_dir, **result}
