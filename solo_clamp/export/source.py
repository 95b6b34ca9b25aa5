"""A pretrained backbone from wherever it lives: a checkpoint, a run directory or a zoo name.

:func:`resolve_backbone` is the one resolver that ``solo-clamp export``, ``solo-clamp
finetune`` and ``solo-clamp linear`` share. It returns the weights and the recipe to rebuild
the backbone (solo-learn name, kwargs, CIFAR stem) without building it, so that exporting
needs neither solo-learn nor a model in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from solo_clamp.checkpoints import (
    CheckpointNotFoundError,
    backbone_state,
    load_checkpoint,
    load_run,
    resolve_checkpoint,
    uses_cifar_stem,
)
from solo_clamp.io import PathLike
from solo_clamp.zoo.manifest import BackboneSpec

SourceLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class PretrainedBackbone:
    """A backbone's weights and how to rebuild it."""

    spec: BackboneSpec
    method: str
    state: dict[str, torch.Tensor]
    """The backbone's ``state_dict`` (fp32 for zoo weights stored in fp16)."""
    origin: str
    """Where the weights came from, for messages: a checkpoint path or ``zoo:<name>``."""
    dataset: str = "unknown"
    normalisation: dict[str, Any] = field(default_factory=dict)
    """The pretraining's ``crop_size``, ``mean`` and ``std`` where the run's cfg records them."""

    def build(self) -> torch.nn.Module:
        """The solo-learn backbone with these weights, loaded strictly (needs solo-learn)."""
        from solo_clamp.zoo.weights import build_loaded

        return build_loaded(
            self.spec,
            self.method,
            self.state,
            f"{self.origin}: the weights do not fit backbone {self.spec.name}",
        )


def _normalisation(cfg: Mapping[str, Any]) -> dict[str, Any]:
    augmentations = cfg.get("augmentations") or [{}]
    first = augmentations[0] if isinstance(augmentations, list) and augmentations else {}
    if not isinstance(first, Mapping):
        return {}
    return {key: first[key] for key in ("crop_size", "mean", "std") if first.get(key) is not None}


def _run_dataset(cfg: Mapping[str, Any]) -> str:
    prepared = cfg.get("prepare_data") or {}
    return str(prepared.get("name") or cfg.get("data", {}).get("dataset") or "unknown")


def spec_from_cfg(cfg: Mapping[str, Any]) -> BackboneSpec:
    """The backbone recipe of a run cfg (``backbone.name``/``kwargs``, ``data.dataset``)."""
    name = str(cfg["backbone"]["name"])
    dataset = str(cfg.get("data", {}).get("dataset", ""))
    return BackboneSpec(
        name, dict(cfg["backbone"].get("kwargs") or {}), uses_cifar_stem(name, dataset)
    )


def _from_checkpoint(path: Path, fallback_cfg: Optional[Mapping[str, Any]]) -> PretrainedBackbone:
    checkpoint_path = resolve_checkpoint(path)
    if (checkpoint_path.parent / "args.json").is_file() or fallback_cfg is None:
        run = load_run(checkpoint_path)
        cfg, checkpoint = run.cfg, run.checkpoint
    else:
        # solo-learn's own linear evaluation needs no args.json: the caller's cfg stands in.
        cfg, checkpoint = fallback_cfg, load_checkpoint(checkpoint_path)
    method = str(cfg.get("method") or cfg.get("pretrain_method") or "unknown")
    return PretrainedBackbone(
        spec=spec_from_cfg(cfg),
        method=method,
        state=backbone_state(checkpoint, torch.float32, where=str(checkpoint_path)),
        origin=str(checkpoint_path),
        dataset=_run_dataset(cfg),
        normalisation=_normalisation(cfg),
    )


def _from_zoo(
    name: str, index: Optional[PathLike], cache: Optional[PathLike]
) -> PretrainedBackbone:
    from solo_clamp.zoo.download import download
    from solo_clamp.zoo.index import lookup
    from solo_clamp.zoo.weights import read_weights

    idx, entry = lookup(name, index)
    path = download(entry, idx, cache=cache, progress=False)
    return PretrainedBackbone(
        spec=entry.backbone,
        method=entry.method,
        state=read_weights(path, dtype=torch.float32),
        origin=f"zoo:{entry.name}",
        dataset=entry.dataset,
        normalisation=_normalisation(entry.config),
    )


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith((".ckpt", ".pt", ".pth"))


def resolve_backbone(
    source: SourceLike,
    *,
    index: Optional[PathLike] = None,
    cache: Optional[PathLike] = None,
    fallback_cfg: Optional[Mapping[str, Any]] = None,
) -> PretrainedBackbone:
    """The backbone of ``source``: a ``.ckpt`` file, a run directory (its newest ``.ckpt``,
    ``args.json`` beside it) or the name of a zoo model (verified, downloaded if needed).

    An existing path wins over a zoo name. ``fallback_cfg`` (a linear-evaluation cfg with
    ``backbone`` and ``data.dataset``) describes a checkpoint that has no ``args.json``.

    Raises:
        CheckpointError: an unreadable checkpoint or cfg, or a backbone-less checkpoint.
        CheckpointNotFoundError: ``source`` is neither an existing path nor a zoo model.
        ZooError: the zoo model's file fails its download or checksum.
    """
    from solo_clamp.zoo.errors import UnknownModelError

    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        return _from_checkpoint(path, fallback_cfg)
    if _looks_like_path(text):
        raise CheckpointNotFoundError(f"{text}: no such checkpoint or run directory.")
    try:
        return _from_zoo(text, index, cache)
    except UnknownModelError as err:
        raise CheckpointNotFoundError(
            f"{text!r} is neither a checkpoint, a run directory nor a zoo model: {err}"
        ) from err
