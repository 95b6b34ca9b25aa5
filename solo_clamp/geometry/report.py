"""The geometry report of a pretraining run (CLAMP, ManifoldCLR, or any solo-learn method with
a ``projector``): loads the checkpoint, builds the run's method through solo-learn, embeds an
ImageFolder with the trained and an untrained model, and writes ``geometry.json`` and the
figures. A tool on top of the pure-torch measures of :mod:`solo_clamp.geometry`.

Augmentation strength ``s`` scales the training pipeline of ``augmentations[0]``
(:mod:`solo_clamp.geometry.views`); sub-manifold statistics use ``s = 1`` and the loss's
normalisation (:mod:`solo_clamp.geometry.measures`). The geometry of an image's views does not
depend on the loss; only the radius scale does: CLAMP's ``rs`` and ``max_range``, else the
unscaled radius (``rs = 1``, no range cap).

For a method whose facts have a ``learned_transport`` hook (ManifoldCLR's operators), the report
adds the held-out transport check (:mod:`solo_clamp.geometry.report_transport`), written to
``transport_check.json`` and under ``transport_check`` in ``geometry.json``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from solo.methods import METHODS
from torch import nn
from torchvision.datasets import ImageFolder

from solo_clamp.backbones import BackboneError, load_state
from solo_clamp.checkpoints import CheckpointNotFoundError, Run, backbone_state, load_run
from solo_clamp.errors import GeometryError
from solo_clamp.evaluation import IMAGENET_MEAN, IMAGENET_STD
from solo_clamp.geometry.embedding import Embedder
from solo_clamp.geometry.figures import plot_training_curves
from solo_clamp.geometry.report_transport import learned_transport, transport_check
from solo_clamp.geometry.stats import read_curves
from solo_clamp.geometry.views import augmentation_settings
from solo_clamp.methods import facts_of  # importing it puts solo-clamp's methods in METHODS

# solo-learn normalises these datasets with their own statistics, whatever the cfg says.
DATASET_STATS_NOTE = ("cifar10", "cifar100", "stl10")
BUILD_ERRORS = (ValueError, KeyError, AttributeError, AssertionError, TypeError)
"""What solo-learn raises for a cfg it cannot build a method from (OmegaConf's errors too)."""


def _load_run(checkpoint: os.PathLike) -> Run:
    """The run, checked to have a solo-learn cfg with an ``augmentations`` list."""
    try:
        run = load_run(checkpoint)
    except CheckpointNotFoundError:
        raise GeometryError(f"checkpoint not found: {checkpoint}") from None
    cfg, where = run.cfg, run.cfg_path
    if not cfg.get("augmentations"):
        raise GeometryError(f"{where} is not a solo-learn cfg: no augmentations list.")
    return run


def _build_model(cfg: dict[str, Any], where: Path) -> nn.Module:
    """The run's method, built through ``solo.methods.METHODS[cfg.method]``, in eval mode."""
    method = str(cfg.get("method"))
    if method not in METHODS:
        raise GeometryError(
            f"{where}: method={method!r} is not a solo-learn method; known: {sorted(METHODS)}."
        )
    try:
        model = METHODS[method](OmegaConf.create(cfg))
    except (*BUILD_ERRORS, OmegaConfBaseException) as err:
        raise GeometryError(f"cannot build {method} from args.json: {err}") from None
    if not isinstance(getattr(model, "projector", None), nn.Module):
        raise GeometryError(
            f"{where}: method={method!r} has no projector; geometry measures the backbone's "
            "and the projector's features."
        )
    return model.eval()


def _fact(method: str, name: str) -> Any:
    """The fact ``name`` of ``method``; None for a solo-learn method solo-clamp has no facts
    for."""
    try:
        return getattr(facts_of(method), name)
    except ValueError:
        return None


def _radius_scale(model: nn.Module, method: str, notes: list[str]) -> tuple[float, float]:
    """``(rs, max_range)`` of the sub-manifold radii and neighbour counts: the method's
    ``facts.radius_scale`` (CLAMP's ``rs`` and ``max_range``), else the unscaled radius and no
    range cap (with a note)."""
    scale = _fact(method, "radius_scale")
    if scale is not None:
        return scale(model.cfg.method_kwargs)
    notes.append(
        f"method {method!r} has no radius scale: sub-manifold radii are unscaled (rs = 1) and "
        "neighbours are counted without a range cap (max_range null)."
    )
    return 1.0, math.inf


def _load_weights(model: nn.Module, run: Run) -> None:
    """Loads the checkpoint's ``backbone.*`` and ``projector.*`` strictly."""
    path = run.checkpoint_path
    for part in ("backbone", "projector"):
        state = backbone_state(run.checkpoint, prefix=part, where=str(path))
        failure = f"{path}: the {part} weights do not match the architecture of args.json"
        try:
            load_state(getattr(model, part), state, failure)
        except BackboneError as err:
            raise GeometryError(str(err)) from None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise GeometryError(f"--device {name!r} is not a torch device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GeometryError("--device asks for cuda but torch sees no GPU.")
    return device


def _normalization(cfg: dict[str, Any], notes: list[str]):
    """``(mean, std, source)`` of the input normalisation: ``augmentations[0]``'s, else
    ImageNet's (with a note for datasets solo-learn normalises with their own)."""
    aug = cfg["augmentations"][0]
    if "mean" in aug and "std" in aug:
        return tuple(aug["mean"]), tuple(aug["std"]), "augmentations[0]"
    dataset_name = str((cfg.get("data") or {}).get("dataset", ""))
    if dataset_name in DATASET_STATS_NOTE:
        notes.append(
            f"solo-learn normalised {dataset_name} with its own statistics during "
            "training; ImageNet statistics are used here."
        )
    return IMAGENET_MEAN, IMAGENET_STD, "imagenet"


def _sample(dataset, max_images: int, invariance_images: int, seed: int):
    """The image indices for features (``max_images``) and for views (a prefix of them)."""
    num_images = min(max_images, len(dataset))
    num_views_images = min(invariance_images, num_images)
    if num_views_images < 2:
        raise GeometryError(
            f"need at least 2 images (--data holds {len(dataset)}, "
            f"--max-images {max_images}, --invariance-images {invariance_images})."
        )
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    indices = order[:num_images].tolist()
    return indices, indices[:num_views_images]


def _json_safe(value: Any) -> Any:
    """Replaces NaN and infinities by None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _training_curves(logs: Path, method: str, out: Path, figures: list[str], notes: list[str]):
    """The ``training_curves`` entry of ``geometry.json``: the per-epoch statistics the
    method's ``facts.curve_keys`` name, read from its log (None, with a note, when the method
    logs none or the log gives none); plots them."""
    metrics = _fact(method, "curve_keys")
    if not metrics:
        notes.append(
            f"method {method!r} logs no per-epoch geometry statistics: training curves skipped."
        )
        return None
    if not logs.is_file():
        notes.append(
            f"no metrics.csv beside the checkpoint ({logs}): training curves skipped; pass --logs."
        )
        return None
    curves, note = read_curves(logs, metrics)
    if note:
        notes.append(note)
        return None
    plot_training_curves(curves, out, figures)
    return {"source": str(logs), **curves}


def write_report(
    checkpoint: os.PathLike,
    data: os.PathLike,
    out: Optional[os.PathLike] = None,
    *,
    logs: Optional[os.PathLike] = None,
    max_images: int = 1000,
    invariance_images: int = 256,
    views: int = 8,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Computes the geometry of a pretraining checkpoint's embeddings of the ImageFolder ``data``
    and writes ``geometry.json`` and the figures into ``out`` (default: ``geometry/`` beside
    the checkpoint); ``logs`` is the run's ``metrics.csv`` (default: beside the checkpoint).
    The other arguments are the ``solo-clamp geometry`` options of the same names.

    Returns:
        ``(out, result)``: the folder and the contents of ``geometry.json``.

    Raises:
        GeometryError, CheckpointError: with the offending file or option named.
    """
    run = _load_run(checkpoint)
    cfg = run.cfg
    torch_device = _device(device)
    notes: list[str] = []
    model = _build_model(cfg, run.cfg_path)
    _load_weights(model, run)
    method = str(cfg["method"])
    learned = learned_transport(model, run, _fact(method, "learned_transport"), method, notes)
    torch.manual_seed(seed)
    untrained = _build_model(cfg, run.cfg_path)
    models = [model.to(torch_device), untrained.to(torch_device)]
    rs, max_range = _radius_scale(model, method, notes)

    aug = cfg["augmentations"][0]
    crop = int(aug.get("crop_size", 224))
    mean, std, stats_source = _normalization(cfg, notes)
    settings, defaults_used = augmentation_settings(aug)
    if defaults_used:
        lacking = ", ".join(defaults_used)
        notes.append(f"augmentations[0] lacks {lacking}: solo-learn's usual values were used.")
    try:
        dataset = ImageFolder(str(data))
    except (FileNotFoundError, RuntimeError) as err:
        raise GeometryError(f"--data {data} is not an ImageFolder: {err}") from None
    indices, view_indices = _sample(dataset, max_images, invariance_images, seed)

    out = Path(out) if out is not None else run.checkpoint_path.parent / "geometry"
    out.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []
    embedder = Embedder(dataset, models, torch_device, crop, mean, std, batch_size, seed, progress)
    unaugmented = embedder.unaugmented(indices, out, figures, notes)
    invariance, submanifolds = embedder.augmented(
        view_indices, views, settings, rs, max_range, out, figures
    )
    batch = (cfg.get("optimizer") or {}).get("batch_size")
    notes.append(
        f"neighbours are counted among {len(view_indices)} images; training batches "
        f"held {batch} images, so the counts are not directly comparable."
    )
    logs = Path(logs) if logs is not None else run.checkpoint_path.parent / "metrics.csv"
    curves = _training_curves(logs, method, out, figures, notes)
    transport = None
    if learned is not None:
        loading = (torch_device, batch_size, progress)
        transport = transport_check(
            learned, model, cfg, dataset, indices, (mean, std), loading, seed, notes
        )
        if transport is not None:
            (out / "transport_check.json").write_text(
                json.dumps(_json_safe(transport), indent=2) + "\n"
            )

    result = {
        "checkpoint": str(run.checkpoint_path),
        "method": method,
        "data": str(data),
        "seed": seed,
        "device": str(torch_device),
        "num_images": len(indices),
        "num_classes": len(dataset.classes),
        "view_images": len(view_indices),
        "views": views,
        "rs": rs,
        "max_range": max_range,
        "normalization": {"mean": list(mean), "std": list(std), "source": stats_source},
        "augmentation": settings,
        "training_curves": curves,
        "unaugmented": unaugmented,
        "submanifolds": submanifolds,
        "invariance": invariance,
        "transport_check": transport,
        "figures": figures,
        "notes": notes,
    }
    (out / "geometry.json").write_text(json.dumps(_json_safe(result), indent=2) + "\n")
    return out, result
