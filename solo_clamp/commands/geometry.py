"""``solo-clamp geometry``: manifold-geometry figures and numbers for a CLAMP checkpoint.

    solo-clamp geometry CKPT --data DIR [--out DIR] [--logs metrics.csv] [--max-images N]

``CKPT`` is a solo-learn checkpoint (a ``.ckpt`` whose ``state_dict`` holds ``backbone.*`` and
``projector.*``) with the run's ``args.json`` beside it. ``--data`` is an ImageFolder
(``DIR/class/image``). Written to ``--out`` (default: ``geometry/`` beside the checkpoint):

* ``geometry.json``: every number below, the settings used and notes;
* ``training_curves.png``: neighbour count and mean radius per epoch, from the Lightning
  ``metrics.csv`` (``--logs``, else the one beside the checkpoint; skipped with a note);
* ``centroid_distances.png``: centroid distances of the sub-manifolds (views at training
  augmentation strength) for the trained model and an untrained one (same architecture,
  fresh init with ``--seed``), in the projector (loss) space and in the backbone space;
* ``similarities.png``: orientation similarity (squared cosine of principal axes) and
  centroid cosine similarity, trained vs untrained;
* ``tsne.png``: t-SNE of the unaugmented backbone features, coloured by class;
* ``invariance.png``: within-image share of the feature variance vs augmentation strength
  ``s``, for the backbone and the projector outputs.

Augmentation strength ``s`` scales the training pipeline of ``augmentations[0]``: the
RandomResizedCrop scale range becomes ``(1 - s * (1 - crop_min_scale), 1)`` and its log
aspect-ratio range ``s * log(3/4) .. s * log(4/3)`` (so ``s = 0`` is the plain resize), and
the colour-jitter strengths are multiplied by ``s`` (probability unchanged). The other
augmentations (grayscale, blur, solarization, flip) are left out. Sub-manifold statistics use
``s = 1`` and the geometry of :mod:`solo_clamp.geometry` with the loss's normalisation.

torch, torchvision, matplotlib, scikit-learn and solo-learn are imported when it runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from solo_clamp.commands import CommandError
from solo_clamp.geometry_figures import (
    histograms,
    plot_invariance,
    plot_training_curves,
    plot_tsne,
    tsne_embedding,
)
from solo_clamp.geometry_views import (
    AugmentedViews,
    augmentation_settings,
    base_transform,
    embed_views,
    scaled_transform,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
CURVE_COLUMNS = {
    "neighbours": "train_clamp_neighbours_epoch",
    "mean_radius": "train_clamp_mean_radius_epoch",
}
# solo-learn normalises these datasets with their own statistics, whatever the cfg says.
DATASET_STATS_NOTE = ("cifar10", "cifar100", "stl10")
# Globals a Lightning checkpoint may pickle besides tensors and containers; plain data.


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the checkpoint, data and output options."""
    parser.add_argument(
        "ckpt", type=Path, help="solo-learn .ckpt (args.json beside it) or its run directory"
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="ImageFolder of evaluation images (DIR/class/image)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: geometry/ beside the checkpoint)",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        default=None,
        metavar="metrics.csv",
        help="Lightning CSV log (default: metrics.csv beside the checkpoint)",
    )
    parser.add_argument(
        "--max-images",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="images sampled from --data for features and t-SNE (default 1000)",
    )
    parser.add_argument(
        "--invariance-images",
        type=_positive_int,
        default=256,
        metavar="N",
        help="images given multiple views: sub-manifolds and invariance "
        "(default 256, at most --max-images)",
    )
    parser.add_argument(
        "--views",
        type=_positive_int,
        default=8,
        metavar="V",
        help="augmented views per image (default 8, at least 2)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        metavar="N",
        help="rows (image views) per forward batch (default 64)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the sampling, augmentations and untrained model",
    )
    parser.add_argument(
        "--device", default="auto", help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


# --------------------------------------------------------------------------- inputs


def _check_inputs(args: argparse.Namespace) -> Path:
    """Validates the paths and sizes; returns the ``args.json`` path. A run directory is
    replaced by its newest ``.ckpt``."""
    from solo_clamp.checkpoints import resolve_checkpoint

    try:
        args.ckpt = resolve_checkpoint(args.ckpt)
    except FileNotFoundError:
        raise CommandError(f"checkpoint not found: {args.ckpt}") from None
    args_json = args.ckpt.parent / "args.json"
    if not args_json.is_file():
        raise CommandError(
            f"no args.json beside the checkpoint ({args_json}): solo-learn writes the run's "
            "cfg there; copy it next to the .ckpt."
        )
    if not args.data.is_dir():
        raise CommandError(f"--data is not a directory: {args.data}")
    if args.logs is not None and not args.logs.is_file():
        raise CommandError(f"--logs file not found: {args.logs}")
    if args.views < 2:
        raise CommandError(
            f"--views must be at least 2 (a sub-manifold needs 2 views), got {args.views}."
        )
    return args_json


def _load_cfg(args_json: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(args_json.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CommandError(f"cannot read {args_json}: {err}") from None
    if not isinstance(cfg, dict) or "augmentations" not in cfg or not cfg["augmentations"]:
        raise CommandError(f"{args_json} is not a solo-learn cfg: no augmentations list.")
    if cfg.get("method", "clamp") != "clamp":
        raise CommandError(
            f"{args_json} describes a method={cfg['method']!r} run; geometry needs a CLAMP "
            "checkpoint (method: clamp)."
        )
    return cfg


def _torch_load(path: Path) -> dict[str, Any]:
    """The checkpoint through the project's safe loader (``weights_only=True``)."""
    from solo_clamp.checkpoints import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as err:
        raise CommandError(str(err)) from None


def _build_model(cfg: dict[str, Any]) -> nn.Module:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    import solo_clamp

    try:
        solo_clamp.register()
        from solo.methods import METHODS
    except ModuleNotFoundError as err:
        raise CommandError(solo_clamp.SOLO_MISSING_MESSAGE) from err
    try:
        model = METHODS["clamp"](OmegaConf.create(cfg))
    except (
        ValueError,
        KeyError,
        AttributeError,
        AssertionError,
        TypeError,
        OmegaConfBaseException,
    ) as err:
        raise CommandError(f"cannot build CLAMP from args.json: {err}") from None
    return model.eval()


def _load_weights(model: nn.Module, ckpt: dict[str, Any], path: Path) -> None:
    """Loads ``backbone.*`` and ``projector.*`` of ``ckpt["state_dict"]`` strictly."""
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CommandError(f"{path} has no state_dict: not a solo-learn/Lightning checkpoint.")
    for part in ("backbone", "projector"):
        sub = {k[len(part) + 1 :]: v for k, v in state.items() if k.startswith(part + ".")}
        if not sub:
            raise CommandError(f"{path}: state_dict has no {part}.* weights.")
        try:
            getattr(model, part).load_state_dict(sub, strict=True)
        except RuntimeError as err:
            detail = " ".join(line.strip() for line in str(err).splitlines()[1:])
            raise CommandError(
                f"{path}: the {part} weights do not match the architecture of args.json "
                f"({detail[:300]})."
            ) from None


def _submanifold_stats(z: torch.Tensor, rs: float, max_range: float) -> dict[str, Any]:
    """Loss-space statistics of ``z [V, B, D]`` (centred and L2-normalised like the loss)."""
    from solo_clamp import geometry as geo

    return {
        "mean_radius": geo.submanifold_radii(z, rs).mean().item(),
        "neighbours_mean": geo.neighbour_counts(z, rs, max_range=max_range).double().mean().item(),
        "centroid_distance_mean": geo.upper_pairs(geo.centroid_distances(z)).mean().item(),
        "centroid_similarity_mean": geo.centroid_similarity(z).mean().item(),
        "orientation_similarity_mean": geo.orientation_similarity(z).mean().item(),
        "own_centroid_fraction": geo.own_centroid_fraction(z).item(),
    }


def _class_stats(feats: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Class radius, separation and effective dimension of unaugmented features ``[N, F]``."""
    from solo_clamp import geometry as geo

    classes, radii = geo.class_radii(feats, labels)
    radius = radii.nanmean().item() if not radii.isnan().all() else None
    separation = geo.mean_class_separation(feats, labels).item() if len(classes) > 1 else None
    ratio = separation / radius if separation is not None and radius else None
    return {
        "participation_ratio": geo.participation_ratio(feats).item(),
        "class_radius_mean": radius,
        "class_separation_mean": separation,
        "separation_over_radius": ratio,
    }


def _read_curves(path: Path) -> tuple[Optional[dict[str, list]], Optional[str]]:
    """Per-epoch neighbour count and mean radius from a Lightning ``metrics.csv``."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        return None, f"cannot read {path}: {err}"
    columns = set(rows[0]) if rows else set()
    missing = [c for c in ("epoch", *CURVE_COLUMNS.values()) if c not in columns]
    if missing:
        return None, f"{path} lacks the column(s) {', '.join(missing)}: curves skipped."
    per_epoch: dict[int, dict[str, float]] = {}
    for row in rows:
        try:
            epoch = int(float(row["epoch"]))
        except (TypeError, ValueError):
            continue
        for key, column in CURVE_COLUMNS.items():
            try:
                per_epoch.setdefault(epoch, {})[key] = float(row[column])
            except (TypeError, ValueError):
                continue
    epochs = sorted(e for e, values in per_epoch.items() if values)
    if not epochs:
        return None, f"{path} holds no per-epoch CLAMP statistics: curves skipped."
    curves: dict[str, list] = {"epoch": epochs}
    for key in CURVE_COLUMNS:
        curves[key] = [per_epoch[e].get(key) for e in epochs]
    return curves, None


# --------------------------------------------------------------------------- run


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise CommandError(f"--device {name!r} is not a torch device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device asks for cuda but torch sees no GPU.")
    return device


def _json_safe(value: Any) -> Any:
    """Replaces NaN and infinities by None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    """Computes the geometry of the checkpoint's embeddings and writes figures and JSON."""
    args_json = _check_inputs(args)
    cfg = _load_cfg(args_json)

    import matplotlib

    matplotlib.use("Agg")
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from solo_clamp import geometry as geo

    device = _device(args.device)
    notes: list[str] = []
    progress = not args.no_progress

    model = _build_model(cfg)
    _load_weights(model, _torch_load(args.ckpt), args.ckpt)
    torch.manual_seed(args.seed)
    untrained = _build_model(cfg)
    model, untrained = model.to(device), untrained.to(device)
    kwargs = model.cfg.method_kwargs
    rs, max_range = float(kwargs.rs), float(kwargs.max_range)

    aug = cfg["augmentations"][0]
    crop = int(aug.get("crop_size", 224))
    if "mean" in aug and "std" in aug:
        mean, std, stats_source = tuple(aug["mean"]), tuple(aug["std"]), "augmentations[0]"
    else:
        from solo_clamp.evaluation import IMAGENET_MEAN, IMAGENET_STD

        mean, std, stats_source = IMAGENET_MEAN, IMAGENET_STD, "imagenet"
        dataset_name = str((cfg.get("data") or {}).get("dataset", ""))
        if dataset_name in DATASET_STATS_NOTE:
            notes.append(
                f"solo-learn normalised {dataset_name} with its own statistics during "
                "training; ImageNet statistics are used here."
            )
    settings, defaults_used = augmentation_settings(aug)
    if defaults_used:
        notes.append(
            "augmentations[0] lacks "
            + ", ".join(defaults_used)
            + ": solo-learn's usual values were used."
        )

    try:
        dataset = ImageFolder(str(args.data))
    except (FileNotFoundError, RuntimeError) as err:
        raise CommandError(f"--data {args.data} is not an ImageFolder: {err}") from None
    num_images = min(args.max_images, len(dataset))
    num_views_images = min(args.invariance_images, num_images)
    if num_views_images < 2:
        raise CommandError(
            f"need at least 2 images (--data holds {len(dataset)}, "
            f"--max-images {args.max_images}, --invariance-images "
            f"{args.invariance_images})."
        )
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))
    indices = order[:num_images].tolist()
    view_indices = indices[:num_views_images]

    out = args.out if args.out is not None else args.ckpt.parent / "geometry"
    out.mkdir(parents=True, exist_ok=True)
    figures: list[str] = []

    # Unaugmented features: t-SNE, participation ratio, class statistics.
    plain = DataLoader(
        AugmentedViews(dataset, indices, base_transform(crop, mean, std), 1),
        batch_size=args.batch_size,
    )
    ((feats, z_plain), (feats_untrained, _)), labels = embed_views(
        [model, untrained], plain, device, "unaugmented", progress
    )
    feats, z_plain, feats_untrained = feats[0], z_plain[0], feats_untrained[0]  # V = 1
    unaugmented = {
        "backbone": _class_stats(feats, labels),
        "projector": {"participation_ratio": geo.participation_ratio(z_plain).item()},
        "untrained_backbone": _class_stats(feats_untrained, labels),
    }
    try:
        plot_tsne(tsne_embedding(feats, args.seed), labels, dataset.classes, out, figures)
    except ValueError as err:
        notes.append(f"t-SNE skipped: {err}")

    # Views at increasing augmentation strength: invariance; at s = 1, sub-manifolds.
    rows = max(1, args.batch_size // args.views)
    invariance: dict[str, list] = {"strengths": list(STRENGTHS), "backbone": [], "projector": []}
    submanifolds: dict[str, Any] = {}
    for step, strength in enumerate(STRENGTHS):
        torch.manual_seed(args.seed + step)
        transform = scaled_transform(strength, crop, settings, mean, std)
        views = AugmentedViews(dataset, view_indices, transform, args.views)
        loader = DataLoader(views, batch_size=rows)
        models = [model, untrained] if strength == 1.0 else [model]
        outputs, _ = embed_views(models, loader, device, f"views s={strength:g}", progress)
        invariance["backbone"].append(geo.within_image_variance_fraction(outputs[0][0]).item())
        invariance["projector"].append(geo.within_image_variance_fraction(outputs[0][1]).item())
        if strength == 1.0:
            for name, (f, z) in zip(("trained", "untrained"), outputs):
                submanifolds[name] = {
                    "projector": _submanifold_stats(z, rs, max_range),
                    "backbone": {
                        "centroid_distance_mean": geo.upper_pairs(geo.centroid_distances(f))
                        .mean()
                        .item(),
                        "own_centroid_fraction": geo.own_centroid_fraction(f).item(),
                    },
                }
            (f_t, z_t), (f_u, z_u) = outputs
            histograms(
                out,
                "centroid_distances.png",
                [
                    (
                        "centroid distance, projector (loss space)",
                        {
                            "trained": geo.upper_pairs(geo.centroid_distances(z_t)),
                            "untrained": geo.upper_pairs(geo.centroid_distances(z_u)),
                        },
                    ),
                    (
                        "centroid distance, backbone (normalised)",
                        {
                            "trained": geo.upper_pairs(geo.centroid_distances(f_t)),
                            "untrained": geo.upper_pairs(geo.centroid_distances(f_u)),
                        },
                    ),
                ],
                figures,
            )
            histograms(
                out,
                "similarities.png",
                [
                    (
                        "orientation similarity (principal axes, cos^2)",
                        {
                            "trained": geo.orientation_similarity(z_t),
                            "untrained": geo.orientation_similarity(z_u),
                        },
                    ),
                    (
                        "centroid cosine similarity",
                        {
                            "trained": geo.centroid_similarity(z_t),
                            "untrained": geo.centroid_similarity(z_u),
                        },
                    ),
                ],
                figures,
            )
    plot_invariance(invariance, out, figures)
    batch_size = (cfg.get("optimizer") or {}).get("batch_size")
    notes.append(
        f"neighbours are counted among {num_views_images} images; training batches "
        f"held {batch_size} images, so the counts are not directly comparable."
    )

    # Training curves from the Lightning CSV log.
    logs = args.logs if args.logs is not None else args.ckpt.parent / "metrics.csv"
    curves = None
    if logs.is_file():
        curves, note = _read_curves(logs)
        if note:
            notes.append(note)
        else:
            plot_training_curves(curves, out, figures)
    else:
        notes.append(
            f"no metrics.csv beside the checkpoint ({logs}): training curves skipped; pass --logs."
        )

    result = {
        "checkpoint": str(args.ckpt),
        "data": str(args.data),
        "seed": args.seed,
        "device": str(device),
        "num_images": num_images,
        "num_classes": len(dataset.classes),
        "view_images": num_views_images,
        "views": args.views,
        "rs": rs,
        "max_range": max_range,
        "normalization": {"mean": list(mean), "std": list(std), "source": stats_source},
        "augmentation": settings,
        "training_curves": (None if curves is None else {"source": str(logs), **curves}),
        "unaugmented": unaugmented,
        "submanifolds": submanifolds,
        "invariance": invariance,
        "figures": figures,
        "notes": notes,
    }
    (out / "geometry.json").write_text(json.dumps(_json_safe(result), indent=2) + "\n")
    print(f"solo-clamp geometry: wrote {len(figures)} figures and geometry.json to {out}")
    return 0
