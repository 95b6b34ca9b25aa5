"""The training cfg as the manifest records it: the YAML's learning rates, no local paths.

solo-learn's ``args.json`` holds the cfg after its ``parse_cfg``: ``optimizer.lr`` (and
``optimizer.classifier_lr`` when there is validation data) multiplied by
``batch_size * devices * num_nodes / 256``, and the data paths of the machine that trained.
The manifest records the per-256 values written in the YAML (the ones the README and the
configs quote) and no absolute paths: the data is described by ``data.dataset`` and, for
prepared subsets, ``prepare_data`` (name, images per class, seed).
"""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Mapping


def lr_scale(cfg: Mapping[str, Any]) -> float:
    """The factor solo-learn's ``parse_cfg`` multiplied the learning rates by.

    ``devices`` counts as solo-clamp passes it to ``parse_cfg``: a list by its length, an
    integer (or digit string) by its value, anything else (``auto``) as one device.
    """
    devices = cfg.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    else:
        count = int(devices) if str(devices).isdigit() else 1
    batch_size = int((cfg.get("optimizer") or {}).get("batch_size") or 256)
    return batch_size * max(count, 1) * int(cfg.get("num_nodes") or 1) / 256


def _is_local_path(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    return (
        PurePosixPath(value).is_absolute()
        or PureWindowsPath(value).is_absolute()
        or value.startswith("~")
    )


def _without_local_paths(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {key: _without_local_paths(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_without_local_paths(value) for value in node]
    return None if _is_local_path(node) else node


def _unscaled(value: Any, scale: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(f"{value / scale:.12g}")  # lr 0.1 at batch 192: 0.1, not 0.10000000000000002


def portable_config(args: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of solo-learn's saved cfg (``args.json``) with the learning rates as written in
    the YAML (per 256 images) and every absolute (or ``~``) path replaced by null."""
    cfg = _without_local_paths(args)
    optimizer = cfg.get("optimizer")
    if not isinstance(optimizer, dict):
        return cfg
    scaled = ["lr"]
    if (args.get("data") or {}).get("val_path") is not None:  # parse_cfg's own condition
        scaled.append("classifier_lr")
    scale = lr_scale(cfg)
    for key in scaled:
        if key in optimizer:
            optimizer[key] = _unscaled(optimizer[key], scale)
    return cfg
