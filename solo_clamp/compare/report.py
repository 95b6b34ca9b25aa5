"""results.csv, results.md and the curve figures."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from solo_clamp.compare.config import FLOORS, RESULT_COLUMNS
from solo_clamp.compare.plan import expected_run_ids, run_budget
from solo_clamp.compare.tuning import Setting
from solo_clamp.io import atomic_path, atomic_write_text
from solo_clamp.methods import facts_of


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], digits: int = 2) -> str:
    mean, std = _mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def _per_seed(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _mark_ties(rows: list[dict[str, Any]], metric: str) -> None:
    """Per budget: ``best`` for the highest mean of ``metric``, ``tie`` for a row whose mean is
    within the two seed spreads of the best's (|mean - best mean| <= std + best std, sample std
    over seeds; with one seed only an exact tie)."""
    for budget in dict.fromkeys(r["budget"] for r in rows):
        group = [r for r in rows if r["budget"] == budget]
        best = max(group, key=lambda r: statistics.fmean(r[metric]))
        best_mean, best_std = _mean_std(best[metric])
        for row in group:
            mean, std = _mean_std(row[metric])
            tie = abs(mean - best_mean) <= std + best_std
            row[f"{metric}_mark"] = "best" if row is best else "tie" if tie else ""


def _setting(result: dict[str, Any]) -> str:
    """The run's setting: the tuned one (``setting``), else the recipe's lr (and CLAMP's rs)."""
    if result.get("setting"):
        return Setting(**result["setting"]).describe()
    if result.get("lr") is None:
        return "recipe"
    rs = f", rs {result['rs']:g}" if result.get("rs") is not None else ""
    return f"lr {result['lr']:g}{rs} (recipe)"


def write_results_csv(results: list[dict[str, Any]], path: Path) -> None:
    """One row per run (floors included), in :data:`RESULT_COLUMNS` order."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for result in results:
            writer.writerow({k: result.get(k, "") for k in RESULT_COLUMNS})


def summary_rows(cfg: DictConfig, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (budget, method), with floor verdicts."""
    floors = {f: results[f"floor-{f}"] for f in FLOORS if f"floor-{f}" in results}
    best_knn = max((r["knn_top1"] for r in floors.values()), default=-math.inf)
    best_linear = max((r["linear_top1"] for r in floors.values()), default=-math.inf)
    rows = []
    for budget in cfg.budgets:
        for method in cfg.methods:
            views = int(cfg.recipes[method].get("views", 2))
            ids = [f"{method}-{run_budget(views, budget)}-s{seed}" for seed in cfg.seeds]
            done = [results[i] for i in ids if i in results]
            if not done:
                continue
            knn = [r["knn_top1"] for r in done]
            linear = [r["linear_top1"] for r in done]
            beats = [
                name
                for name, ok in (
                    ("kNN", statistics.fmean(knn) > best_knn),
                    ("linear", statistics.fmean(linear) > best_linear),
                )
                if ok
            ]
            rows.append(
                {
                    "budget": budget,
                    "method": method,
                    "views": views,
                    "epochs": done[0]["epochs"],
                    "steps": done[0]["steps"],
                    "views_seen": done[0]["views_seen"],
                    "seeds": len(done),
                    "setting": _setting(done[0]),
                    "shared": run_budget(views, budget) != budget,
                    "train_s": [r["train_s"] for r in done],
                    "knn": knn,
                    "linear": linear,
                    "beats": beats,
                }
            )
    for metric in ("knn", "linear"):
        _mark_ties(rows, metric)
    return rows


def _score_cell(row: dict[str, Any], metric: str) -> str:
    mark = row[f"{metric}_mark"]
    return _fmt(row[metric]) + (f" **{mark}**" if mark else "")


def write_results_md(
    cfg: DictConfig,
    results: dict[str, dict[str, Any]],
    path: Path,
    settings: Optional[dict[str, Setting]] = None,
) -> None:
    """The comparison table (mean ± std over seeds, per-seed values, best and ties per budget,
    each method's setting), the floors and per-run rows. ``settings``: the tuned settings
    (tuning), whose absent methods had no finite trial."""
    rows = summary_rows(cfg, results)
    floors = [results[f"floor-{f}"] for f in FLOORS if f"floor-{f}" in results]
    lines = [
        f"# CLAMP vs solo-learn on {cfg.dataset}",
        "",
        f"Backbone {cfg.backbone.name}, {cfg.augmentations[0].crop_size} px, batch "
        f"{cfg.batch_size} images, {cfg.epochs} epochs (equal_epochs), seeds "
        f"{list(cfg.seeds)}. kNN: top-1, k={cfg.evaluation.k}, "
        f"{cfg.evaluation.get('distance', 'cosine')}, T={cfg.evaluation.temperature}. "
        f"Linear: probe on frozen, standardised features ({cfg.evaluation.linear.epochs} "
        "full-batch Adam epochs). Wall-clock: training only, mean over seeds.",
        "",
        _setting_note(cfg) + " Scores: mean ± std over seeds (sample std), then each seed's "
        "value in seed order. Per budget and metric, **best** is the highest mean and **tie** "
        "a method whose mean is within the seed spreads of the best's: |mean − best mean| ≤ "
        "std + best std (one seed: only an exact tie); a tie is not a win either way.",
        "",
        "| budget | method | views | epochs | views seen | seeds | setting | wall-clock (s) "
        "| kNN top-1 | kNN per seed | linear top-1 | linear per seed | beats both floors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        beats = row["beats"]
        verdict = "yes" if len(beats) == 2 else f"{beats[0]} only" if beats else "**no**"
        shared = " (same run as equal_epochs)" if row["shared"] else ""
        lines.append(
            f"| {row['budget']} | {row['method']}{shared} | {row['views']} | "
            f"{row['epochs']:g} | {row['views_seen']:,} | {row['seeds']} | {row['setting']} | "
            f"{statistics.fmean(row['train_s']):.0f} | {_score_cell(row, 'knn')} | "
            f"{_per_seed(row['knn'])} | {_score_cell(row, 'linear')} | "
            f"{_per_seed(row['linear'])} | {verdict} |"
        )
    crop = cfg.augmentations[0].crop_size
    labels = {
        "raw_pixels": f"raw pixels ({cfg.floors.raw_pixel_size or crop} px)",
        "untrained": f"untrained {cfg.backbone.name} (seed {cfg.floors.seed})",
    }
    for floor in floors:
        lines.append(
            f"| floor | {labels[floor['method']]} | – | 0 | 0 | 1 | – | 0 | "
            f"{floor['knn_top1']:.2f} | – | {floor['linear_top1']:.2f} | – | – |"
        )
    losers = sorted({f"{r['method']} ({r['budget']})" for r in rows if len(r["beats"]) < 2})
    same_init = (
        f" = the initial weights of the seed-{cfg.floors.seed} runs"
        if cfg.floors.seed in cfg.seeds
        else ""
    )
    lines += [
        "",
        f"Floors: raw pixels and the untrained backbone (seed {cfg.floors.seed}"
        f"{same_init}), scored the same way.",
    ]
    if losers:
        lines.append(
            "Not above both floors on both metrics (mean over seeds): " + ", ".join(losers) + "."
        )
    elif rows and floors:
        lines.append("Every method beats both floors on both metrics (mean over seeds).")
    untuned = [m for m in cfg.methods if settings is not None and m not in settings]
    if untuned:
        lines += ["", f"Not trained (every tuning trial diverged): {', '.join(untuned)}."]
    missing = [r for r in expected_run_ids(cfg, settings=settings) if r not in results]
    if missing:
        lines += ["", f"Unfinished runs (not in the table): {', '.join(missing)}."]
    lines += [
        "",
        "## Runs",
        "",
        "| run | epochs | steps | views seen | train (s) | kNN top-1 | kNN top-5 | linear top-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results.values():
        lines.append(
            f"| {result['run_id']} | {result['epochs']:g} | {result['steps']} | "
            f"{result['views_seen']:,} | {result['train_s']:.0f} | {result['knn_top1']:.2f} | "
            f"{result['knn_top5']:.2f} | {result['linear_top1']:.2f} |"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def plot_curves(cfg: DictConfig, results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """``curves_loss.png`` (SSL loss per epoch, one panel per method) and ``curves_knn.png``
    (probe kNN top-1 vs epochs and vs views seen; floors as horizontal lines, on the probe set
    where they were scored there)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results.values() if r["kind"] == "ssl"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(f"{run['method']} ({run['budget']})", []).append(run)
    colours = {name: f"C{i}" for i, name in enumerate(groups)}
    paths = []

    methods = list(dict.fromkeys(r["method"] for r in runs)) or ["none"]
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.2), squeeze=False)
    for ax, method in zip(axes[0], methods):
        for name, members in groups.items():
            if not name.startswith(f"{method} "):
                continue
            for i, run in enumerate(members):
                points = [(p["epoch"], p["loss"]) for p in run["curve"] if p["loss"] is not None]
                if points:
                    ax.plot(
                        *zip(*points),
                        marker="o",
                        color=colours[name],
                        alpha=0.8,
                        label=name if i == 0 else None,
                    )
        ax.set(title=f"{method}: {facts_of(method).loss_key}", xlabel="epoch", ylabel="loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "curves_loss.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, members in groups.items():
        for i, run in enumerate(members):
            points = [p for p in run["curve"] if p["knn_top1"] is not None]
            epochs = [p["step"] / run["steps_per_epoch"] for p in points]
            views = [p["step"] * run["batch_size"] * run["views"] / 1e6 for p in points]
            accs = [p["knn_top1"] for p in points]
            label = name if i == 0 else None
            axes[0].plot(epochs, accs, marker="o", color=colours[name], alpha=0.8, label=label)
            axes[1].plot(views, accs, marker="o", color=colours[name], alpha=0.8, label=label)
    for floor, style in (("raw_pixels", ":"), ("untrained", "--")):
        result = results.get(f"floor-{floor}")
        if not result:
            continue
        # The curves are scored on the probe set: so is the floor where it was measured there.
        value, where = result.get("probe_knn_top1"), "probe set"
        if value is None:
            value, where = result["knn_top1"], "eval set"
        for ax in axes:
            ax.axhline(value, color="grey", linestyle=style, label=f"{floor} ({where})")
    axes[0].set(
        xlabel="epoch", ylabel="kNN top-1 (%) on the probe set", title="kNN top-1 vs epochs"
    )
    axes[1].set(xlabel="views seen (millions)", title="kNN top-1 vs views seen")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "curves_knn.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def _setting_note(cfg: DictConfig) -> str:
    if not cfg.tuning.enabled:
        return "Setting: each method's recipe (no tuning)."
    return (
        "Setting: each method's learning rate (CLAMP: and rs) selected on a validation split "
        f"held out of the training images ({cfg.tuning.val_per_class} per class; every trial's "
        "validation score in tuning.md); the test scores below are at the selected setting."
    )


def write_reports(
    cfg: DictConfig,
    results: dict[str, dict[str, Any]],
    out: Path,
    settings: Optional[dict[str, Setting]] = None,
) -> list[Path]:
    """results.csv, results.md and the two curve figures."""
    write_results_csv(list(results.values()), out / "results.csv")
    write_results_md(cfg, results, out / "results.md", settings)
    return [out / "results.csv", out / "results.md", *plot_curves(cfg, results, out)]
