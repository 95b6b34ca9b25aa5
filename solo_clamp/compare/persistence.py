"""Settings fingerprints and finished results (what a restart skips)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.training import build_solo_cfg


def fingerprint(*parts: Any) -> str:
    """A short hash of the settings that determine a run's result."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Settings that change how a run is displayed or how fast it goes, not its result.
_COSMETIC = (
    "num_workers",
    "enable_progress_bar",
    "log_every_n_steps",
    "enable_model_summary",
    "device",
)


def _container(node: Any) -> Any:
    """``node`` as plain data, without the :data:`_COSMETIC` keys (at any depth)."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        return {k: _container(v) for k, v in node.items() if k not in _COSMETIC}
    if isinstance(node, list):
        return [_container(v) for v in node]
    return node


def _eval_settings(cfg: DictConfig, data: ComparisonData) -> dict[str, Any]:
    evaluation = _container(cfg.evaluation)
    evaluation.pop("batch_size", None)
    settings = {"dataset": cfg.dataset, "data": _container(cfg.data), "evaluation": evaluation}
    if data.held_out:  # tuning: which training images neither train nor sit in a bank
        settings["held_out"] = list(data.held_out)
    return settings


def _validation_settings(cfg: DictConfig, data: ComparisonData) -> dict[str, Any]:
    """What a validation score depends on: the evaluation without the test-only settings."""
    settings = _eval_settings(cfg, data)
    settings["evaluation"].pop("linear", None)
    settings["evaluation"].pop("val_per_class", None)
    return settings


def run_fingerprint(cfg: DictConfig, spec: RunSpec, data: ComparisonData) -> str:
    solo_cfg = _container(build_solo_cfg(cfg, spec, data))
    if spec.trial:  # scored by validation kNN only: no curves probe, no linear probe
        evaluation = _validation_settings(cfg, data)
        if cfg.tuning.get("curves"):  # a trial without its validation curve is not reused
            return fingerprint(solo_cfg, "validation", evaluation, cfg.curves.every_n_epochs)
        return fingerprint(solo_cfg, "validation", evaluation)
    return fingerprint(solo_cfg, _container(cfg.curves), _eval_settings(cfg, data))


def floor_fingerprint(
    cfg: DictConfig, floor: str, data: ComparisonData, validation: bool = False
) -> str:
    """A floor's settings: on the test split (with the curves' probe set, whose reference lines
    it also scores), or, ``validation``, on the tuning's validation split like a trial, for the
    backbone of ``tuning.seed``."""
    crop_size = cfg.augmentations[0].crop_size
    if validation:
        settings: list[Any] = [floor, "validation", _validation_settings(cfg, data), crop_size]
        seed = cfg.tuning.seed
    else:
        settings = [
            floor,
            _eval_settings(cfg, data),
            crop_size,
            "probe",
            cfg.curves.get("per_class"),
        ]
        seed = cfg.floors.seed
    if floor == "untrained":
        settings += [_container(cfg.backbone), seed, cfg.methods[0]]
    else:
        settings.append(cfg.floors.get("raw_pixel_size"))
    return fingerprint(*settings)


def finished_result(run_dir: Path, expected: str) -> Optional[dict[str, Any]]:
    """The stored result of a finished run with the same settings, else None."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if result.get("fingerprint") == expected else None
