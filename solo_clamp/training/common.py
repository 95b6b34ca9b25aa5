"""Pieces shared by the pretrain, linear and kNN programs."""

from __future__ import annotations

import inspect
import os

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.strategies.ddp import DDPStrategy
from omegaconf import DictConfig, OmegaConf
from solo.data.pretrain_dataloader import (
    FullTransformPipeline,
    NCropAugmentation,
    prepare_datasets,
)
from solo.utils.checkpointer import Checkpointer

from solo_clamp.training.resume import DEFAULT_KEEP_LAST, AtomicCheckpointer
from solo_clamp.training.transforms import build_transform_pipeline


def loggers_and_callbacks(cfg: DictConfig, model, wandb_run_id) -> tuple[list, list, str]:
    run_root = os.path.join(cfg.checkpoint.dir, cfg.method)
    version = Checkpointer.random_string()
    loggers: list = []
    callbacks: list = []
    if cfg.wandb.enabled:
        wandb_logger = WandbLogger(
            name=cfg.name,
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            offline=cfg.wandb.offline,
            resume="allow" if wandb_run_id else None,
            id=wandb_run_id,
        )
        wandb_logger.watch(model, log="gradients", log_freq=100)
        wandb_logger.log_hyperparams(OmegaConf.to_container(cfg))
        loggers.append(wandb_logger)
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cfg.get("csv", {}).get("enabled", False):
        # Checkpointer names its directory after the first logger's version; a CSV logger
        # placed first keeps metrics.csv beside the checkpoints of the same run.
        loggers.insert(0, CSVLogger(save_dir=run_root, name="", version=version))
    if cfg.checkpoint.enabled:
        callbacks.append(
            AtomicCheckpointer(
                cfg,
                logdir=run_root,
                frequency=cfg.checkpoint.frequency,
                keep_prev=cfg.checkpoint.keep_prev,
                keep_last=cfg.checkpoint.get("keep_last", DEFAULT_KEEP_LAST),
                replay_data=cfg.data.get("format") != "dali",
            )
        )
    return loggers, callbacks, os.path.join(run_root, version)


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list) -> Trainer:
    kwargs = OmegaConf.to_container(cfg)
    valid = inspect.signature(Trainer.__init__).parameters
    kwargs = {name: kwargs[name] for name in valid if name in kwargs}
    kwargs.update(
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=False,
        strategy=DDPStrategy(find_unused_parameters=False)
        if cfg.strategy == "ddp"
        else (cfg.strategy or "auto"),
    )
    return Trainer(**kwargs)


def parse_solo_cfg(cfg: DictConfig, parse_cfg) -> DictConfig:
    """Runs solo-learn's ``parse_cfg``, which needs ``devices`` as a list (``len(devices)``
    scales the learning rate) while Lightning's CPU accelerator needs an int: an int is
    passed to solo-learn as a list of that length and restored afterwards."""
    devices = cfg.get("devices", 1)
    if isinstance(devices, (int, str)):
        count = int(devices) if str(devices).isdigit() else 1
        cfg.devices = list(range(max(count, 1)))
        cfg = parse_cfg(cfg)
        cfg.devices = devices
        return cfg
    return parse_cfg(cfg)


def solo_pretrain_dataset(cfg: DictConfig):
    """solo-learn's pretraining dataset for a parsed cfg: one ``NCropAugmentation`` per
    ``augmentations`` entry, chained by ``FullTransformPipeline``, then ``prepare_datasets``."""
    pipelines = [
        NCropAugmentation(build_transform_pipeline(cfg.data.dataset, aug), aug.num_crops)
        for aug in cfg.augmentations
    ]
    return prepare_datasets(
        cfg.data.dataset,
        FullTransformPipeline(pipelines),
        train_data_path=cfg.data.train_path,
        data_format=cfg.data.format,
        no_labels=cfg.data.no_labels,
        data_fraction=cfg.data.fraction,
    )
