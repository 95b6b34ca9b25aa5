"""Regenerates docs/benchmarks.md and docs/benchmarks_loss.png from fresh benchmark runs.

Usage::

    python3 bench/report.py            # full loss grid + training steps (~10-15 min, 2 cores)
    python3 bench/report.py --quick    # the --quick subsets, to check the pipeline (~2.5 min)

It runs ``bench/loss_bench.py`` and ``bench/train_step_bench.py`` as subprocesses (their
progress bars stream through), reads their JSON and writes the page from the jinja2 templates
in ``bench/templates/`` (ratios vs the default CLAMP path and vs SimCLR, the targets, the
machine) and a log-log plot of loss time and peak memory against N. ``--json-dir`` keeps
the raw JSON; ``--reuse`` renders from a directory of earlier JSON instead of running the
benchmarks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import jinja2

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DOCS = REPO_ROOT / "docs"
for _path in (str(REPO_ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import loss_bench  # noqa: E402
import train_step_bench  # noqa: E402

from solo_clamp.losses.clamp import AUTO_TILE_MIN_IMAGES  # noqa: E402

TARGET_POINT = loss_bench.TARGET_POINT
IMPL_ORDER = loss_bench.IMPLS


def machine_info() -> dict[str, str]:
    """CPU model, cores, memory, load and library versions of this machine."""
    cpu = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                cpu.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as handle:
            total_kib = int(handle.readline().split()[1])
            memory = f"{total_kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    model = cpu.get("model name", platform.processor() or "unknown")
    if "cpu family" in cpu:
        model += f" (family {cpu['cpu family']}, model {cpu.get('model', '?')})"
    import torch

    versions = {"torch": torch.__version__}
    for dist in ("solo-learn", "lightning"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "CPU": model,
        "logical cores": str(os.cpu_count()),
        "memory": memory,
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)",
        "python": platform.python_version(),
        **versions,
    }


def run_bench(script: str, json_path: Path, extra: list[str]) -> float:
    """Runs a benchmark script with --json, streaming its output; returns its wall seconds."""
    command = [sys.executable, str(BENCH_DIR / script), "--json", str(json_path), *extra]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO_ROOT)
    return time.perf_counter() - start


def _index(records: list[dict]) -> dict[tuple[int, int, int], dict[str, dict]]:
    table: dict[tuple[int, int, int], dict[str, dict]] = {}
    for rec in records:
        table.setdefault((rec["N"], rec["V"], rec["D"]), {})[rec["impl"]] = rec
    return table


def _ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict(value: Optional[float], threshold: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value >= threshold else "**missed**"


def targets(loss: list[dict], steps: list[dict]) -> dict[str, Any]:
    """The measured values of the performance issue's targets (None: not measured)."""
    point = _index(loss).get(TARGET_POINT, {})

    def vs_clamp(impl: str, key: str) -> Optional[float]:
        return _ratio(point.get(impl, {}).get(key), point.get("clamp", {}).get(key))

    by_method = {rec["method"]: rec for rec in steps}
    simclr = by_method.get("simclr", {})

    def vs_simclr(method: str, key: str = "views_per_s") -> Optional[float]:
        value, base = by_method.get(method, {}).get(key), simclr.get(key)
        return _ratio(base, value) if key == "cpu_ms" else _ratio(value, base)

    return {
        "point": dict(zip("NVD", TARGET_POINT)),
        "memory": vs_clamp("dense_reference", "peak_mb"),
        "time": vs_clamp("dense_reference", "time_ms"),
        "simclr": vs_clamp("simclr", "time_ms"),
        "cpu_dense": vs_clamp("dense_reference", "cpu_ms"),
        "cpu_simclr": vs_clamp("simclr", "cpu_ms"),
        "grid": sorted(
            impls["simclr"]["time_ms"] / impls["clamp"]["time_ms"]
            for impls in _index(loss).values()
            if "simclr" in impls and "clamp" in impls
        ),
        "step": vs_simclr("clamp"),
        "step_cpu": vs_simclr("clamp", "cpu_ms"),
        "percrop": vs_simclr("clamp_percrop"),
    }


def loss_rows(loss: list[dict], skips: list[dict]) -> list[dict]:
    """The loss table's rows, point by point in ``IMPL_ORDER``: a record with its ratios to the
    default ``clamp`` at its point, or a skipped case with its reason."""
    skip_of = {(s["impl"], s["N"], s["V"], s["D"]): s["reason"] for s in skips}
    index = _index(loss)
    rows = []
    for point in sorted(set(index) | {(s["N"], s["V"], s["D"]) for s in skips}):
        base = index.get(point, {}).get("clamp", {})
        for impl in IMPL_ORDER:
            rec = index.get(point, {}).get(impl)
            if rec is not None:
                ratios = {
                    f"{name}_ratio": _ratio(rec.get(key), base.get(key))
                    for name, key in (("time", "time_ms"), ("peak", "peak_mb"), ("cpu", "cpu_ms"))
                }
                rows.append({**rec, "cpu_ms": rec.get("cpu_ms"), "skipped": None, **ratios})
            elif (impl, *point) in skip_of:
                rows.append(dict(zip("NVD", point), impl=impl, skipped=skip_of[(impl, *point)]))
    return rows


def plot(loss: list[dict], path: Path) -> None:
    """Log-log time and peak memory vs N, one line per (impl, V, D) with >= 2 points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, int, int], list[dict]] = {}
    for rec in loss:
        if rec["V"] == 4:
            series.setdefault((rec["impl"], rec["V"], rec["D"]), []).append(rec)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = dict(zip(IMPL_ORDER, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    styles = {256: "-", 512: "--", 2048: ":"}
    for (impl, _views, dim), recs in sorted(series.items()):
        recs = sorted(recs, key=lambda r: r["N"])
        xs = [r["N"] for r in recs]
        for axis, key in zip(axes, ("time_ms", "peak_mb")):
            axis.plot(
                xs,
                [max(r[key], 1e-3) for r in recs],
                marker="o",
                linestyle=styles.get(dim, "-"),
                color=colours.get(impl),
                label=f"{impl} (D={dim})",
            )
    for axis, label in zip(axes, ("forward + backward time (ms)", "peak memory above inputs (MB)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("N (images), V = 4 views")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle(
        "CLAMP loss paths vs dense reference and solo-learn losses (V = 4; line style = D)"
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render_template(name: str, **context: Any) -> str:
    """Renders ``bench/templates/<name>`` with jinja2; its filters: ``fmt`` (a number with
    ``digits`` decimals, None as "-") and ``verdict`` (met, missed or not measured)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(BENCH_DIR / "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(fmt=_fmt, verdict=_verdict)
    return env.get_template(name).render(**context)


def targets_section(loss: list[dict], steps: list[dict]) -> str:
    """The Markdown targets section (printed at the end of a run, too)."""
    return render_template("targets.md.j2", t=targets(loss, steps))


def render(loss: list[dict], skips: list[dict], steps: list[dict], meta: dict) -> str:
    """The Markdown page. ``meta["loss_settings"]`` and ``meta["steps_settings"]`` are the
    parsed arguments of the two benchmarks, so the page states the settings that ran."""
    return render_template(
        "benchmarks.md.j2",
        meta=meta,
        loss_settings=meta["loss_settings"],
        steps_settings=meta["steps_settings"],
        t=targets(loss, steps),
        loss_rows=loss_rows(loss, skips),
        steps=steps,
        simclr=next((r for r in steps if r["method"] == "simclr"), None),
        memory_fraction=loss_bench.MEMORY_FRACTION,
        auto_tile=AUTO_TILE_MIN_IMAGES,
    )


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="use the benches' --quick subsets")
    parser.add_argument("--json-dir", type=Path, help="keep the raw JSON here")
    parser.add_argument(
        "--reuse", type=Path, help="render from loss.json, skips.json, steps.json in this directory"
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="output directory")
    parser.add_argument("--loss-args", default="", help="extra arguments for loss_bench.py")
    parser.add_argument("--steps-args", default="", help="extra arguments for train_step_bench.py")
    args = parser.parse_args(argv)

    load_before = _load_average()
    meta: dict = {
        "date": dt.date.today().isoformat(),
        "loss_seconds": 0.0,
        "steps_seconds": 0.0,
        "command": "python3 bench/report.py" + (" --quick" if args.quick else ""),
        # the settings the benchmarks run with (parsed first: a bad argument fails early)
        "loss_settings": loss_bench.parse_args(args.loss_args.split()),
        "steps_settings": train_step_bench.parse_args(args.steps_args.split()),
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.reuse or args.json_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        loss_json, skips_json, steps_json = (
            folder / n for n in ("loss.json", "skips.json", "steps.json")
        )
        meta["timing"] = f"rendered from the JSON in {args.reuse}"
        if args.reuse is None:
            quick = ["--quick"] if args.quick else []
            meta["loss_seconds"] = run_bench(
                "loss_bench.py",
                loss_json,
                quick + ["--cpu-time", "--skips-json", str(skips_json)] + args.loss_args.split(),
            )
            meta["steps_seconds"] = run_bench(
                "train_step_bench.py", steps_json, quick + args.steps_args.split()
            )
            meta["timing"] = (
                f"loss benchmark {meta['loss_seconds']:.0f} s, training-step "
                f"benchmark {meta['steps_seconds']:.0f} s"
            )
        loss = json.loads(loss_json.read_text())
        skips = json.loads(skips_json.read_text()) if skips_json.exists() else []
        steps = json.loads(steps_json.read_text()) if steps_json.exists() else []

    meta.update(machine=machine_info(), load_before=load_before, load_after=_load_average())
    args.docs.mkdir(parents=True, exist_ok=True)
    plot(loss, args.docs / "benchmarks_loss.png")
    (args.docs / "benchmarks.md").write_text(render(loss, skips, steps, meta))
    print(f"wrote {args.docs / 'benchmarks.md'} and {args.docs / 'benchmarks_loss.png'}")
    print(targets_section(loss, steps), end="")


if __name__ == "__main__":
    main()
