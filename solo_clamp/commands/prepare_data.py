"""``solo-clamp prepare-data``: MNIST / Fashion-MNIST idx files -> ImageFolder."""

from __future__ import annotations

import argparse

from solo_clamp.data.prepare import DATASETS, prepare_image_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--root", default="datasets", help="output directory (default: datasets)")
    parser.add_argument("--source", default=None, help="directory holding the idx files")
    parser.add_argument("--train-per-class", type=int, default=None)
    parser.add_argument("--val-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    # missing or corrupted idx files and bad counts are SoloClampErrors: one line, exit 2
    prepared = prepare_image_folder(
        args.dataset, args.root, args.source, args.train_per_class, args.val_per_class, args.seed
    )
    print(f"train: {prepared.train} ({prepared.train_images} images)")
    print(f"val:   {prepared.val} ({prepared.val_images} images)")
    return 0
