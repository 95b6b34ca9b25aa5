"""The one backbone loader: a backbone from a ``.ckpt`` file, a run directory (its newest
``.ckpt``, ``args.json`` beside it), a zoo model name, or none (the untrained backbone of a
seed), built as solo-learn's ``BaseMethod`` builds it.

    from solo_clamp.backbones import load_backbone
    backbone = load_backbone("clamp-mnist-resnet18")  # or a .ckpt, or a run directory

``solo-clamp export``, ``linear``, ``finetune``, ``few-label``, ``zoo load`` and ``zoo
publish`` all load through here, and ``geometry`` loads its weights with :func:`load_state`.
:func:`resolve_backbone` returns the weights and the recipe (:class:`BackboneSpec`) without
building anything, so exporting needs neither solo-learn nor a model in memory; solo-learn (an
optional dependency) is imported only when :func:`build_backbone` runs
(:func:`solo_clamp.internals.backbone_builders`). Checkpoints are read by
:mod:`solo_clamp.checkpoints`, zoo models found and downloaded by :mod:`solo_clamp.zoo`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from omegaconf import DictConfig, OmegaConf

from solo_clamp.checkpoints import (
    CheckpointNotFoundError,
    backbone_state,
    load_checkpoint,
    load_run,
    resolve_checkpoint,
)
from solo_clamp.errors import (
    CheckpointError,
    ConfigError,
    SoloClampError,
    UnknownModelError,
    ZooError,
)
from solo_clamp.internals import SOLO_MISSING_MESSAGE, backbone_builders, solo_available
from solo_clamp.io import PathLike
from solo_clamp.zoo.download import download, read_weights
from solo_clamp.zoo.entry import BackboneSpec, ZooEntry
from solo_clamp.zoo.manifest import lookup

SourceLike = Union[str, os.PathLike, ZooEntry]
CIFAR_DATASETS = ("cifar10", "cifar100")
"""Datasets whose ResNets solo-learn builds with the CIFAR stem (see :func:`uses_cifar_stem`)."""


class BackboneError(SoloClampError, ValueError):
    """A backbone solo-learn cannot build, or weights that do not fit it."""


def uses_cifar_stem(backbone_name: str, dataset: str) -> bool:
    """solo-learn's rule: ResNets for CIFAR datasets get a 3x3, stride-1 first convolution
    (padding 2) and no max-pool."""
    return backbone_name.startswith("resnet") and dataset in CIFAR_DATASETS


def spec_from_cfg(cfg: Mapping[str, Any]) -> BackboneSpec:
    """The backbone recipe of a run cfg (``backbone.name``/``kwargs``, ``data.dataset``)."""
    name = str(cfg["backbone"]["name"])
    dataset = str((cfg.get("data") or {}).get("dataset", ""))
    kwargs = dict(cfg["backbone"].get("kwargs") or {})
    return BackboneSpec(name, kwargs, uses_cifar_stem(name, dataset))


def method_of(cfg: Mapping[str, Any]) -> str:
    """The method a run cfg pretrained with (``method``, else ``pretrain_method``)."""
    return str(cfg.get("method") or cfg.get("pretrain_method") or "unknown")


def trained_on(cfg: Mapping[str, Any]) -> str:
    """The dataset a run cfg trained on: the prepared one's name (e.g. ``mnist`` for a
    prepared ImageFolder), else ``data.dataset``."""
    prepared = cfg.get("prepare_data") or {}
    return str(prepared.get("name") or (cfg.get("data") or {}).get("dataset") or "unknown")


def _normalisation(cfg: Mapping[str, Any]) -> dict[str, Any]:
    augmentations = cfg.get("augmentations") or [{}]
    first = augmentations[0] if isinstance(augmentations, list) and augmentations else {}
    if not isinstance(first, Mapping):
        return {}
    return {key: first[key] for key in ("crop_size", "mean", "std") if first.get(key) is not None}


def build_backbone(
    spec: BackboneSpec, method: str = "unknown", seed: Optional[int] = None
) -> torch.nn.Module:
    """The untrained solo-learn backbone of ``spec``: ``fc`` replaced by Identity for ResNets,
    and the CIFAR stem where the spec says so.

    Args:
        method: passed to solo-learn's builder; it picks a method's custom backbone
            (solo-learn's MAE ViTs), and none matches when it is unknown.
        seed: seeds torch's global generator before the weights are drawn.

    Raises:
        ModuleNotFoundError: solo-learn is not installed.
        BackboneError: the name is unknown to solo-learn (lists the known ones).
    """
    if not solo_available():
        raise ModuleNotFoundError(SOLO_MISSING_MESSAGE, name="solo")
    builders = backbone_builders()
    if spec.name not in builders:
        raise BackboneError(f"backbone.name must be one of {sorted(builders)}, got {spec.name!r}.")
    if seed is not None:
        torch.manual_seed(seed)
    backbone = builders[spec.name](method, **spec.kwargs)
    if spec.name.startswith("resnet"):
        backbone.fc = torch.nn.Identity()
        if spec.cifar_stem:
            backbone.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
            backbone.maxpool = torch.nn.Identity()
    return backbone


def load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], failure: str) -> None:
    """Loads ``state`` into ``module`` strictly (cast to the parameters' dtype).

    Raises:
        BackboneError: ``failure``, then torch's list of missing and unexpected keys.
    """
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[1:])
        raise BackboneError(f"{failure} ({detail[:300]}).") from None


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

    @property
    def description(self) -> str:
        return f"{self.origin} ({self.spec.name}, pretrained on {self.dataset})"

    def build(self) -> torch.nn.Module:
        """The solo-learn backbone with these weights, loaded strictly (needs solo-learn)."""
        backbone = build_backbone(self.spec, self.method)
        load_state(
            backbone,
            self.state,
            f"{self.origin}: the weights do not fit backbone {self.spec.name} "
            f"(cifar_stem={self.spec.cifar_stem})",
        )
        return backbone


def _from_checkpoint(path: Path, fallback_cfg: Optional[Mapping[str, Any]]) -> PretrainedBackbone:
    checkpoint_path = resolve_checkpoint(path)
    if (checkpoint_path.parent / "args.json").is_file() or fallback_cfg is None:
        run = load_run(checkpoint_path)
        cfg, checkpoint = run.cfg, run.checkpoint
    else:
        # solo-learn's own linear evaluation needs no args.json: the caller's cfg stands in.
        cfg, checkpoint = fallback_cfg, load_checkpoint(checkpoint_path)
    return PretrainedBackbone(
        spec=spec_from_cfg(cfg),
        method=method_of(cfg),
        state=backbone_state(checkpoint, torch.float32, where=str(checkpoint_path)),
        origin=str(checkpoint_path),
        dataset=trained_on(cfg),
        normalisation=_normalisation(cfg),
    )


def _from_zoo(
    name: Union[str, ZooEntry], index: Optional[PathLike], cache: Optional[PathLike], progress: bool
) -> PretrainedBackbone:
    idx, entry = lookup(name, index)
    path = download(entry, idx, cache=cache, progress=progress)
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
    progress: bool = False,
) -> PretrainedBackbone:
    """The weights and recipe of ``source``: a ``.ckpt`` file, a run directory (its newest
    ``.ckpt``, ``args.json`` beside it), or a zoo model's name or entry (verified, downloaded
    if needed, from the manifest ``index``).

    An existing path wins over a zoo name. ``fallback_cfg`` (a linear-evaluation cfg with
    ``backbone`` and ``data.dataset``) describes a checkpoint that has no ``args.json``.

    Raises:
        CheckpointError: an unreadable checkpoint or cfg, or a backbone-less checkpoint.
        CheckpointNotFoundError: ``source`` is neither an existing path nor a zoo model.
        ZooError: the zoo model's file fails its download or checksum.
    """
    if not isinstance(source, (str, os.PathLike)):  # a manifest entry
        return _from_zoo(source, index, cache, progress)
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        return _from_checkpoint(path, fallback_cfg)
    if _looks_like_path(text):
        raise CheckpointNotFoundError(f"{text}: no such checkpoint or run directory.")
    try:
        return _from_zoo(text, index, cache, progress)
    except UnknownModelError as err:
        raise CheckpointNotFoundError(
            f"{text!r} is neither a checkpoint, a run directory nor a zoo model: {err}"
        ) from err


def load_backbone(
    source: SourceLike,
    index: Optional[PathLike] = None,
    *,
    cache: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> torch.nn.Module:
    """The backbone of ``source`` (as :func:`resolve_backbone` takes it) with its weights, in
    eval mode on ``device`` in ``dtype``, ready for feature extraction.

    Example::

        backbone = load_backbone("clamp-mnist-resnet18")
        feats = backbone(images)  # (N, features_dim)
    """
    backbone = resolve_backbone(source, index=index, cache=cache, progress=progress).build()
    return backbone.to(device=device, dtype=dtype).eval()


def pretrained_from_cfg(cfg: DictConfig) -> Optional[PretrainedBackbone]:
    """The source named by an evaluation cfg's ``pretrained_feature_extractor`` (a checkpoint,
    a run directory, a zoo name; None when it is null, for the untrained backbone), with
    ``cfg.backbone`` set to the source's. Linear, fine-tuning and few-label evaluation call it
    before solo-learn's ``parse_cfg``.

    Raises:
        ConfigError: the field is missing, or ``backbone.name`` names another backbone than
            the source holds. CheckpointError: the source cannot be loaded.
    """
    if OmegaConf.is_missing(cfg, "pretrained_feature_extractor"):
        raise ConfigError(
            "pretrained_feature_extractor: give a checkpoint, a run directory, a "
            "zoo model name, or null for the untrained backbone."
        )
    location = cfg.get("pretrained_feature_extractor")
    if location is None:
        return None
    fallback = OmegaConf.to_container(cfg, resolve=True)
    try:
        source = resolve_backbone(str(location), fallback_cfg=fallback)
    except ZooError as err:  # a download or checksum failure: one line, like the others
        raise CheckpointError(f"pretrained_feature_extractor={location}: {err}") from err
    wanted = (cfg.get("backbone") or {}).get("name")
    if wanted and wanted != source.spec.name:
        raise ConfigError(
            f"backbone.name is {wanted!r} but {source.origin} holds a {source.spec.name!r} "
            f"backbone: set backbone.name={source.spec.name}."
        )
    cfg.backbone = {"name": source.spec.name, "kwargs": dict(source.spec.kwargs)}
    return source
