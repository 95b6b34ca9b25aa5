"""Publishing a pretrain checkpoint: backbone-only safetensors plus a new manifest entry."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import torch

from solo_clamp.backbones import (
    BackboneError,
    PretrainedBackbone,
    method_of,
    spec_from_cfg,
    trained_on,
)
from solo_clamp.checkpoints import CheckpointError, backbone_state, load_run
from solo_clamp.internals import solo_available
from solo_clamp.io import PathLike
from solo_clamp.version import __version__
from solo_clamp.views import count_views
from solo_clamp.zoo.download import sha256_file
from solo_clamp.zoo.errors import ManifestError, ZooError
from solo_clamp.zoo.index import IndexLike, ZooIndex, index_path, load_index, write_index
from solo_clamp.zoo.manifest import (
    FORMATS,
    BackboneSpec,
    ZooEntry,
    check_name,
    parse_entry,
    parse_source,
)
from solo_clamp.zoo.portable import portable_config
from solo_clamp.zoo.weights import write_weights

DTYPES: dict[str, str] = {"fp16": "safetensors-fp16", "fp32": "safetensors-fp32"}

_EPOCH_RE = re.compile(r"-ep=(\d+)\.ckpt$")


def _cfg_get(cfg: Mapping[str, Any], dotted: str, where: Path) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ZooError(f"{where}: missing '{dotted}' (a solo-learn args.json has it).")
        node = node[part]
    return node


def _epochs(ckpt_path: Path, cfg: Mapping[str, Any]) -> int:
    """solo-learn names checkpoints ``...-ep=N.ckpt`` with N the 0-based epoch just ended."""
    match = _EPOCH_RE.search(ckpt_path.name)
    if match:
        return int(match.group(1)) + 1
    return int(cfg.get("max_epochs") or 1)


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _check_loads(spec: BackboneSpec, method: str, state: dict[str, torch.Tensor]) -> None:
    if not solo_available():
        warnings.warn(
            "solo-learn is not installed: the published weights were not test-loaded.", stacklevel=3
        )
        return
    try:
        PretrainedBackbone(spec, method, state, origin="the checkpoint's backbone").build()
    except BackboneError as err:
        raise ZooError(str(err)) from err


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
    """Publishes a pretrain checkpoint: writes ``<name>.safetensors`` (backbone only) into
    ``out_dir`` (default: the manifest's folder) and adds the entry to the manifest.

    Args:
        ckpt: the Lightning ``.ckpt`` (or a run directory: its newest ``.ckpt``);
            ``args.json`` (solo-learn's saved cfg) sits beside it unless ``args_path`` is
            given.
        name: the model name.
        index: the manifest to update (created when missing); default
            :func:`~solo_clamp.zoo.index.default_index_path`.
        out_dir: where the weights go; outside the manifest's folder the entry gets no
            ``file`` and needs ``sources``.
        dtype: ``fp16`` or ``fp32``.
        epochs: epochs trained; default from the ``-ep=N`` checkpoint name, else max_epochs.
        evaluation: e.g. ``{"knn": {"top1": 97.5, "command": "solo-clamp knn ..."}}``.
        sources: download URLs / ``{hf_repo, hf_filename}`` mappings for the file.
        overwrite: replace an existing entry and weights file of the same name.
        check: rebuild the backbone with solo-learn (when installed) and load the weights
            strictly before anything is written.

    Raises:
        ManifestError, ZooError: with the offending field or file named.
    """
    name = check_name(name, "--name")
    if dtype not in DTYPES:
        raise ManifestError(f"--dtype: {dtype!r} is not supported; allowed: {', '.join(DTYPES)}.")
    fmt = DTYPES[dtype]
    try:
        run = load_run(ckpt, args_path)  # a run directory means its newest .ckpt
        state = backbone_state(run.checkpoint, FORMATS[fmt], where=str(run.checkpoint_path))
    except CheckpointError as err:
        raise ZooError(str(err)) from err
    ckpt, args_file = run.checkpoint_path, run.cfg_path
    cfg = {k: v for k, v in run.cfg.items() if k != "wandb_run_id"}

    path = index_path(index)
    idx = load_index(path) if path.is_file() else ZooIndex(path, {})
    if name in idx.entries and not overwrite:
        raise ManifestError(
            f"--name: {name!r} is already in {idx.path}; pass --overwrite to replace it."
        )
    folder = Path(out_dir) if out_dir is not None else idx.root
    target = folder / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise ZooError(f"{target} exists; pass --overwrite to replace it.")
    sources = list(sources)
    inside = _is_inside(target, idx.root)
    if not inside and not sources:
        raise ManifestError(
            f"--out: {folder} is outside the manifest's folder {idx.root}, so "
            "the file is not shipped: give --source URL or --hf-repo and "
            "--hf-filename so the entry can be downloaded."
        )
    for i, source in enumerate(sources):
        parse_source(source, f"--source[{i}]")

    for required in ("data.dataset", "backbone.name", "method"):
        _cfg_get(cfg, required, args_file)
    dataset, spec, method = trained_on(cfg), spec_from_cfg(cfg), method_of(cfg)
    if check:
        _check_loads(spec, method, state)

    write_weights(
        target,
        state,
        {
            "name": name,
            "method": method,
            "backbone": spec.name,
            "format": fmt,
            "dataset": dataset,
            "solo_clamp_version": __version__,
        },
    )
    raw = {
        "name": name,
        "method": method,
        "backbone": spec.to_manifest(),
        "dataset": dataset,
        "epochs": epochs if epochs is not None else _epochs(ckpt, cfg),
        "views": max(count_views(cfg), 1),
        "evaluation": dict(evaluation or {}),
        "config": portable_config(cfg),
        "size": target.stat().st_size,
        "sha256": sha256_file(target),
        "format": fmt,
        "sources": sources,
    }
    if inside:
        raw["file"] = target.resolve().relative_to(idx.root.resolve()).as_posix()
    try:
        entry = parse_entry(raw, f"entry {name!r}")
    except ManifestError:
        target.unlink(missing_ok=True)
        raise
    write_index(ZooIndex(idx.path, {**idx.entries, name: entry}))
    return entry
