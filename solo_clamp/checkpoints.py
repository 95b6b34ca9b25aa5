"""Loading solo-learn-layout checkpoints safely (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not a Lightning/solo-learn checkpoint."""


def checkpoint_safe_globals() -> list[Any]:
    """Types a Lightning checkpoint may pickle besides tensors and plain containers: the
    OmegaConf nodes of ``hyper_parameters`` and the paths some callbacks store. These are data
    classes whose unpickling runs no user code; everything else is refused."""
    import collections
    import pathlib
    import typing

    allowed: list[Any] = [typing.Any, dict, list, tuple, set, int, float, str, bool,
                          collections.defaultdict, collections.OrderedDict,
                          pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath,
                          pathlib.PureWindowsPath]
    try:
        from omegaconf import base, dictconfig, listconfig, nodes
    except ImportError:
        return allowed
    return allowed + [dictconfig.DictConfig, listconfig.ListConfig, base.ContainerMetadata,
                      base.Metadata, nodes.AnyNode, nodes.StringNode, nodes.IntegerNode,
                      nodes.FloatNode, nodes.BooleanNode]


def load_checkpoint(path: os.PathLike) -> dict[str, Any]:
    """Loads a Lightning ``.ckpt`` with ``torch.load(weights_only=True)`` and the allow-list of
    :func:`checkpoint_safe_globals` (never an arbitrary pickle).

    Raises:
        CheckpointError: missing file, refused global, or no ``state_dict`` mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
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


def backbone_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The ``backbone.*`` weights of a checkpoint, with the prefix removed."""
    state = checkpoint.get("state_dict", checkpoint)
    weights = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if not weights:
        raise ValueError(
            "the checkpoint has no 'backbone.*' weights (not a solo-learn checkpoint?)."
        )
    return weights


def resolve_checkpoint(path: os.PathLike) -> Path:
    """A checkpoint file, or the newest ``.ckpt`` of a run directory (handy because
    solo-learn's file names contain ``=``, which Hydra overrides would need quoted)."""
    path = Path(path)
    if path.is_dir():
        checkpoints = sorted(path.glob("*.ckpt"), key=os.path.getmtime)
        if not checkpoints:
            raise FileNotFoundError(f"no .ckpt file in {path}.")
        path = checkpoints[-1]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    return path


def find_run_files(path: os.PathLike) -> tuple[Path, Path]:
    """``(checkpoint, args.json)`` from a checkpoint file or a run directory."""
    path = resolve_checkpoint(path)
    args = path.parent / "args.json"
    if not args.is_file():
        raise FileNotFoundError(f"{args} is missing: solo-learn writes it beside each checkpoint.")
    return path, args


def load_run_config(args_path: os.PathLike):
    """The run's config (``args.json``) as an OmegaConf DictConfig."""
    from omegaconf import OmegaConf

    return OmegaConf.create(json.loads(Path(args_path).read_text()))
