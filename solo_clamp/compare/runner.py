"""The driver: one run, one floor, and the whole (resumable) comparison."""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf
from solo.methods import METHODS
from tqdm.auto import tqdm

import solo_clamp
from solo_clamp.compare.archive import restore_archive, save_archive
from solo_clamp.compare.config import torch_threads, validate_config
from solo_clamp.compare.data import ComparisonData, data_sha256, prepare_data
from solo_clamp.compare.encoder_projector import floor_measures, run_measures
from solo_clamp.compare.fingerprints import finished_result, floor_fingerprint, run_fingerprint
from solo_clamp.compare.plan import (
    FloorSpec,
    RunSpec,
    expected_run_ids,
    method_of,
    plan_floors,
    plan_runs,
    steps_per_epoch,
)
from solo_clamp.compare.report import write_reports
from solo_clamp.compare.run_cfg import parse, solo_cfg
from solo_clamp.compare.scores import (
    check_few_label,
    few_label_settings,
    floor_extractor,
    test_features,
    test_split_scores,
)
from solo_clamp.compare.strength import strength_of
from solo_clamp.compare.training import KnnProbe, build_probe, train
from solo_clamp.compare.trials import run_tuning
from solo_clamp.compare.tuning import Tuning, settle, trial_specs
from solo_clamp.io import atomic_torch_save, atomic_write_text
from solo_clamp.methods import facts_of
from solo_clamp.provenance import environment


def _augmenter(cfg: DictConfig, spec: RunSpec, trained):
    """The method's feature augmenter (few-label ``feature_augment``), from the trained
    model's whole state; None when the method has none, augmentation is off or the run has no
    trained augmentation (an ablation of it)."""
    settings = few_label_settings(cfg)
    build = facts_of(method_of(cfg, spec.method)).feature_augmenter
    if settings is None or not settings.samples or build is None:
        return None
    return build(trained.solo_cfg, trained.state)


def execute_run(
    cfg: DictConfig,
    spec: RunSpec,
    data: ComparisonData,
    probe: Optional[KnnProbe],
    out: Path,
    stamp: dict[str, Any],
) -> dict[str, Any]:
    """Trains, saves the backbone, evaluates and writes ``result.json`` (last, atomically);
    ``stamp``: the provenance of the data (``data_sha256``), the rest is read at the end."""
    run_dir = out / "runs" / spec.run_id
    (run_dir / "result.json").unlink(missing_ok=True)
    trained = train(cfg, spec, data, probe)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(trained.solo_cfg))
    atomic_torch_save(trained.backbone.state_dict(), run_dir / "backbone.pt")
    if trained.projector is not None:  # the encoder-against-projector measures read it
        atomic_torch_save(trained.projector.state_dict(), run_dir / "projector.pt")
    start = time.perf_counter()
    augmenter = _augmenter(cfg, spec, trained)
    features = test_features(cfg, data, trained.backbone)
    scores = test_split_scores(
        cfg, data, trained.backbone, spec.seed, augmenter=augmenter, features=features
    )
    scores.update(run_measures(cfg, data, spec, trained.backbone, trained.projector, features))
    setting = spec.setting
    result = {
        "run_id": spec.run_id,
        "kind": "run",
        **{k: getattr(spec, k) for k in ("method", "budget", "seed", "views", "steps")},
        "variant": spec.variant,
        "strength": strength_of(cfg, spec.variant),
        **{k: getattr(spec, k) for k in ("steps_per_epoch", "batch_size")},
        "epochs": spec.epochs,
        "images_seen": spec.steps * spec.batch_size,
        "views_seen": spec.steps * spec.batch_size * spec.views,
        "lr": setting.lr if setting else float(cfg.recipes[spec.method].optimizer.lr),
        "lr_multiplier": setting.lr_multiplier if setting else None,
        "tuned": setting.tuned if setting else {},
        "train_s": trained.train_s,
        "curve_s": trained.curve_s,
        "eval_s": time.perf_counter() - start,
        **scores,
        "curve": trained.curve,
        "fingerprint": run_fingerprint(cfg, spec, data),
        **environment(),
        **stamp,
    }
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return result


def execute_floor(
    cfg: DictConfig,
    spec: FloorSpec,
    data: ComparisonData,
    probe: Optional[KnnProbe],
    out: Path,
    stamp: dict[str, Any],
) -> dict[str, Any]:
    """Scores raw pixels or the untrained backbone of ``spec.seed``; writes ``result.json``
    atomically.

    ``probe_knn_top1`` is the floor on the training curves' probe set (the curves' reference
    lines); None without a probe, or for raw pixels taken at another size than the crops.
    """
    run_dir, floor = out / "runs" / spec.run_id, spec.floor
    seed = spec.seed if spec.seed is not None else 0  # raw pixels: the linear probe's seed
    start = time.perf_counter()
    extractor, crop_size = floor_extractor(cfg, data, floor, seed)
    if floor == "untrained":
        atomic_torch_save(extractor.state_dict(), run_dir / "backbone.pt")
    scores = test_split_scores(cfg, data, extractor, seed, crop_size=crop_size)
    scores.update(floor_measures(cfg, data, extractor, crop_size))
    on_probe = probe is not None and crop_size in (None, cfg.augmentations[0].crop_size)
    result = {
        "run_id": spec.run_id,
        "kind": "floor",
        "method": floor,
        "budget": "",
        "seed": spec.seed,
        **dict.fromkeys(("views", "steps", "epochs", "batch_size", "images_seen"), 0),
        "views_seen": 0,
        "train_s": 0.0,
        "curve_s": 0.0,
        "eval_s": time.perf_counter() - start,
        **scores,
        "probe_knn_top1": probe(extractor) if on_probe else None,
        "curve": [],
        "fingerprint": floor_fingerprint(cfg, floor, data, seed=seed),
        **environment(),
        **stamp,
    }
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return result


@dataclass
class ComparisonSummary:
    out: Path
    trained: list[str]
    skipped: list[str]
    files: list[Path]
    tuning: Optional[Tuning] = None


def run_comparison(
    cfg: DictConfig,
    out: os.PathLike,
    log: Callable[[str], None] = print,
    archive: Optional[os.PathLike] = None,
) -> ComparisonSummary:
    """Runs (or resumes) the whole comparison into ``out`` and writes the reports. With
    ``archive`` (:mod:`solo_clamp.compare.archive`), its finished results are restored into
    ``out`` first and every newly finished run or trial is saved into it at once."""
    validate_config(cfg)
    out = Path(out)
    if archive is not None and Path(archive).exists():
        restored = restore_archive(Path(archive), out)
        if restored:
            log(f"restored {len(restored)} finished run(s) and trial(s) from {archive}")
    saved = partial(save_archive, out, Path(archive)) if archive is not None else (lambda: None)
    with torch_threads(cfg):
        return _run_comparison(cfg, out, log, saved)


def write_run_configs(cfg: DictConfig, out: os.PathLike) -> list[Path]:
    """Writes ``compare_config.yaml`` and every planned run's exact solo-learn cfg
    (``runs/<run>/config.yaml``, parsed, method defaults filled: what a trained run writes)
    into ``out`` without training anything. The data is prepared (or located) as for a run:
    the steps per epoch depend on it. With tuning: every trial's cfg
    (``tuning/<trial>/config.yaml``), and the final runs' once every trial has finished in
    ``out`` (their settings are the selection's)."""
    validate_config(cfg)
    solo_clamp.register()
    out = Path(out)
    atomic_write_text(out / "compare_config.yaml", OmegaConf.to_yaml(cfg))
    data = prepare_data(cfg)
    spe = steps_per_epoch(cfg, data)
    specs: list[tuple[Path, RunSpec]] = []
    settings = None
    if cfg.tuning.enabled:
        tuning = Tuning(trial_specs(cfg, spe))
        unfinished = settle(cfg, data, out, tuning, log=lambda _: None)
        specs += [(out / "tuning" / s.run_id, s) for s in tuning.specs]
        # until every trial has finished, the selection is not made: no final runs
        settings = {} if unfinished else tuning.selected
    specs += [(out / "runs" / s.run_id, s) for s in plan_runs(cfg, spe, settings)]
    paths = []
    for run_dir, spec in specs:
        solo = METHODS[method_of(cfg, spec.method)].add_and_assert_specific_cfg(
            parse(solo_cfg(cfg, spec, data))
        )
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(solo))
        paths.append(run_dir / "config.yaml")
    return paths


def _pending(
    cfg: DictConfig, out: Path, data: ComparisonData, plan: list[RunSpec]
) -> tuple[dict[str, dict[str, Any]], list[str], list[tuple[str, Any]]]:
    """Finished results (same settings), their ids, and the runs still to do (floors first)."""
    results: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, Any]] = []
    candidates = [
        (f.run_id, "floor", f, floor_fingerprint(cfg, f.floor, data, seed=f.seed or 0))
        for f in plan_floors(cfg)
    ] + [(s.run_id, "run", s, run_fingerprint(cfg, s, data)) for s in plan]
    for run_id, kind, item, expected in candidates:
        done = finished_result(out / "runs" / run_id, expected)
        if done:
            results[run_id] = done
        else:
            todo.append((kind, item))
    return results, list(results), todo


def _run_comparison(
    cfg: DictConfig, out: Path, log: Callable[[str], None], saved: Callable[[], Any]
) -> ComparisonSummary:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare_config.yaml", OmegaConf.to_yaml(cfg))
    data = prepare_data(cfg)
    spe = steps_per_epoch(cfg, data)
    check_few_label(cfg, data)
    tuning = Tuning(trial_specs(cfg, spe)) if cfg.tuning.enabled else None
    settings = None  # the tuned setting per method; None: the recipes
    results: dict[str, dict[str, Any]] = {}
    summary = ComparisonSummary(out, [], [], [], tuning)
    finished = False
    try:
        if tuning is not None:
            stamp = {"data_sha256": data_sha256(cfg, data, validation=True)}
            run_tuning(cfg, data, out, tuning, stamp, log, saved)
            settings = tuning.selected
            for method in cfg.methods:
                if method in settings:
                    log(f"tuning: {method} selected {settings[method].describe()}")
                else:
                    log(f"tuning: every {method} trial diverged: {method} has no final runs")
            if cfg.tuning.get("only", False):
                log("tuning.only: stopping before the final runs (the test split is not read)")
                finished = True
                return summary
        results, summary.skipped, todo = _pending(cfg, out, data, plan_runs(cfg, spe, settings))
        if summary.skipped:
            log(f"skipping {len(summary.skipped)} finished run(s): {', '.join(summary.skipped)}")
        names = [item.run_id for _, item in todo]
        if todo:
            log(f"{len(todo)} run(s) to do: " + ", ".join(names))
        probe = build_probe(cfg, data) if todo else None
        stamp = {"data_sha256": data_sha256(cfg, data)} if todo else {}
        with tqdm(
            total=len(summary.skipped) + len(todo),
            initial=len(summary.skipped),
            desc="compare",
            unit="run",
            position=0,
            dynamic_ncols=True,
        ) as bar:
            for name, (kind, item) in zip(names, todo):
                bar.set_postfix_str(name)
                execute = execute_floor if kind == "floor" else execute_run
                result = results[name] = execute(cfg, item, data, probe, out, stamp)
                saved()
                summary.trained.append(name)
                bar.write(
                    f"{name}: kNN top-1 {result['knn_top1']:.2f}, linear top-1 "
                    f"{result['linear_top1']:.2f} ({result['train_s']:.0f} s training)"
                )
                bar.update(1)
                gc.collect()
        finished = True
    finally:  # reports of what is finished, also when interrupted
        saved()
        ordered = {k: results[k] for k in expected_run_ids(cfg, spe, settings) if k in results}
        summary.files += write_reports(cfg, ordered, out, tuning)
        if not finished:
            unfinished = tuning is not None and not tuning.finished
            trials = " (tuning unfinished: results.md lists its finished trials)"
            trials = trials if unfinished else ""
            log(
                f"stopped: {len(ordered)} finished run(s) are saved in {out}{trials}; the same "
                "command resumes from there (the unfinished run starts over)."
            )
    return summary
