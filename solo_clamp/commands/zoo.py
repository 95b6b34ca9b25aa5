"""``solo-clamp zoo``: list, inspect, download, verify, load and publish zoo models.

    solo-clamp zoo [--index PATH] list
    solo-clamp zoo info NAME [--config]
    solo-clamp zoo download NAME [--cache-dir DIR]
    solo-clamp zoo load NAME [--cache-dir DIR] [--device cpu]
    solo-clamp zoo verify PATH [--sha256 X | --name NAME]
    solo-clamp zoo publish CKPT --name NAME [--dtype fp16] [--knn-top1 X --knn-command "..."]

``--index`` may come before or after the action. Torch, pooch and safetensors are imported
when the command runs; solo-learn only by ``load`` and ``publish``. Zoo errors are
SoloClampErrors: ``solo-clamp`` prints them as one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import yaml

from solo_clamp.commands import CommandError

Handler = Callable[[argparse.Namespace], int]
DTYPES = ("fp16", "fp32")  # those of zoo.publish, whose import would load torch for --help
EVALUATIONS = ("knn", "linear")  # those of the manifest
INDEX_HELP = "the zoo manifest (default: $SOLO_CLAMP_ZOO_INDEX, else the shipped zoo/index.yaml)"
CACHE_HELP = "download cache (default: $SOLO_CLAMP_CACHE, else the OS cache)"
PUBLISH_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("ckpt", {"type": Path, "help": "Lightning .ckpt (args.json beside it) or run folder"}),
    ("--name", {"required": True, "help": "model name ([a-z0-9][a-z0-9._-]*)"}),
    ("--dtype", {"choices": DTYPES, "default": "fp16", "help": "precision (default: fp16)"}),
    ("--out", {"type": Path, "metavar": "DIR", "help": "default: the manifest's folder"}),
    ("--args", {"type": Path, "metavar": "PATH", "help": "default: args.json beside CKPT"}),
    ("--epochs", {"type": int, "help": "default: '-ep=N' + 1, else max_epochs"}),
    (
        "--source",
        {"action": "append", "default": [], "metavar": "URL", "help": "download URL (repeatable)"},
    ),
    ("--hf-repo", {"help": "Hugging Face repo holding the file"}),
    ("--hf-filename", {"help": "file name in --hf-repo"}),
    ("--overwrite", {"action": "store_true", "help": "replace an entry of the same name"}),
    ("--no-check", {"action": "store_true", "help": "skip the test-load into a backbone"}),
]
"""``publish``'s arguments (``--source`` repeats: each a URL the file is downloadable from)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the zoo actions (each also accepts ``--index``)."""
    parser.add_argument("--index", type=Path, metavar="PATH", help=INDEX_HELP)
    index = argparse.ArgumentParser(add_help=False)  # after the action; SUPPRESS keeps one before
    index.add_argument(
        "--index", type=Path, default=argparse.SUPPRESS, metavar="PATH", help=INDEX_HELP
    )
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument("--cache-dir", type=Path, metavar="DIR", help=CACHE_HELP)
    cache.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    actions = parser.add_subparsers(dest="zoo_action", metavar="ACTION", required=True)

    def action(name: str, handler: Handler, help: str, *parents: Any) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, parents=[index, *parents])
        sub.set_defaults(zoo_run=handler)
        return sub

    action("list", _list, "the models of the manifest")
    sub = action("info", _info, "one model's manifest entry and local state", cache)
    sub.add_argument("name")
    sub.add_argument("--config", action="store_true", help="also print the training config")
    sub = action("download", _download, "download (or locate) and verify a model's file", cache)
    sub.add_argument("name")
    sub = action("load", _load, "load a model's backbone and run a test forward", cache)
    sub.add_argument("name")
    sub.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    sub = action("verify", _verify, "check a weights file's sha256")
    sub.add_argument("path", type=Path)
    expected = sub.add_mutually_exclusive_group()
    expected.add_argument("--sha256", help="the expected digest")
    expected.add_argument("--name", help="check against this manifest entry")
    sub = action("publish", _publish, "add a pretrain checkpoint to the zoo")
    for flag, options in PUBLISH_OPTIONS:
        sub.add_argument(flag, **options)
    for kind in EVALUATIONS:
        sub.add_argument(f"--{kind}-top1", type=float, metavar="X", help=f"{kind} top-1 in %%")
        sub.add_argument(f"--{kind}-command", metavar="CMD", help=f"what measured --{kind}-top1")


def _location(idx: Any, entry: Any, cache: Any) -> str:
    from solo_clamp.zoo.download import cache_dir

    if idx.shipped_path(entry) is not None:
        return "shipped"
    return "cached" if (cache_dir(cache) / entry.cache_name).is_file() else "remote"


def _list(args: argparse.Namespace) -> int:
    from solo_clamp.zoo import load_index

    idx = load_index(args.index)
    if not idx.entries:
        print(f"no models in {idx.path}")
        return 0
    rows = [tuple("name method backbone dataset epochs views knn linear MB where".split())]
    for e in idx.entries.values():
        top1 = [f"{e.evaluation[k].top1:.2f}" if k in e.evaluation else "-" for k in EVALUATIONS]
        rows.append(
            (e.name, e.method, e.backbone.name, e.dataset, str(e.epochs), str(e.views), *top1)
            + (f"{e.size / 2**20:.1f}", _location(idx, e, None))
        )
    widths = [max(map(len, column)) for column in zip(*rows)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _info(args: argparse.Namespace) -> int:
    from solo_clamp.zoo import load_index

    idx = load_index(args.index)
    entry = idx.get(args.name)
    data = entry.to_manifest()
    if not args.config:
        data["config"] = f"<{len(entry.config)} top-level keys; --config prints them>"
    print(yaml.safe_dump(data, sort_keys=False).rstrip())
    print(f"location: {_location(idx, entry, args.cache_dir)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from solo_clamp.zoo import download

    print(download(args.name, args.index, cache=args.cache_dir, progress=not args.no_progress))
    return 0


def _load(args: argparse.Namespace) -> int:
    import torch

    from solo_clamp.backbones import resolve_backbone
    from solo_clamp.zoo import load_index

    idx = load_index(args.index)
    entry = idx.get(args.name)
    source = resolve_backbone(entry, index=idx, cache=args.cache_dir, progress=not args.no_progress)
    try:
        backbone = source.build().to(args.device).eval()
    except ModuleNotFoundError as err:  # solo-learn
        raise CommandError(str(err)) from err
    size = int(source.normalisation.get("crop_size", 32))
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
    import pooch

    from solo_clamp.errors import ManifestError
    from solo_clamp.validation import validated
    from solo_clamp.zoo import load_index, verify_file
    from solo_clamp.zoo.entry import Sha256

    if not args.path.is_file():
        raise CommandError(f"{args.path} is not a file.")
    if args.sha256 is not None:
        expected = validated(Sha256, args.sha256.lower(), "--sha256", ManifestError)
        verify_file(args.path, expected)
        print(f"OK {args.path} sha256={expected}")
        return 0
    idx = load_index(args.index)
    if args.name is not None:
        entry = idx.get(args.name)
        verify_file(args.path, entry.sha256, entry.size)
    else:
        digest = pooch.file_hash(str(args.path), alg="sha256")
        entry = next((e for e in idx.entries.values() if e.sha256 == digest), None)
        if entry is None:
            raise CommandError(f"{args.path} (sha256={digest}) matches no entry of {idx.path}.")
    print(f"OK {args.path} matches {entry.name} (sha256={entry.sha256})")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from solo_clamp.zoo.manifest import default_index_path
    from solo_clamp.zoo.publish import publish

    given = {
        k: {"top1": getattr(args, f"{k}_top1"), "command": getattr(args, f"{k}_command")}
        for k in EVALUATIONS
    }  # a figure without its command fails the manifest's check
    evaluation = {k: v for k, v in given.items() if any(x is not None for x in v.values())}
    hub = {"hf_repo": args.hf_repo, "hf_filename": args.hf_filename}
    entry = publish(
        args.ckpt,
        args.name,
        args.index,
        out_dir=args.out,
        dtype=args.dtype,
        args_path=args.args,
        epochs=args.epochs,
        evaluation=evaluation,
        sources=[*args.source, *([hub] if any(hub.values()) else [])],
        overwrite=args.overwrite,
        check=not args.no_check,
    )
    print(
        f"published {entry.name}: {entry.size} bytes, sha256={entry.sha256}, "
        f"format={entry.format} -> {args.index or default_index_path()}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Runs one zoo action."""
    return args.zoo_run(args)
