"""Linear evaluation of a pretrained backbone on solo-learn's ``LinearModel``, also on a
dataset other than the one it was pretrained on (transfer).

Like solo-learn's ``main_linear.py``, plus:

* ``pretrained_feature_extractor`` is a ``.ckpt``, a run directory or a zoo name
  (:func:`solo_clamp.backbones.pretrained_from_cfg`, weights loaded with ``weights_only=True``),
  and the backbone is rebuilt as it was pretrained (the CIFAR stem of a CIFAR checkpoint
  stays when it is probed elsewhere); ``null`` probes the untrained backbone, and
  ``raw_pixels: true`` the normalised pixels themselves (the floors of a transfer table);
* for ``custom`` datasets the transforms use ``data.augmentations.crop_size/mean/std``, the
  probed dataset's own (solo-learn's custom pipeline is fixed at 224 px with ImageNet
  statistics, wrong for MNIST-sized images);
* ``data.torchvision: dtd | flowers102 | food101`` reads that torchvision dataset (the
  paper's transfer sets) from ``data.train_path``, never downloading it: trained on its
  ``train`` split, scored on its ``test`` split. ``data.dataset`` stays ``custom`` for
  solo-learn's checks.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
import torchvision.datasets
from lightning.pytorch import seed_everything
from omegaconf import DictConfig, OmegaConf
from solo.args.linear import parse_cfg
from solo.data.classification_dataloader import (
    prepare_dataloaders,
    prepare_datasets,
    prepare_transforms,
)
from solo.methods.linear import LinearModel
from torch.utils.data import Dataset
from torchvision import transforms

from solo_clamp.backbones import (
    PretrainedBackbone,
    build_backbone,
    method_of,
    pretrained_from_cfg,
    spec_from_cfg,
)
from solo_clamp.errors import ConfigError, DataError
from solo_clamp.evaluation import FLOORS, RawPixels, eval_transform
from solo_clamp.internals import torchvision_image_files
from solo_clamp.io import atomic_write_text
from solo_clamp.training.checks import check_field_types, check_image_folders
from solo_clamp.training.common import build_trainer, loggers_and_callbacks, parse_solo_cfg

TRANSFER_DATASETS: dict[str, tuple[str, int]] = {
    "dtd": ("DTD", 47),
    "flowers102": ("Flowers102", 102),
    "food101": ("Food101", 101),
}
"""``data.torchvision`` names: the torchvision class and its number of classes."""


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


def _torchvision_datasets(cfg: DictConfig, name: str) -> tuple[Dataset, Dataset]:
    class_name = TRANSFER_DATASETS[name][0]
    dataset_class = getattr(torchvision.datasets, class_name)
    t_train, t_val = _custom_transforms(cfg)
    root = Path(str(cfg.data.train_path))
    try:
        return (
            dataset_class(str(root), split="train", transform=t_train),
            dataset_class(str(root), split="test", transform=t_val),
        )
    except RuntimeError as err:  # torchvision's "Dataset not found"
        raise DataError(
            f"data.train_path={root}: no torchvision {class_name} there ({err}); solo-clamp "
            f"never downloads it: put the files torchvision's {class_name} reads under it."
        ) from err


def classification_datasets(cfg: DictConfig) -> tuple[Dataset, Dataset]:
    """The training and evaluation datasets of a parsed linear / fine-tuning cfg."""
    if cfg.data.get("torchvision"):
        return _torchvision_datasets(cfg, str(cfg.data.torchvision))
    if cfg.data.dataset == "custom":
        t_train, t_val = _custom_transforms(cfg)
    else:
        t_train, t_val = prepare_transforms(cfg.data.dataset)
    return prepare_datasets(
        cfg.data.dataset,
        t_train,
        t_val,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format=cfg.data.format,
        data_fraction=cfg.data.fraction,
    )


def sample_paths(dataset: Dataset) -> tuple[list[Path], Path, list[int]]:
    """Every image file of ``dataset``, the folder they are listed relative to, and labels
    (an ImageFolder, or one of the torchvision transfer datasets).

    Raises:
        ConfigError: a dataset whose images are not files (e.g. CIFAR's arrays).
    """
    if hasattr(dataset, "samples"):
        return (
            [Path(path) for path, _ in dataset.samples],
            Path(dataset.root),
            [int(label) for _, label in dataset.samples],
        )
    listed = torchvision_image_files(dataset)
    if listed is not None:
        files, folder, labels = listed
        return [Path(p) for p in files], Path(folder), labels
    raise ConfigError(
        f"data.dataset: {type(dataset).__name__} holds no image files to list; use an "
        "ImageFolder (data.dataset=custom) or data.torchvision."
    )


def build_probed_backbone(
    cfg: DictConfig, source: Optional[PretrainedBackbone]
) -> tuple[torch.nn.Module, str]:
    """The backbone to probe and its description: the source's, raw pixels
    (``raw_pixels: true``) or, without a source, the untrained ``backbone.name``."""
    if cfg.get("raw_pixels"):
        if source is not None:
            raise ConfigError(
                "raw_pixels: true probes the pixels themselves: set "
                "pretrained_feature_extractor=null."
            )
        return RawPixels(int(cfg.data.augmentations.crop_size)), "raw pixels"
    if source is None:
        backbone = build_backbone(spec_from_cfg(cfg), method_of(cfg), seed=int(cfg.seed))
        return backbone, f"untrained {cfg.backbone.name} (seed {cfg.seed})"
    return source.build(), source.description


def probed_with_floors(
    cfg: DictConfig,
    source: Optional[PretrainedBackbone],
    backbone: torch.nn.Module,
    description: str,
    floors: Sequence[str],
    seed: int,
) -> dict[str, tuple[torch.nn.Module, str]]:
    """``{key: (feature extractor, description)}``: the probed ``backbone`` (of
    :func:`build_probed_backbone`) under ``backbone`` and the ``floors`` of
    :data:`~solo_clamp.evaluation.FLOORS` (the untrained floor only for a pretrained
    backbone)."""
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


def set_num_classes(cfg: DictConfig) -> None:
    """``data.num_classes`` of a parsed cfg for ``data.torchvision``; refuses fewer than five
    classes, which solo-learn's ``LinearModel`` cannot score (it reports top-5 accuracy)."""
    name = cfg.data.get("torchvision")
    if name:
        if name not in TRANSFER_DATASETS:
            raise ConfigError(
                f"data.torchvision must be one of {sorted(TRANSFER_DATASETS)} or "
                f"null (an ImageFolder), got {name!r}."
            )
        cfg.data.num_classes = TRANSFER_DATASETS[name][1]
    if cfg.data.num_classes < 5:
        raise DataError(
            f"data.train_path={cfg.data.train_path} has {cfg.data.num_classes} class "
            "folder(s); solo-learn's LinearModel reports top-5 accuracy and needs at least 5."
        )


@contextmanager
def compute_threads(cfg: DictConfig) -> Iterator[None]:
    """torch's compute threads set to ``performance.num_threads`` (when given) for the block.

    As in pretraining: on a small shared CPU, OpenMP threads beyond the free cores spin-wait
    on each other (measured: a 1 % MNIST fine-tuning step 0.03 -> 1.7 per second with one
    thread instead of two, on 2 busy cores)."""
    threads = torch.get_num_threads()
    if cfg.performance.get("num_threads"):
        torch.set_num_threads(int(cfg.performance.num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_and_validate(
    cfg: DictConfig, model, train_loader, val_loader, loggers: list, callbacks: list
) -> dict[str, float]:
    """Fits ``model`` with Lightning's trainer of ``cfg`` (:func:`compute_threads` threads) and
    returns its final ``val_*`` metrics (linear evaluation and fine-tuning)."""
    trainer = build_trainer(cfg, loggers, callbacks)
    with compute_threads(cfg):
        trainer.fit(model, train_loader, val_loader)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}


def run_linear(cfg: DictConfig) -> dict[str, Any]:
    """Trains a linear classifier on the frozen backbone of ``pretrained_feature_extractor``
    (a ``.ckpt`` file, a run directory, a zoo name, or null for the untrained backbone)."""
    OmegaConf.set_struct(cfg, False)
    check_field_types(cfg)
    check_image_folders(cfg, ("data.train_path", "data.val_path"))
    source = pretrained_from_cfg(cfg)
    cfg = parse_solo_cfg(cfg, parse_cfg)
    set_num_classes(cfg)
    seed_everything(cfg.seed)
    backbone, description = build_probed_backbone(cfg, source)
    logging.info("Probing %s", description)

    model = LinearModel(backbone, loss_func=torch.nn.CrossEntropyLoss(), cfg=cfg)
    if not cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)
    train_set, val_set = classification_datasets(cfg)
    train_loader, val_loader = prepare_dataloaders(
        train_set, val_set, batch_size=cfg.optimizer.batch_size, num_workers=cfg.data.num_workers
    )
    cfg.method = "linear"
    loggers, callbacks, run_dir = loggers_and_callbacks(cfg, model, None)
    metrics = fit_and_validate(cfg, model, train_loader, val_loader, loggers, callbacks)
    result = {
        "backbone": description,
        "train_images": len(train_set),
        "evaluation_images": len(val_set),
        "epochs": int(cfg.max_epochs),
        "seed": int(cfg.seed),
        **metrics,
    }
    atomic_write_text(Path(run_dir) / "linear.json", json.dumps(result, indent=2))
    print(f"probed: {description}")
    print("linear evaluation:", ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return {"run_dir": run_dir, **result}
