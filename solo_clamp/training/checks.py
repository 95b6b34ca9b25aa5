"""Early, named errors for a config, before any data or model is built.

solo-learn validates with bare ``assert`` statements deep inside model construction, and
Lightning reads a field's type only when training starts; these checks run first and say which
field is wrong and what is allowed (:class:`~solo_clamp.errors.ConfigError`, or
:class:`~solo_clamp.errors.DataError` for an empty image folder). :func:`check_field_types`
serves every program; :func:`preflight` is pretraining's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from pydantic import StrictBool, StrictInt, StrictStr

from solo_clamp.errors import ConfigError, DataError
from solo_clamp.internals import backbone_builders
from solo_clamp.methods import facts_of, known
from solo_clamp.training.transforms import check_blur_kernel_size
from solo_clamp.validation import Number, validated

SUPPORTED_DATASETS = ("cifar10", "cifar100", "stl10", "imagenet", "imagenet100", "custom")
DATA_FORMATS = ("image_folder", "h5", "dali")
_FOLDER_DATASETS = ("imagenet", "imagenet100", "custom")

OptionalInt = Optional[StrictInt]
FIELD_TYPES: dict[str, Any] = {
    "max_epochs": OptionalInt,
    "max_steps": OptionalInt,
    "min_epochs": OptionalInt,
    "seed": StrictInt,
    "num_nodes": StrictInt,
    "accelerator": Optional[StrictStr],
    "check_val_every_n_epoch": OptionalInt,
    "accumulate_grad_batches": OptionalInt,
    "gradient_clip_val": Optional[Number],
    "optimizer.name": StrictStr,
    "optimizer.lr": Number,
    "optimizer.batch_size": StrictInt,
    "optimizer.weight_decay": Number,
    "scheduler.name": StrictStr,
    "data.dataset": StrictStr,
    "data.num_workers": StrictInt,
    "checkpoint.enabled": StrictBool,
    "checkpoint.frequency": StrictInt,
    "performance.num_threads": OptionalInt,
    "batch_size": StrictInt,  # few-label and kNN: feature extraction
    "num_workers": StrictInt,  # kNN
}
"""The fields every program shares (those of a config that has them are checked): ``field ->
type`` (:mod:`solo_clamp.validation`'s). Ranges and allowed values are the programs'."""
_ABSENT = object()


def _get(cfg: DictConfig, key: str, default=None):
    return OmegaConf.select(cfg, key, default=default)


def _field(cfg: DictConfig, field: str):
    """The value of ``field`` (interpolations resolved), or ``_ABSENT`` when the config does not
    set it (missing key, or ``???``)."""
    parent_key, _, leaf = field.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent:
        return _ABSENT
    if OmegaConf.is_missing(parent, leaf):
        return _ABSENT
    return parent[leaf]


def check_field_types(cfg: DictConfig) -> None:
    """Checks the type of each :data:`FIELD_TYPES` field that ``cfg`` sets (Hydra reads
    ``max_epochs=abc`` as the string ``'abc'``, which Lightning would only refuse once the
    data and the model are built).

    Raises:
        ConfigError: naming the field, its value and the expected type.
    """
    for field, schema in FIELD_TYPES.items():
        value = _field(cfg, field)
        if value is not _ABSENT:
            plain = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            validated(schema, plain, field)


def _check_data_dir(path, field: str, holds: str = "training images") -> None:
    if path is None or str(path) == "" or OmegaConf.is_missing(OmegaConf.create({"p": path}), "p"):
        raise ConfigError(f"{field} is required: the directory of the {holds}.")
    directory = Path(str(path)).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"{field}={str(path)!r} does not exist or is not a directory.")
    if not any(os.scandir(directory)):
        raise DataError(f"{field}={str(path)!r} is empty: it must hold the {holds}.")


def check_image_folders(cfg: DictConfig, fields: tuple[str, ...]) -> None:
    """Checks that the ``fields`` (e.g. ``data.train_path``) of an image-folder config name
    non-empty directories; CIFAR and STL-10 roots, ``data.format=h5`` files and
    ``data.torchvision`` sets are left to their loaders.

    Raises:
        ConfigError: a missing field or directory. DataError: an empty directory.
    """
    if _get(cfg, "data.torchvision") or _get(cfg, "data.format", "image_folder") != "image_folder":
        return
    if _get(cfg, "data.dataset", "custom") not in _FOLDER_DATASETS:
        return
    for field in fields:
        _check_data_dir(_get(cfg, field), field, "images")


def _check_augmentations(cfg: DictConfig, data_format: str) -> None:
    augmentations = _get(cfg, "augmentations")
    if not augmentations:
        raise ConfigError("augmentations must list at least one transform set (with num_crops).")
    for index, aug in enumerate(augmentations):
        crops = aug.get("num_crops")
        if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
            raise ConfigError(
                f"augmentations[{index}].num_crops must be an integer >= 1, got {crops!r}."
            )
        size = aug.get("crop_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(
                f"augmentations[{index}].crop_size must be a positive integer, got {size!r}."
            )
        check_blur_kernel_size(aug, index, data_format)


def _num_devices(cfg: DictConfig) -> int:
    devices = _get(cfg, "devices", 1)
    if isinstance(devices, int):
        return max(devices, 1)
    if isinstance(devices, str):
        return max(int(devices), 1) if devices.isdigit() else 1
    return max(len(devices), 1)


def num_processes(cfg: DictConfig) -> int:
    """Training processes: devices per node times nodes."""
    return _num_devices(cfg) * int(_get(cfg, "num_nodes", 1) or 1)


def _check_sync_batchnorm(cfg: DictConfig, world: int) -> None:
    accelerator = _get(cfg, "accelerator", "auto")
    on_cpu = accelerator == "cpu" or (
        accelerator in (None, "auto", "gpu", "cuda") and not torch.cuda.is_available()
    )
    if _get(cfg, "sync_batchnorm", False) and world > 1 and on_cpu:
        raise ConfigError(
            "sync_batchnorm=True needs CUDA GPUs: torch's SyncBatchNorm has no CPU "
            f"implementation, so this {world}-process CPU run cannot use it; set "
            "sync_batchnorm=False (each process then normalises over its own batch)."
        )


def _check_checkpoint_fields(cfg: DictConfig) -> None:
    keep_last = _get(cfg, "checkpoint.keep_last", 2)
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise ConfigError(
            "checkpoint.keep_last must be an integer >= 1 (how many of a run's newest "
            f"checkpoints are kept), got {keep_last!r}."
        )
    minutes = _get(cfg, "checkpoint.every_minutes")
    if minutes is not None and (
        isinstance(minutes, bool)
        or not isinstance(minutes, (int, float))
        or not 0 < minutes < float("inf")
    ):
        raise ConfigError(
            "checkpoint.every_minutes must be a number of minutes > 0 (a mid-epoch "
            f"checkpoint at most that often), or null for epoch ends only, got {minutes!r}."
        )


def preflight(cfg: DictConfig) -> None:
    """Validates a pretraining config (any method with facts: CLAMP, ManifoldCLR, solo-learn's
    SimCLR, BYOL, VICReg, ...); raises :class:`~solo_clamp.errors.ConfigError` (a ValueError)
    naming the field, or :class:`~solo_clamp.errors.DataError` for an empty image folder."""
    check_field_types(cfg)
    method = _get(cfg, "method")
    if method not in known():
        raise ConfigError(f"method must be one of {known()} for this program, got {method!r}.")
    dataset = _get(cfg, "data.dataset")
    if dataset not in SUPPORTED_DATASETS:
        raise ConfigError(
            f"data.dataset must be one of {list(SUPPORTED_DATASETS)}, got {dataset!r}."
        )
    data_format = _get(cfg, "data.format", "image_folder")
    if data_format not in DATA_FORMATS:
        raise ConfigError(f"data.format must be one of {list(DATA_FORMATS)}, got {data_format!r}.")
    if data_format == "dali":
        check_dali_usable()
    if dataset in _FOLDER_DATASETS:
        _check_data_dir(_get(cfg, "data.train_path"), "data.train_path")

    backbone = _get(cfg, "backbone.name")
    names = sorted(backbone_builders())
    if backbone not in names:
        raise ConfigError(f"backbone.name must be one of {names}, got {backbone!r}.")

    _check_augmentations(cfg, data_format)
    try:
        facts_of(method).check(cfg.copy())
    except ValueError as err:  # the methods' own checks (methods/): sentences naming the field
        raise ConfigError(str(err)) from err

    batch_size = _get(cfg, "optimizer.batch_size")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"optimizer.batch_size must be a positive integer, got {batch_size!r}.")
    world = num_processes(cfg)
    if batch_size * world < 2:
        raise ConfigError(
            "optimizer.batch_size=1 on a single device gives one sub-manifold per step and "
            "nothing to pack: use optimizer.batch_size >= 2."
        )
    _check_sync_batchnorm(cfg, world)
    _check_checkpoint_fields(cfg)


def check_dali_usable() -> None:
    """Raises a clear error when ``data.format=dali`` cannot run here."""
    if not torch.cuda.is_available():
        raise ConfigError(
            "data.format=dali needs an NVIDIA GPU with CUDA, and none is available here: "
            "use data.format=image_folder (or h5) on this machine."
        )
    try:  # DALI is optional (the `dali` extra)
        import nvidia.dali  # noqa: F401
    except ImportError as err:
        raise ConfigError("data.format=dali needs NVIDIA DALI: pip install -e '.[dali]'.") from err
