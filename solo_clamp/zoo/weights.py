"""Backbone weights files: safetensors (never pickles), read, written and described.

:func:`solo_clamp.backbones.load_backbone` builds the backbones they fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from solo_clamp.io import PathLike, atomic_path
from solo_clamp.zoo.errors import ZooError


def read_weights(path: PathLike, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """Reads a safetensors weights file (no pickle), casting floating tensors to ``dtype``."""
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise ZooError(f"{path}: not a readable safetensors file: {err}") from err
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    return state


def write_weights(
    path: Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> None:
    """Writes a safetensors file atomically (temporary file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        save_file(dict(state), str(tmp), metadata=dict(metadata))


def weights_metadata(path: PathLike) -> dict[str, str]:
    """The metadata stored in a safetensors header (written by :func:`publish`)."""
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})
