"""A solo-learn run's files: the checkpoint (loaded safely), its ``args.json`` cfg and the
weights of one of its modules.

Everything that reads a checkpoint goes through :func:`load_run` / :func:`load_checkpoint` and
:func:`backbone_state`; :mod:`solo_clamp.backbones` builds backbones from them. Checkpoints are
read with ``torch.load(weights_only=True)`` and an allow-list of plain data types, never as
arbitrary pickles.
"""

from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass
from pathlib import Path, PosixPath, PurePosixPath, PureWindowsPath, WindowsPath
from typing import Any, Mapping, Optional

import torch
from omegaconf import base, dictconfig, listconfig, nodes

from solo_clamp.errors import CheckpointError


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
    return [
        Any,
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
        PosixPath,
        PurePosixPath,
        WindowsPath,
        PureWindowsPath,
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
