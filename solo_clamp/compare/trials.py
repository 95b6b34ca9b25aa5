"""The tuning stage's work: training and scoring each trial on the validation split, the
validation floors, and the loop that runs (or resumes) every trial."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.fingerprints import finished_result, floor_fingerprint, run_fingerprint
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.scores import floor_extractor, validation_scores
from solo_clamp.compare.training import KnnProbe, build_probe, train
from solo_clamp.compare.tuning import Tuning, settle
from solo_clamp.evaluation import FLOORS
from solo_clamp.io import atomic_write_text
from solo_clamp.provenance import environment


def execute_trial(
    cfg: DictConfig,
    spec: RunSpec,
    data: ComparisonData,
    out: Path,
    probe: Optional[KnnProbe],
    stamp: dict[str, Any],
) -> dict[str, Any]:
    """Trains one trial and scores it on the validation split; a diverged trial (non-finite
    loss, weights or features) is recorded with ``status: diverged``. ``result.json`` last.
    ``probe``: the validation probe of ``tuning.curves`` (the curve's kNN per epoch);
    ``stamp``: the data's provenance."""
    trial_dir = out / "tuning" / spec.run_id
    (trial_dir / "result.json").unlink(missing_ok=True)
    result: dict[str, Any] = {
        "run_id": spec.run_id,
        "kind": "trial",
        "method": spec.method,
        "seed": spec.seed,
        "views": spec.views,
        "epochs": spec.epochs,
        "steps": spec.steps,
        "lr": spec.setting.lr,
        "lr_multiplier": spec.setting.lr_multiplier,
        "tuned": spec.setting.tuned,
    }
    start = time.perf_counter()
    try:
        trained = train(cfg, spec, data, probe, fail_on_divergence=True)
        atomic_write_text(trial_dir / "config.yaml", OmegaConf.to_yaml(trained.solo_cfg))
        scores = validation_scores(cfg, data, trained.backbone)
    except FloatingPointError as err:
        result.update(status="diverged", error=str(err), val_knn_top1=None, curve=[])
        result["train_s"] = time.perf_counter() - start
    else:
        result.update(status="ok", error="", train_s=trained.train_s, **scores)
        result["curve"] = trained.curve
    result["fingerprint"] = run_fingerprint(cfg, spec, data)
    result.update(environment(), **stamp)
    atomic_write_text(trial_dir / "result.json", json.dumps(result, indent=2))
    return result


def validation_floors(
    cfg: DictConfig, data: ComparisonData, out: Path, stamp: dict[str, Any]
) -> dict[str, Any]:
    """Raw pixels and the untrained backbone every trial starts from (seed ``tuning.seed``),
    scored on the validation split as the trials are, each kept in
    ``tuning/floor-<name>/result.json`` and reused while its settings are unchanged."""
    floors = {}
    seed = int(cfg.tuning.seed)
    for name in FLOORS:
        floor_dir = out / "tuning" / f"floor-{name}"
        expected = floor_fingerprint(cfg, name, data, validation=True)
        floor = finished_result(floor_dir, expected)
        if floor is None:
            extractor, crop_size = floor_extractor(cfg, data, name, seed)
            scores = validation_scores(cfg, data, extractor, crop_size)
            floor = {"run_id": f"floor-{name}", "kind": "floor", "method": name, "seed": seed}
            floor.update(scores, fingerprint=expected, **environment(), **stamp)
            atomic_write_text(floor_dir / "result.json", json.dumps(floor, indent=2))
        floors[name] = floor
    return floors


def run_tuning(
    cfg: DictConfig,
    data: ComparisonData,
    out: Path,
    tuning: Tuning,
    stamp: dict[str, Any],
    log: Callable[[str], None] = print,
    saved: Callable[[], Any] = lambda: None,
) -> Tuning:
    """Runs (or resumes) every trial of ``tuning``, bracketing as it goes (:func:`settle`), and
    selects each method's setting once all have finished; ``tuning`` holds what is finished
    also when interrupted. ``saved`` is called after the floors and after every trial."""
    tuning.floors = validation_floors(cfg, data, out, stamp)
    saved()
    log(
        "tuning: validation floors: "
        + ", ".join(f"{name} {floor['val_knn_top1']:.2f}" for name, floor in tuning.floors.items())
    )
    todo = settle(cfg, data, out, tuning, log)
    if tuning.skipped:
        log(f"tuning: skipping {len(tuning.skipped)} finished trial(s)")
    probe = build_probe(cfg, data, validation=True) if todo and cfg.tuning.get("curves") else None
    with tqdm(total=len(tuning.specs), initial=len(tuning.results), desc="tuning") as bar:
        while todo:
            log(f"tuning: {len(todo)} trial(s) to do: " + ", ".join(s.run_id for s in todo))
            bar.total = len(tuning.specs)
            bar.refresh()
            for spec in todo:
                bar.set_postfix_str(spec.run_id)
                result = execute_trial(cfg, spec, data, out, probe, stamp)
                tuning.results[spec.run_id] = result
                tuning.trained.append(spec.run_id)
                saved()
                bar.write(
                    f"{spec.run_id}: validation kNN top-1 {result['val_knn_top1']:.2f}"
                    if result["status"] == "ok"
                    else f"{spec.run_id}: diverged ({result['error']})"
                )
                bar.update(1)
                gc.collect()
            if probe is None and cfg.tuning.get("curves"):
                probe = build_probe(cfg, data, validation=True)
            todo = settle(cfg, data, out, tuning, log)
    return tuning
