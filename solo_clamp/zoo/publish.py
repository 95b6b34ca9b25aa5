"""Publishing a pretrain checkpoint: backbone-only safetensors plus a new manifest entry.

The entry's ``config`` is the training cfg made portable. solo-learn's ``args.json`` holds it
after ``parse_cfg``, which multiplied ``optimizer.lr`` (and ``optimizer.classifier_lr`` when
there is validation data) by ``batch_size * devices * num_nodes / 256``, with the data paths of
the machine that trained. The manifest records the per-256 values the YAML holds (the ones the
README and the configs quote) and no absolute paths: ``data.dataset`` and, for a prepared
subset, ``prepare_data`` (name, images per class, seed) describe the data.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import asdict
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Mapping, Optional, Union

from safetensors.torch import save

from solo_clamp.backbones import PretrainedBackbone, method_of, spec_from_cfg, trained_on
from solo_clamp.checkpoints import backbone_state, load_run
from solo_clamp.errors import CheckpointError, ManifestError, ZooError
from solo_clamp.internals import solo_available
from solo_clamp.io import PathLike, atomic_path
from solo_clamp.version import __version__
from solo_clamp.views import count_views
from solo_clamp.zoo.entry import FORMATS, ZooEntry, check_name, parse_entry
from solo_clamp.zoo.manifest import IndexLike, ZooIndex, index_path, load_index, write_index

DTYPES = {"fp16": "safetensors-fp16", "fp32": "safetensors-fp32"}
_EPOCH_RE = re.compile(r"-ep=(\d+)\.ckpt$")  # solo-learn's N: the 0-based epoch just ended


def _without_local_paths(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {key: _without_local_paths(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_without_local_paths(value) for value in node]
    local = isinstance(node, str) and (
        node.startswith("~")
        or PurePosixPath(node).is_absolute()
        or PureWindowsPath(node).is_absolute()
    )
    return None if local else node


def portable_config(args: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of solo-learn's saved cfg (``args.json``) with the learning rates per 256 images,
    as the YAML writes them, and every absolute (or ``~``) path replaced by null."""
    cfg = _without_local_paths(args)
    optimizer = cfg.get("optimizer")
    if not isinstance(optimizer, dict):
        return cfg
    devices = cfg.get("devices", 1)  # as solo-clamp passes it: a list, a count, or "auto" (1)
    devices = len(devices) if isinstance(devices, (list, tuple)) else devices
    count = max(int(devices) if str(devices).isdigit() else 1, 1)
    scale = int(optimizer.get("batch_size") or 256) * count * int(cfg.get("num_nodes") or 1) / 256
    scaled = ["lr"]
    if (args.get("data") or {}).get("val_path") is not None:  # parse_cfg's own condition
        scaled.append("classifier_lr")
    for key in scaled:
        value = optimizer.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # lr 0.1 at batch 192: 0.1, not 0.10000000000000002
            optimizer[key] = float(f"{value / scale:.12g}")
    return cfg


def publish(
    ckpt: PathLike,
    name: str,
    index: IndexLike = None,
    *,
    out_dir: Optional[PathLike] = None,
    dtype: str = "fp16",
    args_path: Optional[PathLike] = None,
    epochs: Optional[int] = None,
    evaluation: Optional[Mapping[str, Mapping[str, Any]]] = None,
    sources: Iterable[Union[str, Mapping[str, str]]] = (),
    overwrite: bool = False,
    check: bool = True,
) -> ZooEntry:
    """Writes ``<name>.safetensors`` (the backbone only) into ``out_dir`` (default: the
    manifest's folder) and adds its entry to the manifest ``index`` (created when missing).

    Args:
        ckpt: the Lightning ``.ckpt``, or a run directory (its newest ``.ckpt``), with
            solo-learn's ``args.json`` beside it unless ``args_path`` is given.
        out_dir: outside the manifest's folder, the entry gets no ``file`` and needs
            ``sources`` (URLs, ``{hf_repo, hf_filename}`` mappings).
        dtype: ``fp16`` or ``fp32``.
        epochs: default from the ``-ep=N`` checkpoint name (N + 1), else ``max_epochs``.
        evaluation: e.g. ``{"knn": {"top1": 97.5, "command": "solo-clamp knn ..."}}``.
        overwrite: replace an entry and weights file of the same name.
        check: load the weights strictly into a solo-learn backbone (when installed).

    The entry is validated before anything is written.

    Raises:
        CheckpointError: the checkpoint or its cfg. ManifestError, ZooError: the entry or its
            file. BackboneError: the weights do not fit their backbone.
    """
    name = check_name(name, "--name")  # before it makes a path
    if dtype not in DTYPES:
        raise ManifestError(f"--dtype: {dtype!r} is not supported; allowed: {', '.join(DTYPES)}.")
    fmt = DTYPES[dtype]
    run = load_run(ckpt, args_path)  # a run directory means its newest .ckpt
    state = backbone_state(run.checkpoint, FORMATS[fmt], where=str(run.checkpoint_path))
    cfg = {k: v for k, v in run.cfg.items() if k != "wandb_run_id"}

    path = index_path(index)
    idx = load_index(path) if path.is_file() else ZooIndex(path, {})
    if name in idx.entries and not overwrite:
        raise ManifestError(
            f"--name: {name!r} is already in {idx.path}; pass --overwrite to replace it."
        )
    target = Path(out_dir or idx.root) / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise ZooError(f"{target} exists; pass --overwrite to replace it.")
    shipped = target.resolve().is_relative_to(idx.root.resolve())
    sources = list(sources)
    if not shipped and not sources:
        raise ManifestError(
            f"--out: {target.parent} is outside the manifest's folder {idx.root}, so the file "
            "is not shipped: give --source URL or --hf-repo and --hf-filename so the entry "
            "can be downloaded."
        )
    for dotted in ("data.dataset", "backbone.name", "method"):
        node: Any = cfg
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is None:
            raise CheckpointError(
                f"{run.cfg_path}: missing '{dotted}' (a solo-learn args.json has it)."
            )
    dataset, spec, method = trained_on(cfg), spec_from_cfg(cfg), method_of(cfg)
    if check and solo_available():
        PretrainedBackbone(spec, method, state, origin="the checkpoint's backbone").build()
    elif check:
        message = "solo-learn is not installed: the published weights were not test-loaded."
        warnings.warn(message, stacklevel=2)
    metadata = {"name": name, "method": method, "backbone": spec.name, "format": fmt}
    data = save(state, {**metadata, "dataset": dataset, "solo_clamp_version": __version__})
    if epochs is None:
        match = _EPOCH_RE.search(run.checkpoint_path.name)
        epochs = int(match.group(1)) + 1 if match else int(cfg.get("max_epochs") or 1)
    raw = {
        "name": name,
        "method": method,
        "backbone": asdict(spec),
        "dataset": dataset,
        "epochs": epochs,
        "views": max(count_views(cfg), 1),
        "evaluation": dict(evaluation or {}),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": fmt,
        "sources": sources,
        "config": portable_config(cfg),
    }
    if shipped:
        raw["file"] = target.resolve().relative_to(idx.root.resolve()).as_posix()
    entry = parse_entry(raw, f"entry {name!r}")  # before anything is written
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    write_index(ZooIndex(idx.path, {**idx.entries, name: entry}))
    return entry
