"""The study's outputs: ``results.csv`` (one long table: runs, floors, tuning trials, validation
floors and every curve point, told apart by ``kind``), ``results.md`` (from the jinja2 templates
in ``templates/``) and the curve figures (:func:`solo_clamp.compare.training.plot_curves`)."""

from __future__ import annotations

import csv
import math
import shutil
import statistics
from pathlib import Path
from typing import Any, Optional

import jinja2
from omegaconf import DictConfig

from solo_clamp.compare.encoder_projector import COLUMNS as GEOMETRY_COLUMNS
from solo_clamp.compare.plan import expected_run_ids, method_of
from solo_clamp.compare.scores import few_label_settings
from solo_clamp.compare.strength_report import plot_strength, strength_context
from solo_clamp.compare.summary import floor_name, floor_rows, setting_of, summary_rows
from solo_clamp.compare.training import plot_curves
from solo_clamp.compare.tuning import Tuning
from solo_clamp.compare.verdicts import METRICS, judge
from solo_clamp.io import atomic_path, atomic_write_text, write_below_marker
from solo_clamp.methods import facts_of
from solo_clamp.provenance import COLUMNS as PROVENANCE_COLUMNS

RESULT_COLUMNS = (
    tuple(
        # what a row is: kind = run, floor, trial (tuning), validation_floor or curve (a point of
        # the curve of the run or trial named by run_id)
        # variant: its name, strength: the number that orders the variants (compare.strength)
        "kind run_id method budget variant strength seed views epochs steps batch_size "
        "images_seen views_seen "
        "train_s curve_s eval_s "
        # test-split scores of runs and floors (few-label: over the draws; per_draw ;-separated)
        "knn_top1 knn_top5 linear_top1 few_label_mean few_label_std few_label_per_draw "
        "few_label_augmented_mean few_label_augmented_std few_label_augmented_per_draw "
        # the setting: lr per 256 images, its multiplier of the recipe's, tuned method_kwargs (rs=7)
        "lr lr_multiplier tuned "
        # trials (status ok or diverged, selected) and validation floors: the validation split
        "status selected val_knn_top1 val_knn_top5 error "
        "curve_epoch curve_step curve_loss curve_knn_top1".split()
    )
    # geometry.enabled: the encoder against the projector (compare.encoder_projector)
    + GEOMETRY_COLUMNS
    # what produced the row (solo_clamp.provenance)
    + PROVENANCE_COLUMNS
)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):  # tuned method_kwargs
        return ";".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
        )
    return value


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def csv_rows(results: dict[str, dict[str, Any]], tuning: Optional[Tuning]) -> list[dict]:
    """The rows of ``results.csv``: floors and runs, then (tuning) the validation floors and
    the trials method by method, then the curve points of every run and trial."""
    rows = [{**r, "kind": "floor" if r.get("kind") == "floor" else "run"} for r in results.values()]
    for row in rows:
        setting = setting_of(row)
        row["tuned"] = setting.tuned if setting else {}
    if tuning is not None:
        rows += [{**f, "kind": "validation_floor"} for f in tuning.floors.values()]
        methods = list(dict.fromkeys(s.method for s in tuning.specs))
        order = [(methods.index(s.method), s.setting.lr_multiplier) for s in tuning.specs]
        for _, spec in sorted(zip(order, tuning.specs), key=lambda pair: pair[0]):
            if spec.run_id in tuning.results:
                rows.append({**tuning.results[spec.run_id], "kind": "trial"})
                rows[-1].update(
                    tuned=spec.setting.tuned,
                    lr_multiplier=spec.setting.lr_multiplier,
                    selected=tuning.selected.get(spec.method) == spec.setting,
                )
    curves = [
        {
            **{k: run.get(k) for k in ("run_id", "method", "budget", "variant", "strength")},
            "seed": run.get("seed"),
            "kind": "curve",
            **{f"curve_{k}": point[k] for k in ("epoch", "step", "loss", "knn_top1")},
        }
        for run in rows
        for point in run.get("curve") or []
    ]
    return rows + curves


def write_results_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in RESULT_COLUMNS})


def _floor_name(cfg: DictConfig, floor: str, seed: Optional[int]) -> str:
    name = floor_name(cfg, floor)
    return f"{name} (seed {seed})" if floor == "untrained" and seed is not None else name


def _environment():
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("solo_clamp.compare", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )

    def score(value: Any) -> str:
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        return f"{value:.2f}" if ok else "–"

    def mean_std(values: list[float], digits: int = 2) -> str:
        if not values:
            return "–"
        mean, std = _mean_std(values)
        return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"

    env.filters.update(
        score=score,
        mean_std=mean_std,
        per_seed=lambda values: " / ".join(f"{v:.2f}" for v in values),
        g=lambda value: f"{value:g}",
        thousands=lambda value: f"{value:,}",
        bold=lambda text, mark: f"**{text}**" if mark else text,
        interval=lambda i: f"[{i.low:+.2f}, {i.high:+.2f}]" if i is not None else "–",
    )
    return env


def _tuning_context(cfg: DictConfig, tuning: Tuning) -> dict[str, Any]:
    trials = [r for r in csv_rows({}, tuning) if r["kind"] == "trial"]
    floors = [
        {**f, "name": _floor_name(cfg, f["method"], f["seed"])} for f in tuning.floors.values()
    ]
    best = max((r["val_knn_top1"] for r in trials if r.get("status") == "ok"), default=None)
    banks = {r.get("bank_images") for r in trials if r.get("bank_images")}
    choices = {m: (tuning.selected.get(m), tuning.bracket(cfg, m)) for m in cfg.methods}
    return {
        "trials": trials,
        "floors": floors,
        "best": best,
        "top_floor": max((f["val_knn_top1"] for f in floors), default=None),
        "bank": banks.pop() if len(banks) == 1 else None,
        "per_method": {m: sum(s.method == m for s in tuning.specs) for m in cfg.methods},
        "val_images": next((f["val_images"] for f in floors), None),
        "missing": [s.run_id for s in tuning.specs if s.run_id not in tuning.results],
        "choices": choices,
    }


def provenance_summary(records: list[dict[str, Any]]) -> dict[str, list[tuple[Any, int]]]:
    """Per provenance column, each value the rows carry and how many rows carry it."""
    summary = {}
    for column in PROVENANCE_COLUMNS:
        counts: dict[Any, int] = {}
        for record in records:
            value = record.get(column, "not recorded")
            counts[value] = counts.get(value, 0) + 1
        summary[column] = list(counts.items())
    return summary


def write_results_md(
    cfg: DictConfig,
    results: dict[str, dict[str, Any]],
    path: Path,
    tuning: Optional[Tuning] = None,
) -> None:
    """The comparison table (mean ± std over seeds, per-seed values, bold where a paired
    interval says so, each method's setting), the verdicts against the best and against the
    floors, the floors per seed, the few-label probes, the tuning trials, the runs and the
    provenance of every row. ``tuning``: the tuning stage, whose unselected methods had no
    finite trial."""
    rows = summary_rows(cfg, results, tuning)
    comparisons = judge(rows)
    floors = floor_rows(cfg, results)
    settings = tuning.selected if tuning is not None else None
    final = tuning is None or (tuning.finished and not cfg.tuning.get("only", False))
    below = [
        f"{r['method']} ({r['budget']}): {metric} below {floor.replace('_', ' ')}"
        for r in rows
        for metric, verdicts in r["floor_verdicts"].items()
        for floor, c in verdicts.items()
        if c.verdict == "worse"
    ]
    records = list(results.values()) + list(tuning.results.values() if tuning else [])
    text = (
        _environment()
        .get_template("results.md.j2")
        .render(
            cfg=cfg,
            final=final,
            rows=rows,
            comparisons=comparisons,
            metrics=METRICS,
            floors=floors,
            runs=[r for r in results.values()],
            below=below,
            failed=[r for r in rows if r["failed"]],
            untuned=[m for m in cfg.methods if settings is not None and m not in settings],
            missing=[r for r in expected_run_ids(cfg, settings=settings) if r not in results],
            few_label=few_label_settings(cfg),
            augmenting=[  # an entry without a trained augmentation (an ablation) has no scores
                m
                for m in cfg.methods
                if any(
                    r.get("method") == m and "few_label_augmented_mean" in r
                    for r in results.values()
                )
            ],
            tuning=_tuning_context(cfg, tuning) if tuning is not None else None,
            strength=strength_context(cfg, results),
            provenance=provenance_summary(records),
        )
    )
    atomic_write_text(path, text)


TOOL_OUTPUT_MARKER = (
    "<!-- Below this line: `solo-clamp compare`'s results.md, byte for byte (--publish). "
    "Hand-written text stays above it. -->"
)


def publish(out: Path, page_dir: Path) -> list[Path]:
    """Copies a comparison's results into a study page: ``page_dir/results.csv`` as written,
    and ``page_dir/results.md`` = the page's hand-written text above
    :data:`TOOL_OUTPUT_MARKER` (kept), the marker, then ``out/results.md`` byte for byte; and
    ``strength.png`` where the comparison drew one (``results.md`` names it)."""
    page = page_dir / "results.md"
    write_below_marker(page, TOOL_OUTPUT_MARKER, (out / "results.md").read_text(encoding="utf-8"))
    copied = [page]
    for name in ("results.csv", "strength.png"):
        if name == "results.csv" or (out / name).exists():
            with atomic_path(page_dir / name) as tmp:
                shutil.copyfile(out / name, tmp)
            copied.append(page_dir / name)
    return copied


def write_reports(
    cfg: DictConfig,
    results: dict[str, dict[str, Any]],
    out: Path,
    tuning: Optional[Tuning] = None,
) -> list[Path]:
    """results.csv, results.md and (with finished runs) the two curve figures; nothing
    before any run or trial has finished."""
    if not results and not (tuning and (tuning.results or tuning.floors)):
        return []
    write_results_csv(csv_rows(results, tuning), out / "results.csv")
    write_results_md(cfg, results, out / "results.md", tuning)
    runs = [r for r in results.values() if r.get("kind") != "floor"]
    floors = {k: r for k, r in results.items() if r.get("kind") == "floor"}
    loss_keys = {m: facts_of(method_of(cfg, m)).loss_key for m in cfg.methods}
    figures = plot_curves(runs, floors, out, loss_keys) if results else []
    strength = strength_context(cfg, results) if results else None
    figure = plot_strength(strength, out / "strength.png") if strength else None
    return [out / "results.csv", out / "results.md", *figures, *([figure] if figure else [])]
