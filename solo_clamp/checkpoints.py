"""Loading solo-learn-layout checkpoints safely (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


def _omegaconf_globals() -> list:
    """Classes an OmegaConf config pickled into a Lightning checkpoint needs (hyper-parameters)."""
    import typing

    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode

    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any, dict, list]


def load_checkpoint(path: os.PathLike) -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True`` (no arbitrary pickle), allowing only the
    OmegaConf containers that Lightning stores when a module saved its hyper-parameters."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    with torch.serialization.safe_globals(_omegaconf_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


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
