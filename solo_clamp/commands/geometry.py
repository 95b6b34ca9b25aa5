"""``solo-clamp geometry``: manifold-geometry figures and numbers for a checkpoint (CLAMP, or
any solo-learn method with a projector).

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
  ``s``, for the backbone and the projector outputs;
* ``transport_check.json`` (methods with learned transport operators, e.g. ManifoldCLR): the
  held-out transport check, also under ``transport_check`` in ``geometry.json`` and printed:
  on the images of ``--data`` outside the run's ``data.train_path``, two views each from the
  run's training pipeline, the error ratio ``MSE(map(z0), z1) / MSE(z0, z1)`` and the angular
  ratio ``(1 - cos(map(z0), z1)) / (1 - cos(z0, z1))`` of the operators with the posterior's
  ``c`` beside maps that need no learned operator (the best global and per-pair scalar,
  another pair's ``c``, the mean ``c``, a prior draw); the generators' eigenvalue real parts,
  norms and usage; and the nearest-neighbour label accuracy of prior samples against noise of
  equal norm (:mod:`solo_clamp.geometry.report_transport`).

Augmentation strength ``s`` scales the training pipeline of ``augmentations[0]``: the
RandomResizedCrop scale range becomes ``(1 - s * (1 - crop_min_scale), 1)`` and its log
aspect-ratio range ``s * log(3/4) .. s * log(4/3)`` (so ``s = 0`` is the plain resize), and
the colour-jitter strengths are multiplied by ``s`` (probability unchanged). The other
augmentations (grayscale, blur, solarization, flip) are left out. Sub-manifold statistics use
``s = 1`` and the geometry of :mod:`solo_clamp.geometry` with the loss's normalisation.

The work is done by :func:`solo_clamp.geometry.report.write_report`; torch, torchvision,
matplotlib, scikit-learn and solo-learn are imported when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from solo_clamp.commands import CommandError, require_solo


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


def run(args: argparse.Namespace) -> int:
    """Checks the options, then writes the report; its errors exit with status 2."""
    if not args.data.is_dir():
        raise CommandError(f"--data is not a directory: {args.data}")
    if args.logs is not None and not args.logs.is_file():
        raise CommandError(f"--logs file not found: {args.logs}")
    if args.views < 2:
        raise CommandError(
            f"--views must be at least 2 (a sub-manifold needs 2 views), got {args.views}."
        )
    require_solo()
    from solo_clamp.geometry.report import write_report

    # GeometryError and CheckpointError are SoloClampErrors: solo-clamp prints them as one line
    out, result = write_report(
        args.ckpt,
        args.data,
        args.out,
        logs=args.logs,
        max_images=args.max_images,
        invariance_images=args.invariance_images,
        views=args.views,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    print(f"solo-clamp geometry: wrote {len(result['figures'])} figures and geometry.json to {out}")
    check = result.get("transport_check")
    if check:
        from solo_clamp.geometry.report_transport import transport_table

        neighbours = check["prior_neighbours"]
        print(
            f"held-out transport check ({check['images']} images, 2 views each; ratios to the "
            "identity's; transport_check.json):"
        )
        print(transport_table(check))
        print(
            f"nearest-neighbour label accuracy: unaugmented {neighbours['unaugmented']:.3f}, "
            f"prior samples {neighbours['prior']:.3f}, noise of equal norm "
            f"{neighbours['equal_norm_noise']:.3f}"
        )
    return 0
