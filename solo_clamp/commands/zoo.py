"""``solo-clamp zoo``: list, inspect, download, verify, load and publish zoo models.

    solo-clamp zoo [--index PATH] list
    solo-clamp zoo info NAME
    solo-clamp zoo download NAME [--cache-dir DIR]
    solo-clamp zoo load NAME [--cache-dir DIR] [--device cpu]
    solo-clamp zoo verify PATH [--sha256 X | --name NAME]
    solo-clamp zoo publish CKPT --name NAME [--dtype fp16] [--knn-top1 X --knn-command "..."]

``--index`` may come before or after the action. Torch, pooch and safetensors are imported
when the command runs; solo-learn only by ``load`` and ``publish``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Callable

import yaml

from solo_clamp.commands import CommandError

ACTIONS = ("list", "info", "download", "load", "verify", "publish")


def _add_index(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--index",
        type=Path,
        default=default,
        metavar="PATH",
        help="the zoo manifest (default: $SOLO_CLAMP_ZOO_INDEX, else the "
        "repository's zoo/index.yaml)",
    )


def _add_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="download cache (default: $SOLO_CLAMP_CACHE, else the OS cache)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not 0 <= value <= 100 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"expected a percentage in [0, 100], got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the zoo actions (each also accepts ``--index``)."""
    _add_index(parser, None)
    actions = parser.add_subparsers(dest="zoo_action", metavar="ACTION")
    actions.required = True

    sub = actions.add_parser("list", help="the models of the manifest")
    _add_index(sub, argparse.SUPPRESS)

    sub = actions.add_parser("info", help="one model's manifest entry and local state")
    sub.add_argument("name")
    sub.add_argument("--config", action="store_true", help="also print the training config")
    _add_index(sub, argparse.SUPPRESS)
    _add_cache(sub)

    sub = actions.add_parser("download", help="download (or locate) and verify a model's file")
    sub.add_argument("name")
    _add_index(sub, argparse.SUPPRESS)
    _add_cache(sub)

    sub = actions.add_parser("load", help="load a model's backbone and run a test forward")
    sub.add_argument("name")
    sub.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    _add_index(sub, argparse.SUPPRESS)
    _add_cache(sub)

    sub = actions.add_parser("verify", help="check a weights file's sha256")
    sub.add_argument("path", type=Path)
    expected = sub.add_mutually_exclusive_group()
    expected.add_argument("--sha256", help="the expected digest")
    expected.add_argument("--name", help="check against this manifest entry")
    _add_index(sub, argparse.SUPPRESS)

    sub = actions.add_parser("publish", help="add a pretrain checkpoint to the zoo")
    sub.add_argument(
        "ckpt",
        type=Path,
        help="Lightning .ckpt with args.json beside it (or a run directory: its newest .ckpt)",
    )
    sub.add_argument("--name", required=True, help="model name ([a-z0-9][a-z0-9._-]*)")
    sub.add_argument(
        "--dtype", choices=("fp16", "fp32"), default="fp16", help="stored precision (default: fp16)"
    )
    sub.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the weights go (default: the manifest's folder)",
    )
    sub.add_argument(
        "--args",
        type=Path,
        default=None,
        metavar="PATH",
        help="the training cfg (default: args.json beside the checkpoint)",
    )
    sub.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs trained (default: from '-ep=N' in the name, else max_epochs)",
    )
    for kind in ("knn", "linear"):
        sub.add_argument(
            f"--{kind}-top1",
            type=_percent,
            default=None,
            metavar="X",
            help=f"{kind} top-1 accuracy in percent",
        )
        sub.add_argument(
            f"--{kind}-command",
            default=None,
            metavar="CMD",
            help=f"the command that measured --{kind}-top1",
        )
    sub.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="URL",
        help="https:// URL the file will be downloadable from (repeatable)",
    )
    sub.add_argument("--hf-repo", default=None, help="Hugging Face repo holding the file")
    sub.add_argument("--hf-filename", default=None, help="file name in --hf-repo")
    sub.add_argument(
        "--overwrite", action="store_true", help="replace an entry / weights file of the same name"
    )
    sub.add_argument(
        "--no-check",
        action="store_true",
        help="skip the strict test-load into a solo-learn backbone",
    )
    _add_index(sub, argparse.SUPPRESS)


def _fmt_top1(entry: Any, kind: str) -> str:
    value = entry.evaluation.get(kind)
    return f"{value.top1:.2f}" if value else "-"


def _where(idx: Any, entry: Any, cache: Any) -> str:
    from solo_clamp import zoo

    if idx.shipped_path(entry) is not None:
        return "shipped"
    if (zoo.cache_dir(cache) / entry.cache_name).is_file():
        return "cached"
    return "remote"


def _list(args: argparse.Namespace) -> int:
    from solo_clamp import zoo

    idx = zoo.load_index(args.index)
    if not idx.entries:
        print(f"no models in {idx.path}")
        return 0
    header = tuple("name method backbone dataset epochs views knn linear MB where".split())
    rows = [header] + [
        (
            e.name,
            e.method,
            e.backbone.name,
            e.dataset,
            str(e.epochs),
            str(e.views),
            _fmt_top1(e, "knn"),
            _fmt_top1(e, "linear"),
            f"{e.size / 2**20:.1f}",
            _where(idx, e, None),
        )
        for e in idx.entries.values()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _info(args: argparse.Namespace) -> int:
    from solo_clamp import zoo

    idx = zoo.load_index(args.index)
    entry = idx.get(args.name)
    data = entry.to_manifest()
    if not args.config:
        data["config"] = f"<{len(entry.config)} top-level keys; --config prints them>"
    print(yaml.safe_dump(data, sort_keys=False).rstrip())
    print(f"location: {_where(idx, entry, args.cache_dir)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from solo_clamp import zoo

    path = zoo.download(args.name, args.index, cache=args.cache_dir, progress=not args.no_progress)
    print(path)
    return 0


def _load(args: argparse.Namespace) -> int:
    import torch

    from solo_clamp import zoo
    from solo_clamp.backbones import load_backbone

    idx = zoo.load_index(args.index)
    entry = idx.get(args.name)
    try:
        backbone = load_backbone(
            entry, idx, cache=args.cache_dir, device=args.device, progress=not args.no_progress
        )
    except ModuleNotFoundError as err:
        raise CommandError(str(err)) from err
    size = 32
    augmentations = entry.config.get("augmentations") or [{}]
    if isinstance(augmentations, list) and isinstance(augmentations[0], dict):
        size = int(augmentations[0].get("crop_size") or size)
    with torch.no_grad():
        feats = backbone(torch.zeros(2, 3, size, size, device=args.device))
    params = sum(p.numel() for p in backbone.parameters())
    print(
        f"{entry.name}: {type(backbone).__name__} ({entry.backbone.name}, "
        f"cifar_stem={entry.backbone.cifar_stem}), {params / 1e6:.2f} M parameters, "
        f"features {tuple(feats.shape[1:])} for {size}x{size} inputs"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from solo_clamp import zoo

    if not args.path.is_file():
        raise CommandError(f"{args.path} is not a file.")
    if args.sha256 is not None:
        expected = zoo.check_sha256(args.sha256.lower(), "--sha256")
        zoo.verify_file(args.path, expected)
        print(f"OK {args.path} sha256={expected}")
        return 0
    idx = zoo.load_index(args.index)
    if args.name is not None:
        entry = idx.get(args.name)
        zoo.verify_file(args.path, entry.sha256, entry.size)
        print(f"OK {args.path} matches {entry.name} (sha256={entry.sha256})")
        return 0
    digest = zoo.sha256_file(args.path)
    entry = zoo.find_by_sha256(idx, digest)
    if entry is None:
        raise CommandError(f"{args.path} (sha256={digest}) matches no entry of {idx.path}.")
    print(f"OK {args.path} matches {entry.name} (sha256={digest})")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from solo_clamp import zoo
    from solo_clamp.zoo.publish import publish

    evaluation = {}
    for kind in ("knn", "linear"):
        top1, command = getattr(args, f"{kind}_top1"), getattr(args, f"{kind}_command")
        if (top1 is None) != (command is None):
            raise CommandError(
                f"--{kind}-top1 and --{kind}-command go together: give both "
                "(the figure and the command that measured it) or neither."
            )
        if top1 is not None:
            evaluation[kind] = {"top1": top1, "command": command}
    sources: list[Any] = list(args.source)
    if (args.hf_repo is None) != (args.hf_filename is None):
        raise CommandError("--hf-repo and --hf-filename go together.")
    if args.hf_repo is not None:
        sources.append({"hf_repo": args.hf_repo, "hf_filename": args.hf_filename})
    if args.epochs is not None and args.epochs < 1:
        raise CommandError(f"--epochs must be >= 1, got {args.epochs}.")
    try:
        entry = publish(
            args.ckpt,
            args.name,
            args.index,
            out_dir=args.out,
            dtype=args.dtype,
            args_path=args.args,
            epochs=args.epochs,
            evaluation=evaluation,
            sources=sources,
            overwrite=args.overwrite,
            check=not args.no_check,
        )
    except ModuleNotFoundError as err:
        raise CommandError(str(err)) from err
    index = args.index or zoo.default_index_path()
    print(
        f"published {entry.name}: {entry.size} bytes, sha256={entry.sha256}, "
        f"format={entry.format} -> {index}"
    )
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": _list,
    "info": _info,
    "download": _download,
    "load": _load,
    "verify": _verify,
    "publish": _publish,
}


def run(args: argparse.Namespace) -> int:
    """Runs one zoo action; zoo errors become ``CommandError`` (exit status 2)."""
    from solo_clamp.backbones import BackboneError
    from solo_clamp.zoo import ZooError

    try:
        return HANDLERS[args.zoo_action](args)
    except (ZooError, BackboneError) as err:
        raise CommandError(str(err)) from err
