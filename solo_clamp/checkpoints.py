"""From a solo-learn run to a model: the checkpoint (loaded safely), its ``args.json`` cfg, its
backbone weights and the solo-learn backbone they fit.

Linear and kNN evaluation, the zoo (publish, load) and the geometry report all go through
:func:`load_run` / :func:`load_checkpoint`, :func:`backbone_state` and :func:`build_backbone`.
Checkpoints are read with ``torch.load(weights_only=True)`` and an allow-list of plain data
types, never as arbitrary pickles. solo-learn is imported only inside :func:`build_backbone`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

import torch

if TYPE_CHECKING:
    from solo_clamp.zoo.manifest import BackboneSpec

CIFAR_DATASETS = ("cifar10", "cifar100")
"""Datasets whose ResNets solo-learn builds with the CIFAR stem (see :func:`uses_cifar_stem`)."""


class CheckpointError(ValueError):
    """A checkpoint or run cfg that is missing, unreadable or not solo-learn's."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint file at the path, or no ``.ckpt`` in the run directory."""


@dataclass(frozen=True)
class Run:
    """A solo-learn run: one checkpoint and the cfg it was trained with."""

    checkpoint_path: Path
    cfg_path: Path
    cfg: dict[str, Any]
    """``args.json`` as plain JSON (``OmegaConf.create(run.cfg)`` gives solo-learn's cfg)."""
    checkpoint: dict[str, Any]
    """The loaded Lightning checkpoint; its ``state_dict`` is :attr:`state_dict`."""

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.checkpoint["state_dict"]


def checkpoint_safe_globals() -> list[Any]:
    """Types a Lightning checkpoint may pickle besides tensors and plain containers: the
    OmegaConf nodes of ``hyper_parameters`` and the paths some callbacks store. These are data
    classes whose unpickling runs no user code; everything else is refused."""
    import collections
    import pathlib
    import typing

    allowed: list[Any] = [
        typing.Any,
        dict,
        list,
        tuple,
        set,
        int,
        float,
        str,
        bool,
        collections.defaultdict,
        collections.OrderedDict,
        pathlib.PosixPath,
        pathlib.PurePosixPath,
        pathlib.WindowsPath,
        pathlib.PureWindowsPath,
    ]
    try:
        from omegaconf import base, dictconfig, listconfig, nodes
    except ImportError:
        return allowed
    return allowed + [
        dictconfig.DictConfig,
        listconfig.ListConfig,
        base.ContainerMetadata,
        base.Metadata,
        nodes.AnyNode,
        nodes.StringNode,
        nodes.IntegerNode,
        nodes.FloatNode,
        nodes.BooleanNode,
    ]


def resolve_checkpoint(path: os.PathLike) -> Path:
    """A checkpoint file, or the newest ``.ckpt`` of a run directory (handy because
    solo-learn's file names contain ``=``, which Hydra overrides would need quoted).

    Raises:
        CheckpointNotFoundError: no such file, or no ``.ckpt`` in the directory.
    """
    path = Path(path)
    if path.is_dir():
        checkpoints = sorted(path.glob("*.ckpt"), key=os.path.getmtime)
        if not checkpoints:
            raise CheckpointNotFoundError(f"no .ckpt file in {path}.")
        path = checkpoints[-1]
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint {path} does not exist.")
    return path


def load_checkpoint(path: os.PathLike) -> dict[str, Any]:
    """Loads a Lightning ``.ckpt`` (or the newest of a run directory) with
    ``torch.load(weights_only=True)`` and the allow-list of :func:`checkpoint_safe_globals`.

    Raises:
        CheckpointError: missing file, refused global, or no ``state_dict`` mapping.
    """
    path = resolve_checkpoint(path)
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError on a non-torch file, ...
        lines = str(err).strip().splitlines()
        raise CheckpointError(
            f"{path}: cannot be loaded with torch.load(weights_only=True) "
            f"({lines[-1] if lines else type(err).__name__}); solo-clamp never unpickles "
            "arbitrary objects."
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict' mapping).")
    return checkpoint


def _read_cfg(path: Path, beside_checkpoint: bool) -> dict[str, Any]:
    if not path.is_file():
        if beside_checkpoint:
            raise CheckpointError(
                f"{path} not found: no args.json beside the checkpoint (solo-learn writes the "
                "run's cfg there); copy it next to the .ckpt or give its path."
            )
        raise CheckpointError(f"{path} not found.")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a JSON object (the training cfg).")
    return cfg


def load_run(path: os.PathLike, args_path: Optional[os.PathLike] = None) -> Run:
    """A run's checkpoint and cfg.

    Args:
        path: a ``.ckpt`` file or a run directory (its newest ``.ckpt``).
        args_path: the run's cfg; default the ``args.json`` solo-learn writes beside the
            checkpoint.

    Raises:
        CheckpointError: the checkpoint or cfg is missing or unreadable
            (:class:`CheckpointNotFoundError` when the checkpoint is missing).
    """
    checkpoint_path = resolve_checkpoint(path)
    beside = args_path is None
    cfg_path = checkpoint_path.parent / "args.json" if beside else Path(args_path)
    cfg = _read_cfg(cfg_path, beside)
    return Run(checkpoint_path, cfg_path, cfg, load_checkpoint(checkpoint_path))


def backbone_state(
    checkpoint_or_state: Mapping[str, Any],
    dtype: Optional[torch.dtype] = None,
    *,
    prefix: str = "backbone",
    where: str = "checkpoint",
) -> dict[str, torch.Tensor]:
    """The ``backbone.*`` tensors of a checkpoint or state dict, prefix removed, on the CPU.

    Args:
        checkpoint_or_state: a loaded checkpoint (its ``state_dict`` is used) or a state dict.
        dtype: cast floating tensors to it, refusing values it cannot hold.
        prefix: another sub-module's weights, e.g. ``"projector"``.
        where: names the checkpoint in error messages.

    Raises:
        CheckpointError: no ``<prefix>.*`` tensor, or values not finite in ``dtype``.
    """
    state = checkpoint_or_state.get("state_dict", checkpoint_or_state)
    start = prefix + "."
    out = {}
    for key, value in state.items():
        if not (key.startswith(start) and isinstance(value, torch.Tensor)):
            continue
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            # checked before the cast: fp16 math is slow on CPU
            limit = torch.finfo(dtype).max
            if value.numel() and not (torch.isfinite(value).all() and value.abs().amax() <= limit):
                raise CheckpointError(
                    f"{where}: {key} has values that are not finite in {dtype} "
                    "(publish with --dtype fp32)."
                )
            value = value.to(dtype)
        out[key[len(start) :]] = value.clone().contiguous()
    if not out:
        prefixes = sorted({k.split(".", 1)[0] for k in state})
        raise CheckpointError(
            f"{where}: no '{prefix}.*' weights (not a solo-learn checkpoint?); the state_dict "
            f"has: {', '.join(prefixes) or 'nothing'}."
        )
    return out


def uses_cifar_stem(backbone_name: str, dataset: str) -> bool:
    """solo-learn's rule: ResNets for CIFAR datasets get a 3x3, stride-1 first convolution
    (padding 2) and no max-pool."""
    return backbone_name.startswith("resnet") and dataset in CIFAR_DATASETS


def build_backbone(
    source: Union[Mapping[str, Any], BackboneSpec], method: Optional[str] = None
) -> torch.nn.Module:
    """A solo-learn backbone built as ``BaseMethod`` builds it: ``fc`` replaced by Identity
    for ResNets, and the CIFAR stem where :func:`uses_cifar_stem` (or the spec) says so.

    Args:
        source: a run cfg (``args.json`` or a parsed solo-learn cfg: ``backbone.name``,
            ``backbone.kwargs``, ``data.dataset``) or a zoo
            :class:`~solo_clamp.zoo.manifest.BackboneSpec` (``name``, ``kwargs``,
            ``cifar_stem``).
        method: passed to solo-learn's backbone builder; default the cfg's ``method`` (or
            ``pretrain_method``); it picks a method's custom backbone (solo-learn's MAE ViTs),
            and none matches when it is unknown.

    Raises:
        ModuleNotFoundError: solo-learn is not installed.
        ValueError: the backbone name is unknown to solo-learn (lists the known ones).
    """
    from solo_clamp import SOLO_MISSING_MESSAGE, solo_available

    if isinstance(source, Mapping):
        name = str(source["backbone"]["name"])
        kwargs = dict(source["backbone"].get("kwargs") or {})
        cifar_stem = uses_cifar_stem(name, str(source["data"]["dataset"]))
        method = method or source.get("method") or source.get("pretrain_method")
    else:
        name, kwargs, cifar_stem = source.name, dict(source.kwargs), source.cifar_stem
    if not solo_available():
        raise ModuleNotFoundError(SOLO_MISSING_MESSAGE, name="solo")
    from solo.methods.base import BaseMethod

    builders = BaseMethod._BACKBONES
    if name not in builders:
        raise ValueError(f"backbone.name must be one of {sorted(builders)}, got {name!r}.")
    backbone = builders[name](method or "unknown", **kwargs)
    if name.startswith("resnet"):
        backbone.fc = torch.nn.Identity()
        if cifar_stem:
            backbone.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
            backbone.maxpool = torch.nn.Identity()
    return backbone
