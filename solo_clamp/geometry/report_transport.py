"""The geometry report's held-out transport check, for a run whose method has learned transport
operators (``facts.learned_transport``: ManifoldCLR's): on the images of ``--data`` that are not
in the run's ``data.train_path``, two views each from the run's own training pipeline
(``augmentations[0]``), the model in eval mode, the posterior's ``c`` beside maps that need no
learned operator and the coefficients' usage (:mod:`solo_clamp.geometry.transport`), the
generators' spectrum and norms, and the nearest-neighbour label accuracy of prior samples
against noise of equal norm (:mod:`solo_clamp.geometry.operators`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from solo_clamp.checkpoints import Run
from solo_clamp.errors import GeometryError
from solo_clamp.geometry.operators import prior_neighbour_check, spectrum_summary
from solo_clamp.geometry.transport import LearnedTransport, held_out_transport
from solo_clamp.geometry.views import (
    AugmentedViews,
    augmentation_settings,
    base_transform,
    embed_views,
    scaled_transform,
)
from solo_clamp.training.transforms import build_transform_pipeline

TRANSPORT_SAMPLES = 8
"""Prior samples per image in the nearest-neighbour check (the official ``AugmentationNNEval``
draws 8)."""


def learned_transport(
    model: nn.Module,
    run: Run,
    hook: Optional[Callable[[nn.Module, Mapping[str, Any]], Optional[LearnedTransport]]],
    method: str,
    notes: list[str],
) -> Optional[LearnedTransport]:
    """The run's operators and coefficient networks, loaded from its checkpoint by the
    method's ``facts.learned_transport`` ``hook``; None (with a note when the run's operators
    are off) when there are none."""
    if hook is None:
        return None
    try:
        learned = hook(model, run.checkpoint)
    except (RuntimeError, KeyError) as err:
        raise GeometryError(
            f"{run.checkpoint_path}: the transport operators do not match args.json: {err}"
        ) from None
    if learned is None:
        notes.append(
            f"method {method!r}: this run's transport operators are off (an ablation): no "
            "transport check."
        )
    return learned


def _not_trained_on(
    cfg: dict[str, Any], dataset: ImageFolder, indices: list[int], notes: list[str]
) -> tuple[list[int], Optional[int]]:
    """The images of ``indices`` that are not files of the run's ``data.train_path``, and how
    many were left out (None, with a note, when that folder is not on this machine)."""
    train_path = (cfg.get("data") or {}).get("train_path")
    if not train_path or not Path(str(train_path)).is_dir():
        notes.append(
            f"transport check: the run's data.train_path ({train_path}) is not a folder here, "
            "so --data could not be checked for training images; give held-out images."
        )
        return indices, None
    trained = {
        os.path.realpath(os.path.join(root, name))
        for root, _, names in os.walk(str(train_path))
        for name in names
    }
    kept = [i for i in indices if os.path.realpath(dataset.samples[i][0]) not in trained]
    if len(kept) < len(indices):
        notes.append(
            f"transport check: {len(indices) - len(kept)} of the {len(indices)} images of --data "
            f"are in the run's data.train_path ({train_path}) and were left out."
        )
    return kept, len(indices) - len(kept)


def transport_check(
    learned: LearnedTransport,
    model: nn.Module,
    cfg: dict[str, Any],
    dataset: ImageFolder,
    indices: list[int],
    normalization: tuple[Sequence[float], Sequence[float]],
    loading: tuple[torch.device, int, bool],
    seed: int,
    notes: list[str],
) -> Optional[dict[str, Any]]:
    """The held-out transport check (module docstring) of ``learned`` on the images
    ``indices`` of ``dataset``; None (with a note) when fewer than 2 held-out images remain.
    ``normalization``: the report's ``(mean, std)``; ``loading``: its ``(device, batch_size,
    progress)``."""
    held_out, left_out = _not_trained_on(cfg, dataset, indices, notes)
    if len(held_out) < 2:
        notes.append("transport check skipped: fewer than 2 held-out images in --data.")
        return None
    aug = cfg["augmentations"][0]
    crop = int(aug.get("crop_size", 224))
    mean, std = normalization
    dataset_name = str((cfg.get("data") or {}).get("dataset", "custom"))
    try:
        pipeline = build_transform_pipeline(dataset_name, OmegaConf.create(aug))
        source = "the run's training pipeline (augmentations[0])"
    except (AttributeError, KeyError, TypeError, OmegaConfBaseException) as err:
        settings, _ = augmentation_settings(aug)
        pipeline = scaled_transform(1.0, crop, settings, mean, std)
        source = "the report's views at s = 1 (augmentations[0] is incomplete)"
        notes.append(
            f"transport check: augmentations[0] does not build solo-learn's pipeline ({err}); "
            "its views are the report's crops and colour jitter at s = 1."
        )
    torch.manual_seed(seed)
    random.seed(seed)  # solo-learn's blur draws its sigma from Python's generator
    views, _ = _embed_backbone(model, dataset, held_out, pipeline, 2, "transport views", loading)
    plain_transform = base_transform(crop, mean, std)
    plain, labels = _embed_backbone(
        model, dataset, held_out, plain_transform, 1, "transport bank", loading
    )
    model.cpu()  # the measures run on the CPU, where the features are
    generator = torch.Generator().manual_seed(seed)
    check = held_out_transport(learned, views[0], views[1], generator)
    return {
        "images": len(held_out),
        "left_out_training_images": left_out,
        "views": f"2 per image, {source}",
        "seed": seed,
        **check,
        "generators": spectrum_summary(learned.psi),
        "prior_neighbours": prior_neighbour_check(
            learned, plain[0], labels, TRANSPORT_SAMPLES, generator
        ),
    }


def _embed_backbone(
    model: nn.Module,
    dataset: ImageFolder,
    indices: list[int],
    transform,
    views: int,
    desc: str,
    loading: tuple[torch.device, int, bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features ``[V, N, F]`` of ``views`` views of the images ``indices``, and their
    labels (the projector runs too: :func:`embed_views` measures both)."""
    device, batch_size, progress = loading
    loader = DataLoader(
        AugmentedViews(dataset, indices, transform, views),
        batch_size=max(1, batch_size // views),
    )
    ((feats, _),), labels = embed_views([model], loader, device, desc, progress)
    return feats, labels


def transport_table(check: dict[str, Any]) -> str:
    """The rows of a :func:`held_out_transport` result as text: one line per map with its
    error and angular ratios to the identity's and their intervals, then each learned row's
    difference from each control."""

    def cell(value: list[float]) -> str:
        return f"{value[0]:.4f} [{value[1]:.4f}, {value[2]:.4f}]"

    intervals = check.get("intervals", {})
    width = 22
    lines = [f"{'map':<{width}} {'error ratio':>26} {'angular ratio':>26}"]
    for name, row in check["rows"].items():
        ci = intervals.get("rows", {}).get(name)
        if ci:
            lines.append(
                f"{name:<{width}} {cell(ci['error_ratio']):>26} {cell(ci['angular_ratio']):>26}"
            )
        else:
            lines.append(
                f"{name:<{width}} {row['error_ratio']:>26.4f} {row['angular_ratio']:>26.4f}"
            )
    if intervals.get("differences"):
        confidence = round(100 * intervals["confidence"])
        lines.append(
            f"learned row minus control ({confidence} % bootstrap over pairs; < 0: beats it)"
        )
        for name, diff in intervals["differences"].items():
            lines.append(
                f"{name:<34} {cell(diff['error_ratio']):>26} {cell(diff['angular_ratio']):>26}"
            )
    return "\n".join(lines)
