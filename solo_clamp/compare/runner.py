"""The driver: one run, one floor, and the whole (resumable) comparison."""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare.config import FLOORS, torch_threads, validate_config
from solo_clamp.compare.data import ComparisonData, KnnProbe, build_probe, prepare_data
from solo_clamp.compare.evaluation import evaluate_features, untrained_backbone
from solo_clamp.compare.persistence import finished_result, floor_fingerprint, run_fingerprint
from solo_clamp.compare.plan import RunSpec, expected_run_ids, plan_runs, steps_per_epoch
from solo_clamp.compare.report import write_reports
from solo_clamp.compare.training import build_solo_cfg, lr_and_rs, parse, train
from solo_clamp.compare.trials import TuningOutcome, run_tuning, trial_specs
from solo_clamp.compare.tuning import select
from solo_clamp.io import atomic_torch_save, atomic_write_text


def execute_run(
    cfg: DictConfig, spec: RunSpec, data: ComparisonData, probe: Optional[KnnProbe], out: Path
) -> dict[str, Any]:
    """Trains, saves the backbone, evaluates and writes ``result.json`` (last, atomically)."""
    run_dir = out / "runs" / spec.run_id
    (run_dir / "result.json").unlink(missing_ok=True)
    trained = train(cfg, spec, data, probe)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(trained.solo_cfg))
    atomic_torch_save(trained.backbone.state_dict(), run_dir / "backbone.pt")
    start = time.perf_counter()
    scores = evaluate_features(cfg, data, trained.backbone, spec.seed)
    result = {
        "run_id": spec.run_id,
        "kind": "ssl",
        **{k: v for k, v in asdict(spec).items()},
        "epochs": spec.epochs,
        "images_seen": spec.steps * spec.batch_size,
        "views_seen": spec.steps * spec.batch_size * spec.views,
        **dict(zip(("lr", "rs"), lr_and_rs(cfg, spec))),
        "train_s": trained.train_s,
        "curve_s": trained.curve_s,
        "eval_s": time.perf_counter() - start,
        **scores,
        "curve": trained.curve,
        "fingerprint": run_fingerprint(cfg, spec, data),
    }
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return result


def execute_floor(
    cfg: DictConfig, floor: str, data: ComparisonData, probe: Optional[KnnProbe], out: Path
) -> dict[str, Any]:
    """Scores raw pixels or the untrained backbone; writes ``result.json`` atomically.

    ``probe_knn_top1`` is the floor on the training curves' probe set (the curves' reference
    lines); None without a probe, or for raw pixels taken at another size than the crops.
    """
    run_dir = out / "runs" / f"floor-{floor}"
    seed = int(cfg.floors.seed)
    start = time.perf_counter()
    if floor == "raw_pixels":
        raw_size = cfg.floors.get("raw_pixel_size")
        extractor = torch.nn.Flatten()
        scores = evaluate_features(cfg, data, extractor, seed, crop_size=raw_size)
        if raw_size not in (None, cfg.augmentations[0].crop_size):
            probe = None
    else:
        extractor = untrained_backbone(cfg, data, seed)
        atomic_torch_save(extractor.state_dict(), run_dir / "backbone.pt")
        scores = evaluate_features(cfg, data, extractor, seed)
    probe_top1 = probe(extractor) if probe is not None else None
    result = {
        "run_id": f"floor-{floor}",
        "kind": "floor",
        "method": floor,
        "budget": "",
        "seed": seed,
        "views": 0,
        "steps": 0,
        "epochs": 0,
        "batch_size": 0,
        "images_seen": 0,
        "views_seen": 0,
        "train_s": 0.0,
        "curve_s": 0.0,
        "eval_s": time.perf_counter() - start,
        **scores,
        "probe_knn_top1": probe_top1,
        "curve": [],
        "fingerprint": floor_fingerprint(cfg, floor, data),
    }
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return result


@dataclass
class ComparisonSummary:
    out: Path
    trained: list[str]
    skipped: list[str]
    files: list[Path]
    tuning: Optional[TuningOutcome] = None


def run_comparison(
    cfg: DictConfig, out: os.PathLike, log: Callable[[str], None] = print
) -> ComparisonSummary:
    """Runs (or resumes) the whole comparison into ``out`` and writes the reports."""
    validate_config(cfg)
    with torch_threads(cfg):
        return _run_comparison(cfg, Path(out), log)


def write_run_configs(cfg: DictConfig, out: os.PathLike) -> list[Path]:
    """Writes ``compare_config.yaml`` and every planned run's exact solo-learn cfg
    (``runs/<run>/config.yaml``, parsed, method defaults filled: what a trained run writes)
    into ``out`` without training anything. The data is prepared (or located) as for a run:
    the steps per epoch depend on it. With tuning: every trial's cfg
    (``tuning/<trial>/config.yaml``), and the final runs' once every trial has finished in
    ``out`` (their settings are the selection's)."""
    from solo.methods import METHODS

    import solo_clamp

    validate_config(cfg)
    solo_clamp.register()
    out = Path(out)
    atomic_write_text(out / "compare_config.yaml", OmegaConf.to_yaml(cfg))
    data = prepare_data(cfg)
    spe = steps_per_epoch(cfg, data)
    specs: list[tuple[Path, RunSpec]] = []
    settings = None
    if cfg.tuning.enabled:
        trials = trial_specs(cfg, spe)
        specs += [(out / "tuning" / s.run_id, s) for s in trials]
        done = [
            finished_result(out / "tuning" / s.run_id, run_fingerprint(cfg, s, data))
            for s in trials
        ]
        finished = all(done)  # else the selection is not made yet: no final runs
        settings = (
            select((s.method, s.setting, d) for s, d in zip(trials, done)) if finished else {}
        )
    specs += [(out / "runs" / s.run_id, s) for s in plan_runs(cfg, spe, settings)]
    paths = []
    for run_dir, spec in specs:
        solo_cfg = parse(build_solo_cfg(cfg, spec, data))
        solo_cfg = METHODS[spec.method].add_and_assert_specific_cfg(solo_cfg)
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(solo_cfg))
        paths.append(run_dir / "config.yaml")
    return paths


def _pending(
    cfg: DictConfig, out: Path, data: ComparisonData, plan: list[RunSpec]
) -> tuple[dict[str, dict[str, Any]], list[str], list[tuple[str, Any]]]:
    """Finished results (same settings), their ids, and the runs still to do (floors first)."""
    results: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, Any]] = []
    skipped = []
    for floor in FLOORS:
        done = finished_result(out / "runs" / f"floor-{floor}", floor_fingerprint(cfg, floor, data))
        if done:
            results[done["run_id"]] = done
            skipped.append(done["run_id"])
        else:
            todo.append(("floor", floor))
    for spec in plan:
        done = finished_result(out / "runs" / spec.run_id, run_fingerprint(cfg, spec, data))
        if done:
            results[spec.run_id] = done
            skipped.append(spec.run_id)
        else:
            todo.append(("ssl", spec))
    return results, skipped, todo


def _run_comparison(cfg: DictConfig, out: Path, log: Callable[[str], None]) -> ComparisonSummary:
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare_config.yaml", OmegaConf.to_yaml(cfg))
    data = prepare_data(cfg)
    spe = steps_per_epoch(cfg, data)
    tuning: Optional[TuningOutcome] = None
    settings = None  # the tuned setting per method; None: the recipes
    results: dict[str, dict[str, Any]] = {}
    trained: list[str] = []
    skipped: list[str] = []
    files: list[Path] = []
    finished = False
    try:
        if cfg.tuning.enabled:
            tuning = run_tuning(cfg, data, spe, out, log)
            files += [out / "tuning.csv", out / "tuning.md"]
            settings = tuning.selected
            for method in cfg.methods:
                if method in settings:
                    log(f"tuning: {method} selected {settings[method].describe()}")
                else:
                    log(f"tuning: every {method} trial diverged: {method} has no final runs")
            if cfg.tuning.get("only", False):
                log("tuning.only: stopping before the final runs (the test split is not read)")
                finished = True
                return ComparisonSummary(out, trained, skipped, files, tuning)
        results, skipped, todo = _pending(cfg, out, data, plan_runs(cfg, spe, settings))
        if skipped:
            log(f"skipping {len(skipped)} finished run(s): {', '.join(skipped)}")
        if todo:
            log(
                f"{len(todo)} run(s) to do: "
                + ", ".join(
                    f"floor-{item}" if kind == "floor" else item.run_id for kind, item in todo
                )
            )
        probe = build_probe(cfg, data) if todo else None
        with tqdm(
            total=len(skipped) + len(todo),
            initial=len(skipped),
            desc="compare",
            unit="run",
            position=0,
            dynamic_ncols=True,
        ) as bar:
            for kind, item in todo:
                name = f"floor-{item}" if kind == "floor" else item.run_id
                bar.set_postfix_str(name)
                if kind == "floor":
                    results[name] = execute_floor(cfg, item, data, probe, out)
                else:
                    results[name] = execute_run(cfg, item, data, probe, out)
                trained.append(name)
                bar.write(
                    f"{name}: kNN top-1 {results[name]['knn_top1']:.2f}, linear top-1 "
                    f"{results[name]['linear_top1']:.2f} "
                    f"({results[name]['train_s']:.0f} s training)"
                )
                bar.update(1)
                gc.collect()
        finished = True
    finally:  # reports of what is finished, also when interrupted
        ordered = {k: results[k] for k in expected_run_ids(cfg, spe, settings) if k in results}
        files += write_reports(cfg, ordered, out, settings) if ordered else []
        if not finished:
            unfinished = cfg.tuning.enabled and tuning is None
            trials = (
                " (tuning unfinished: tuning.md lists its finished trials)" if unfinished else ""
            )
            log(
                f"stopped: {len(ordered)} finished run(s) are saved in {out}{trials}; the same "
                "command resumes from there (the unfinished run starts over)."
            )
    return ComparisonSummary(out, trained, skipped, files, tuning)
