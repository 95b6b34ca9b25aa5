"""``solo-clamp export``: a pretrained backbone in torchvision, timm or detectron2 layout.

    solo-clamp export SOURCE --to torchvision|timm|detectron2 --out PATH

SOURCE is a ``.ckpt`` file, a run directory or a zoo model name. Needs torch and
torchvision (and safetensors for timm), not solo-learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help="a .ckpt file, a run directory (newest .ckpt, "
        "args.json beside it) or a zoo model name",
    )
    parser.add_argument(  # the targets: solo_clamp.export.TARGETS (checked when it runs)
        "--to",
        required=True,
        dest="target",
        metavar="LIBRARY",
        help="the library that will load the weights: torchvision, timm or detectron2",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PATH",
        help="output file (.pth for torchvision, .safetensors for timm, .pkl for detectron2)",
    )
    parser.add_argument(
        "--index",
        type=Path,
        default=None,
        metavar="PATH",
        help="zoo manifest for a zoo name (default: $SOLO_CLAMP_ZOO_INDEX, else the shipped one)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="zoo download cache (default: $SOLO_CLAMP_CACHE, else the OS cache)",
    )


def run(args: argparse.Namespace) -> int:
    from solo_clamp.backbones import resolve_backbone
    from solo_clamp.export import TARGETS, check_target, detectron2_settings, write_export

    check_target(args.target)  # before a zoo model is downloaded
    source = resolve_backbone(args.source, index=args.index, cache=args.cache_dir)
    spec = source.spec
    out = write_export(source.state, spec.name, spec.cifar_stem, args.target, args.out, spec.kwargs)
    print(f"{source.description} -> {out} [{args.target}]")
    print("load it with: " + TARGETS[args.target].format(name=spec.name, out=out))
    if args.target == "detectron2":
        norm = source.normalisation
        settings = detectron2_settings(spec.name, norm.get("mean"), norm.get("std"))
        print("detectron2 settings for these weights:\n  " + "\n  ".join(settings))
    return 0
