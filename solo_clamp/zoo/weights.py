"""Backbone weights: safetensors files (never pickles), loading them into solo-learn backbones,
and :func:`load`.

solo-learn is imported only by :func:`~solo_clamp.checkpoints.build_backbone` (and so by
:func:`build_loaded` and :func:`load`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from solo_clamp.checkpoints import build_backbone
from solo_clamp.io import PathLike, atomic_path
from solo_clamp.zoo.download import download
from solo_clamp.zoo.errors import ZooError
from solo_clamp.zoo.index import IndexLike, lookup
from solo_clamp.zoo.manifest import BackboneSpec, ZooEntry


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


def build_loaded(
    spec: BackboneSpec, method: str, state: Mapping[str, torch.Tensor], failure: str
) -> torch.nn.Module:
    """:func:`~solo_clamp.checkpoints.build_backbone` with ``state`` loaded strictly (cast to
    the parameters' dtype).

    Raises:
        ModuleNotFoundError: solo-learn is not installed.
        ZooError: an unknown backbone name; or ``failure``, the CIFAR stem flag and torch's
            list of mismatched keys.
    """
    try:
        backbone = build_backbone(spec, method)
    except ValueError as err:
        raise ZooError(str(err)) from err
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ZooError(f"{failure} (cifar_stem={spec.cifar_stem}): {err}") from err
    return backbone


def load(
    name: Union[str, ZooEntry],
    index: IndexLike = None,
    *,
    cache: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> torch.nn.Module:
    """A zoo model's backbone with its weights, in eval mode, ready for feature extraction.

    Example::

        backbone = solo_clamp.zoo.load("clamp-mnist-resnet18")
        feats = backbone(images)  # (N, features_dim)
    """
    idx, entry = lookup(name, index)
    path = download(entry, idx, cache=cache, progress=progress)
    backbone = build_loaded(
        entry.backbone,
        entry.method,
        read_weights(path, dtype=dtype),
        f"{entry.name}: the weights do not fit backbone {entry.backbone.name}",
    )
    return backbone.to(device=device, dtype=dtype).eval()
