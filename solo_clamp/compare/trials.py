"""The tuning stage: every trial of the grid (resumable, like the runs), the selection, and
``tuning.csv`` / ``tuning.md``. Trials live in ``tuning/<method>-<setting>-s<seed>/``."""

from __future__ import annotations

import csv
import gc
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare.data import ComparisonData, KnnProbe, build_probe
from solo_clamp.compare.evaluation import validation_floor, validation_scores
from solo_clamp.compare.persistence import finished_result, floor_fingerprint, run_fingerprint
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.training import lr_and_rs, train
from solo_clamp.compare.tuning import Setting, lr_multipliers, method_grid, select
from solo_clamp.io import atomic_path, atomic_write_text

TUNING_COLUMNS = (
    "run_id",
    "method",
    "lr_multiplier",
    "lr",
    "rs",
    "seed",
    "epochs",
    "steps",
    "status",
    "val_knn_top1",
    "val_knn_top5",
    "selected",
    "train_s",
    "error",
)


def trial_specs(cfg: DictConfig, steps_per_epoch: int) -> list[RunSpec]:
    """Every trial, grid-point-major (an interrupted tuning leaves the methods level)."""
    grids = {method: method_grid(cfg, method) for method in cfg.methods}
    size = min(len(grid) for grid in grids.values())  # equal, by validate_tuning
    return [
        RunSpec(
            method,
            "equal_epochs",
            int(cfg.tuning.seed),
            int(cfg.recipes[method].get("views", 2)),
            int(cfg.tuning.epochs) * steps_per_epoch,
            steps_per_epoch,
            int(cfg.batch_size),
            grids[method][point],
            trial=True,
        )
        for point in range(size)
        for method in cfg.methods
    ]


def execute_trial(
    cfg: DictConfig,
    spec: RunSpec,
    data: ComparisonData,
    out: Path,
    probe: Optional[KnnProbe] = None,
) -> dict[str, Any]:
    """Trains one trial and scores it on the validation split; a diverged trial (non-finite
    loss, weights or features) is recorded with ``status: diverged``. ``result.json`` last.
    ``probe``: the validation probe of ``tuning.curves`` (the curve's kNN per epoch)."""
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
        "lr_multiplier": spec.setting.lr_multiplier,
    }
    result["lr"], result["rs"] = lr_and_rs(cfg, spec)
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
    atomic_write_text(trial_dir / "result.json", json.dumps(result, indent=2))
    return result


def validation_floors(cfg: DictConfig, data: ComparisonData, out: Path) -> dict[str, Any]:
    """Raw pixels and the untrained backbone on the validation split, each kept in
    ``tuning/floor-<name>/result.json`` and reused while its settings are unchanged."""
    floors = {}
    for name in ("raw_pixels", "untrained"):
        floor_dir = out / "tuning" / f"floor-{name}"
        expected = floor_fingerprint(cfg, name, data, validation=True)
        floor = finished_result(floor_dir, expected)
        if floor is None:
            floor = {**validation_floor(cfg, data, name), "fingerprint": expected}
            atomic_write_text(floor_dir / "result.json", json.dumps(floor, indent=2))
        floors[name] = floor
    return floors


@dataclass
class TuningOutcome:
    specs: list[RunSpec]
    results: dict[str, dict[str, Any]]  # finished trials by run_id
    selected: dict[str, Setting]  # methods without a finished, finite trial are absent
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    floors: dict[str, dict[str, Any]] = field(default_factory=dict)  # validation_floors


def run_tuning(
    cfg: DictConfig,
    data: ComparisonData,
    steps_per_epoch: int,
    out: Path,
    log: Callable[[str], None] = print,
) -> TuningOutcome:
    """Runs (or resumes) every trial, writes ``tuning.csv`` / ``tuning.md`` (also when
    interrupted) and selects each method's setting."""
    from tqdm.auto import tqdm

    specs = trial_specs(cfg, steps_per_epoch)
    outcome = TuningOutcome(specs, {}, {}, floors=validation_floors(cfg, data, out))
    log(
        "tuning: validation floors: "
        + ", ".join(f"{name} {floor['val_knn_top1']:.2f}" for name, floor in outcome.floors.items())
    )
    todo = []
    for spec in specs:
        done = finished_result(out / "tuning" / spec.run_id, run_fingerprint(cfg, spec, data))
        if done:
            outcome.results[spec.run_id] = done
            outcome.skipped.append(spec.run_id)
        else:
            todo.append(spec)
    if outcome.skipped:
        log(f"tuning: skipping {len(outcome.skipped)} finished trial(s)")
    if todo:
        log(f"tuning: {len(todo)} trial(s) to do: " + ", ".join(s.run_id for s in todo))
    probe = build_probe(cfg, data, validation=True) if todo and cfg.tuning.get("curves") else None
    try:
        with tqdm(
            total=len(specs), initial=len(outcome.skipped), desc="tuning", unit="trial"
        ) as bar:
            for spec in todo:
                bar.set_postfix_str(spec.run_id)
                result = execute_trial(cfg, spec, data, out, probe)
                outcome.results[spec.run_id] = result
                outcome.trained.append(spec.run_id)
                score = result.get("val_knn_top1")
                bar.write(
                    f"{spec.run_id}: validation kNN top-1 {score:.2f}"
                    if result["status"] == "ok"
                    else f"{spec.run_id}: diverged ({result['error']})"
                )
                bar.update(1)
                gc.collect()
    finally:
        if len(outcome.results) == len(specs):
            outcome.selected = select(
                (s.method, s.setting, outcome.results[s.run_id]) for s in specs
            )
        write_tuning_reports(cfg, outcome, data, out)
    return outcome


def _score(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def write_tuning_reports(
    cfg: DictConfig, outcome: TuningOutcome, data: ComparisonData, out: Path
) -> list[Path]:
    """``tuning.csv`` (one row per finished trial, method by method) and ``tuning.md`` (the
    tuning table and each method's selected setting)."""
    rows = []
    methods = list(cfg.methods)
    for spec in sorted(outcome.specs, key=lambda s: methods.index(s.method)):  # grid order kept
        result = outcome.results.get(spec.run_id)
        if result is not None:
            chosen = outcome.selected.get(spec.method) == spec.setting
            rows.append({**result, "selected": chosen})
    floor_rows = [
        {**floor, "status": "floor", "selected": False} for floor in outcome.floors.values()
    ]
    with atomic_path(out / "tuning.csv") as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=TUNING_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows + floor_rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in TUNING_COLUMNS})

    tuning, ev = cfg.tuning, cfg.evaluation
    banks = {r.get("bank_images") for r in rows if r.get("bank_images")}
    bank = f"the {banks.pop():,} training images left" if len(banks) == 1 else "the rest"
    per_method = len(outcome.specs) // max(len(cfg.methods), 1)
    lines = [
        f"# Tuning on {cfg.dataset}: validation kNN top-1 of every trial",
        "",
        f"Validation split: {len(data.held_out):,} training images ({tuning.val_per_class} per "
        f"class, drawn with seed {tuning.seed}), held out of every trial's and final run's "
        "training, of every kNN bank and of the linear probe; test images and labels are never "
        f"used here. Score: kNN top-1 (k={ev.k}, {ev.get('distance', 'cosine')}, "
        f"T={ev.temperature}), bank = {bank}, queries = the validation images. Every trial: "
        f"{tuning.epochs} epochs (equal_epochs budget), seed {tuning.seed}; {per_method} trials "
        "per method (CLAMP: lr × rs grid points; the others: lr). Selected: the highest "
        "validation score (exact tie: the earlier grid point); a diverged trial (non-finite "
        "loss, weights or features) is never selected. lr is per 256 images (×: of the recipe).",
        "",
        "| method | trial | lr | rs | status | val kNN top-1 | val kNN top-5 | train (s) "
        "| selected |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rs = "–" if row.get("rs") is None else f"{row['rs']:g}"
        lines.append(
            f"| {row['method']} | {row['run_id']} | {row['lr']:g} (×{row['lr_multiplier']:g}) "
            f"| {rs} | {row['status']} | {_score(row.get('val_knn_top1'))} | "
            f"{_score(row.get('val_knn_top5'))} | {row.get('train_s', 0):.0f} | "
            f"{'**yes**' if row['selected'] else ''} |"
        )
    floor_names = {"raw_pixels": "raw pixels", "untrained": f"untrained {cfg.backbone.name}"}
    for row in floor_rows:
        name = floor_names[row["method"]]
        name += f" (seed {row['seed']})" if row["method"] == "untrained" else ""
        lines.append(
            f"| floor | {name} | – | – | floor | "
            f"{_score(row.get('val_knn_top1'))} | {_score(row.get('val_knn_top5'))} | 0 | |"
        )
    best = max((r["val_knn_top1"] for r in rows if r.get("status") == "ok"), default=None)
    if floor_rows and best is not None:
        top = max(r["val_knn_top1"] for r in floor_rows)
        verdict = (
            f"**No trial is above both floors** (best trial {best:.2f} vs {top:.2f})."
            if best <= top
            else f"Best trial {best:.2f} vs the higher floor {top:.2f}."
        )
        lines += [
            "",
            "Floors: raw pixels and the backbone every trial starts from, scored on "
            f"the same validation split. {verdict}",
        ]
    lines.append("")
    missing = [s.run_id for s in outcome.specs if s.run_id not in outcome.results]
    if missing:
        lines.append(f"Unfinished trials (nothing selected yet): {', '.join(missing)}.")
    else:
        for method in cfg.methods:
            setting = outcome.selected.get(method)
            chosen = setting.describe() if setting else "none: every trial diverged, no final runs"
            multipliers = lr_multipliers(cfg, method)
            if (
                setting
                and len(multipliers) > 1
                and setting.lr_multiplier
                in (
                    min(multipliers),
                    max(multipliers),
                )
            ):
                chosen += " (at the edge of the lr grid: a wider grid might do better)"
            lines.append(f"- {method}: {chosen}")
    atomic_write_text(out / "tuning.md", "\n".join(lines) + "\n")
    return [out / "tuning.csv", out / "tuning.md"]
