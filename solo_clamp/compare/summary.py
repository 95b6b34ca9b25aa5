"""The study's summary: per (budget, method) the per-seed scores, setting and status, the floors
as rows that pair by seed, and the verdicts against the floors
(:mod:`solo_clamp.compare.verdicts`). :mod:`solo_clamp.compare.report` renders it."""

from __future__ import annotations

import itertools
import statistics
from typing import Any, Optional

from omegaconf import DictConfig

from solo_clamp.compare.plan import Setting, final_run_id, run_budget
from solo_clamp.compare.strength import strength_of, variant_names
from solo_clamp.compare.tuning import Tuning
from solo_clamp.compare.verdicts import BOOTSTRAPPED, compare_rows
from solo_clamp.evaluation import FLOORS


def floor_name(cfg: DictConfig, floor: str) -> str:
    """A floor as the page names it: "raw pixels", "untrained <backbone>"."""
    return FLOORS[floor].replace("backbone", cfg.backbone.name)


def setting_of(result: dict[str, Any]) -> Optional[Setting]:
    """The run's tuned setting (None: the recipe's); ``setting``: result.json of earlier
    versions, which stored it under that key."""
    old = result.get("setting") or {}
    multiplier = result.get("lr_multiplier", old.get("lr_multiplier"))
    if multiplier is None:
        return None
    return Setting(result["lr"], multiplier, tuple((result.get("tuned") or {}).items()))


def _by_seed(runs: list[dict[str, Any]], key: str) -> dict[int, Any]:
    return {r["seed"]: r[key] for r in runs if r.get(key) is not None}


def _scores(row: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fills ``row`` with every metric's per-seed values (``<metric>_by_seed``, and the list
    ``<metric>`` in seed order), per-image correctness and the few-label spreads."""
    keys = {"knn": "knn_top1", "linear": "linear_top1"}
    keys.update(few_label="few_label_mean", few_label_augmented="few_label_augmented_mean")
    for metric, key in keys.items():
        row[f"{metric}_by_seed"] = _by_seed(runs, key)
        row[metric] = list(row[f"{metric}_by_seed"].values())
    for metric in BOOTSTRAPPED:
        row[f"{metric}_correct"] = _by_seed(runs, f"{metric}_correct")
    for name in ("few_label", "few_label_augmented"):
        spreads = [r[f"{name}_std"] for r in runs if r.get(f"{name}_std") is not None]
        row[f"{name}_spread"] = statistics.fmean(spreads) if spreads else None
    return row


def floor_rows(cfg: DictConfig, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw pixels (one run, standing for every seed: it has no weights) and the untrained
    backbone (one run per seed), each as a summary row that :mod:`verdicts` can pair."""
    rows = []
    for floor in FLOORS:
        runs = [r for r in results.values() if r.get("kind") == "floor" and r["method"] == floor]
        if not runs:
            continue
        if floor == "raw_pixels":  # the same features whatever the seed
            runs = [{**runs[0], "seed": seed} for seed in cfg.seeds]
        size = cfg.floors.get("raw_pixel_size") or cfg.augmentations[0].crop_size
        name = floor_name(cfg, floor)
        row = {"budget": "", "method": name + (f" ({size} px)" if floor == "raw_pixels" else "")}
        rows.append(_scores({**row, "floor": floor, "runs": len(runs)}, runs))
    return rows


def _failed(cfg: DictConfig, tuning: Optional[Tuning], method: str) -> str:
    """Why ``method`` is a failed baseline, "" when it is not: its selected trial scores no
    higher on validation than the untrained backbone every trial starts from."""
    if tuning is None or method not in tuning.selected or "untrained" not in tuning.floors:
        return ""
    floor = tuning.floors["untrained"]["val_knn_top1"]
    chosen = [
        tuning.results[s.run_id]["val_knn_top1"]
        for s in tuning.specs
        if s.method == method and s.setting == tuning.selected[method]
    ]
    best = max(chosen, default=None)
    if best is None or best > floor:
        return ""
    return (
        f"in its {cfg.tuning.epochs:g}-epoch tuning trials, every lr it tried stays at or below "
        f"the untrained backbone on validation (best {best:.2f} vs {floor:.2f}): it did not "
        "learn in the tuning budget, so it is no competitor (its final runs are still judged "
        "against the floors below)"
    )


def summary_rows(
    cfg: DictConfig, results: dict[str, dict[str, Any]], tuning: Optional[Tuning] = None
) -> list[dict[str, Any]]:
    """Per (budget, method) (and variant: ``budget`` reads ``<budget>, <variant>``, so that
    methods are compared within a variant): each seed's scores, the setting, failed-baseline
    status, the marks (:func:`verdicts.judge`) and the verdicts against both floors
    (``floor_verdicts``: metric -> floor -> :class:`verdicts.Comparison`)."""
    floors = floor_rows(cfg, results)
    rows = []
    for budget, variant in itertools.product(cfg.budgets, variant_names(cfg)):
        for method in cfg.methods:
            views = int(cfg.recipes[method].get("views", 2))
            ids = [final_run_id(method, run_budget(views, budget), s, variant) for s in cfg.seeds]
            done = [results[i] for i in ids if i in results]
            if not done:
                continue
            row = {
                "budget": budget if variant is None else f"{budget}, {variant}",
                "variant": variant,
                "strength": strength_of(cfg, variant),
                "method": method,
                "views": views,
                "shared": run_budget(views, budget) != budget,
                "setting": setting_of(done[0]),
                "seeds": len(done),
                **{k: done[0][k] for k in ("epochs", "steps", "views_seen", "lr")},
                "train_s": statistics.fmean(r["train_s"] for r in done),
                "failed": _failed(cfg, tuning, method),
                "bracket": tuning.bracket(cfg, method) if tuning is not None else "",
            }
            _scores(row, done)
            row["floor_verdicts"] = {
                metric: {f["floor"]: compare_rows(row, f, metric) for f in floors}
                for metric in ("knn", "linear", "few_label")
                if row[f"{metric}_by_seed"]
            }
            rows.append(row)
    return rows
