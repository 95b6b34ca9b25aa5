"""The study's outputs: ``results.csv`` (one long table: runs, floors, tuning trials, validation
floors and every curve point, told apart by ``kind``), ``results.md`` (from the jinja2 templates
in ``templates/``) and the curve figures (:func:`solo_clamp.compare.training.plot_curves`)."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any, Optional

import jinja2
from omegaconf import DictConfig

from solo_clamp.compare.plan import Setting, expected_run_ids, run_budget
from solo_clamp.compare.scores import few_label_settings
from solo_clamp.compare.training import plot_curves
from solo_clamp.compare.tuning import Tuning
from solo_clamp.io import atomic_path, atomic_write_text
from solo_clamp.methods import facts_of

RESULT_COLUMNS = tuple(
    # what a row is: kind = run, floor, trial (tuning), validation_floor or curve (a point of
    # the curve of the run or trial named by run_id)
    "kind run_id method budget seed views epochs steps batch_size images_seen views_seen "
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
FLOOR_NAMES = {"raw_pixels": "raw pixels", "untrained": "untrained {backbone} (seed {seed})"}


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


def _setting(result: dict[str, Any]) -> Optional[Setting]:
    """The run's tuned setting (None: the recipe's); ``setting``: result.json of earlier
    versions, which stored it under that key."""
    old = result.get("setting") or {}
    multiplier = result.get("lr_multiplier", old.get("lr_multiplier"))
    if multiplier is None:
        return None
    return Setting(result["lr"], multiplier, tuple((result.get("tuned") or {}).items()))


def csv_rows(results: dict[str, dict[str, Any]], tuning: Optional[Tuning]) -> list[dict]:
    """The rows of ``results.csv``: floors and runs, then (tuning) the validation floors and
    the trials method by method, then the curve points of every run and trial."""
    rows = [{**r, "kind": "floor" if r.get("kind") == "floor" else "run"} for r in results.values()]
    for row in rows:
        setting = _setting(row)
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
            **{k: run.get(k) for k in ("run_id", "method", "budget", "seed")},
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


def _mark_ties(rows: list[dict[str, Any]], metric: str) -> None:
    """Per budget: ``best`` for the highest mean of ``metric``, ``tie`` for a row whose mean is
    within the two seed spreads of the best's (|mean - best mean| <= std + best std, sample std
    over seeds; with one seed only an exact tie)."""
    for budget in dict.fromkeys(r["budget"] for r in rows):
        group = [r for r in rows if r["budget"] == budget and r[metric]]
        if not group:
            continue
        best = max(group, key=lambda r: statistics.fmean(r[metric]))
        best_mean, best_std = _mean_std(best[metric])
        for row in group:
            mean, std = _mean_std(row[metric])
            tie = abs(mean - best_mean) <= std + best_std
            row[f"{metric}_mark"] = "best" if row is best else "tie" if tie else ""


def summary_rows(cfg: DictConfig, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (budget, method): each seed's scores, the setting, the floor verdict and the marks."""
    floors = [r for r in results.values() if r.get("kind") == "floor"]
    rows = []
    for budget in cfg.budgets:
        for method in cfg.methods:
            views = int(cfg.recipes[method].get("views", 2))
            ids = [f"{method}-{run_budget(views, budget)}-s{seed}" for seed in cfg.seeds]
            done = [results[i] for i in ids if i in results]
            if not done:
                continue
            row = {
                "budget": budget,
                "method": method,
                "views": views,
                "shared": run_budget(views, budget) != budget,
                "setting": _setting(done[0]),
                "seeds": len(done),
                **{k: done[0][k] for k in ("epochs", "steps", "views_seen", "lr")},
                "train_s": statistics.fmean(r["train_s"] for r in done),
            }
            for metric, key in (("knn", "knn_top1"), ("linear", "linear_top1")):
                row[metric] = [r[key] for r in done]
            for name in ("few_label", "few_label_augmented"):
                row[name] = [r[f"{name}_mean"] for r in done if f"{name}_mean" in r]
                spreads = [r[f"{name}_std"] for r in done if r.get(f"{name}_std") is not None]
                row[f"{name}_spread"] = statistics.fmean(spreads) if spreads else None
            row["beats"] = [
                name
                for name, key in (("kNN", "knn"), ("linear", "linear"))
                if floors and statistics.fmean(row[key]) > max(f[f"{key}_top1"] for f in floors)
            ]
            rows.append(row)
    for metric in ("knn", "linear", "few_label", "few_label_augmented"):
        _mark_ties(rows, metric)
    return rows


def _floor_name(cfg: DictConfig, floor: str, seed: int, size: Optional[int] = None) -> str:
    name = FLOOR_NAMES[floor].format(backbone=cfg.backbone.name, seed=seed)
    return f"{name} ({size} px)" if size else name


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

    def mean_std(values: list[float]) -> str:
        mean, std = _mean_std(values)
        return f"{mean:.2f} ± {std:.2f}" if len(values) > 1 else f"{mean:.2f}"

    env.filters.update(
        score=score,
        mean_std=mean_std,
        per_seed=lambda values: " / ".join(f"{v:.2f}" for v in values),
        g=lambda value: f"{value:g}",
        thousands=lambda value: f"{value:,}",
        mark=lambda mark: f" **{mark}**" if mark else "",
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


def write_results_md(
    cfg: DictConfig,
    results: dict[str, dict[str, Any]],
    path: Path,
    tuning: Optional[Tuning] = None,
) -> None:
    """The comparison table (mean ± std over seeds, per-seed values, best and ties per budget,
    each method's setting), the floors, the few-label probes, the tuning trials and the runs.
    ``tuning``: the tuning stage, whose unselected methods had no finite trial."""
    rows = summary_rows(cfg, results)
    floors = [r for r in results.values() if r.get("kind") == "floor"]
    for floor in floors:
        size = cfg.floors.raw_pixel_size or cfg.augmentations[0].crop_size
        floor["name"] = _floor_name(
            cfg, floor["method"], floor["seed"], size if floor["method"] == "raw_pixels" else None
        )
    settings = tuning.selected if tuning is not None else None
    final = tuning is None or (tuning.finished and not cfg.tuning.get("only", False))
    text = (
        _environment()
        .get_template("results.md.j2")
        .render(
            cfg=cfg,
            final=final,
            rows=rows,
            floors=floors,
            runs=[r for r in results.values()],
            losers=sorted({f"{r['method']} ({r['budget']})" for r in rows if len(r["beats"]) < 2}),
            untuned=[m for m in cfg.methods if settings is not None and m not in settings],
            missing=[r for r in expected_run_ids(cfg, settings=settings) if r not in results],
            few_label=few_label_settings(cfg),
            augmenting=[m for m in cfg.methods if facts_of(m).feature_augmenter is not None],
            tuning=_tuning_context(cfg, tuning) if tuning is not None else None,
        )
    )
    atomic_write_text(path, text)


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
    figures = plot_curves(runs, floors, out) if results else []
    return [out / "results.csv", out / "results.md", *figures]
