"""The settings fingerprint of a run, trial or floor, which lets a restart skip a finished one
(:func:`finished_result`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.run_cfg import solo_cfg
from solo_clamp.compare.strength import transfer_config

# Settings that change how a run is displayed or how fast it goes, not its result.
_COSMETIC = (
    "num_workers",
    "enable_progress_bar",
    "log_every_n_steps",
    "enable_model_summary",
    "device",
)


def _plain(node: Any) -> Any:
    """``node`` as plain data, without the :data:`_COSMETIC` keys (at any depth)."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if k not in _COSMETIC}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _fingerprint(*parts: Any) -> str:
    """A short hash of the settings that determine a result."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _eval_settings(cfg: DictConfig, data: ComparisonData, validation: bool) -> dict[str, Any]:
    """What a score depends on besides the backbone; ``validation``: a tuning score, which
    has no linear probe, no few-label probe and no test images."""
    evaluation = _plain(cfg.evaluation)
    evaluation.pop("batch_size", None)
    if validation or not (evaluation.get("few_label") or {}).get("enabled"):
        evaluation.pop("few_label", None)
    if validation:
        evaluation.pop("linear", None)
        evaluation.pop("val_per_class", None)
    settings = {"dataset": cfg.dataset, "data": _plain(cfg.data), "evaluation": evaluation}
    if data.held_out:  # tuning: which training images neither train nor sit in a bank
        settings["held_out"] = list(data.held_out)
    return settings


def run_fingerprint(cfg: DictConfig, spec: RunSpec, data: ComparisonData) -> str:
    solo = _plain(solo_cfg(cfg, spec, data))
    if spec.trial:  # scored by validation kNN only: no curves probe, no linear probe
        evaluation = _eval_settings(cfg, data, validation=True)
        if cfg.tuning.get("curves"):  # a trial without its validation curve is not reused
            return _fingerprint(solo, "validation", evaluation, cfg.curves.every_n_epochs)
        return _fingerprint(solo, "validation", evaluation)
    parts = [solo, _plain(cfg.curves), _eval_settings(cfg, data, validation=False)]
    if OmegaConf.select(cfg, "geometry.enabled"):  # the encoder-against-projector measures
        parts.append(_plain(cfg.geometry))
    return _fingerprint(*parts)


def floor_fingerprint(
    cfg: DictConfig, floor: str, data: ComparisonData, validation: bool = False, seed: int = 0
) -> str:
    """A floor's settings: on the test split (with the curves' probe set, whose reference lines
    it also scores) for the backbone of ``seed``, or, ``validation``, on the tuning's
    validation split like a trial, for the backbone of ``tuning.seed``."""
    crop_size = cfg.augmentations[0].crop_size
    settings: list[Any] = [floor]
    if validation:
        settings += ["validation", _eval_settings(cfg, data, True), crop_size]
        seed = cfg.tuning.seed
    else:
        settings += [_eval_settings(cfg, data, False), crop_size, "probe", cfg.curves.per_class]
    if floor == "untrained":
        settings += [_plain(cfg.backbone), seed, cfg.methods[0]]
    else:
        settings.append(cfg.floors.get("raw_pixel_size"))
    transfer = transfer_config(cfg)
    if transfer is not None and not validation:  # the floors' transfer scores
        settings.append(_plain(transfer))
    return _fingerprint(*settings)


def finished_result(run_dir: Path, expected: str) -> Optional[dict[str, Any]]:
    """The stored ``result.json`` of a finished run with the same settings, else None."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if result.get("fingerprint") == expected else None
