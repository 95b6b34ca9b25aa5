"""Linear evaluation of a pretrained backbone on solo-learn's ``LinearModel``.

Like solo-learn's ``main_linear.py``, plus: the checkpoint is loaded with
``weights_only=True``; for ``custom`` datasets the evaluation transforms use
``data.augmentations.crop_size/mean/std`` (solo-learn's custom pipeline is fixed at 224 px
with ImageNet statistics, wrong for MNIST-sized images).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning.pytorch import seed_everything
from omegaconf import DictConfig, OmegaConf
from torchvision import transforms

from solo_clamp.checkpoints import backbone_state, build_backbone, load_checkpoint
from solo_clamp.evaluation import eval_transform
from solo_clamp.training.common import build_trainer, loggers_and_callbacks, parse_solo_cfg


def _custom_transforms(cfg: DictConfig):
    aug = cfg.data.augmentations
    train = transforms.Compose(
        [
            transforms.RandomResizedCrop(aug.crop_size, scale=(0.5, 1.0)),
            transforms.ToTensor(),
            transforms.Normalize(mean=list(aug.mean), std=list(aug.std)),
        ]
    )
    return train, eval_transform(aug.crop_size, aug.mean, aug.std)


def _dataloaders(cfg: DictConfig):
    from solo.data.classification_dataloader import (
        prepare_dataloaders,
        prepare_datasets,
        prepare_transforms,
    )

    if cfg.data.dataset == "custom":
        t_train, t_val = _custom_transforms(cfg)
    else:
        t_train, t_val = prepare_transforms(cfg.data.dataset)
    train_set, val_set = prepare_datasets(
        cfg.data.dataset,
        t_train,
        t_val,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format=cfg.data.format,
        data_fraction=cfg.data.fraction,
    )
    return prepare_dataloaders(
        train_set, val_set, batch_size=cfg.optimizer.batch_size, num_workers=cfg.data.num_workers
    )


def run_linear(cfg: DictConfig) -> dict[str, Any]:
    """Trains a linear classifier on the frozen backbone of ``pretrained_feature_extractor``
    (a ``.ckpt`` file or a run directory)."""
    from solo.args.linear import parse_cfg
    from solo.methods.linear import LinearModel

    OmegaConf.set_struct(cfg, False)
    cfg = parse_solo_cfg(cfg, parse_cfg)
    seed_everything(cfg.seed)
    backbone = build_backbone(cfg)
    checkpoint = load_checkpoint(cfg.pretrained_feature_extractor)
    missing, _ = backbone.load_state_dict(backbone_state(checkpoint), strict=False)
    if missing:
        raise ValueError(f"pretrained_feature_extractor lacks backbone weights: {missing[:5]}...")
    logging.info("Loaded %s", cfg.pretrained_feature_extractor)

    model = LinearModel(backbone, loss_func=torch.nn.CrossEntropyLoss(), cfg=cfg)
    if not cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = _dataloaders(cfg)
    cfg.method = "linear"
    loggers, callbacks, run_dir = loggers_and_callbacks(cfg, model, None)
    trainer = build_trainer(cfg, loggers, callbacks)
    trainer.fit(model, train_loader, val_loader)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
    print("linear evaluation:", ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return {"run_dir": run_dir, **metrics}
