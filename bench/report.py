"""Regenerates docs/benchmarks.md and docs/benchmarks_loss.png from fresh benchmark runs.

Usage::

    python3 bench/report.py            # full loss grid + training steps (~10-15 min, 2 cores)
    python3 bench/report.py --quick    # the --quick subsets, to check the pipeline (~2.5 min)

It runs ``bench/loss_bench.py`` and ``bench/train_step_bench.py`` as subprocesses (their
progress bars stream through), reads their JSON and writes the Markdown tables (ratios vs
the default CLAMP path and vs SimCLR, the targets, the machine) and a log-log plot of
loss time and peak memory against N. ``--json-dir`` keeps the raw JSON; ``--reuse`` renders
from a directory of earlier JSON instead of running the benchmarks.
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
from typing import Optional

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


def targets_section(loss: list[dict], steps: list[dict]) -> list[str]:
    """The three targets of the performance issue, each with its measured value."""
    point = _index(loss).get(TARGET_POINT, {})
    clamp, dense, simclr = (point.get(k) for k in ("clamp", "dense_reference", "simclr"))

    def get(rec: Optional[dict], key: str) -> Optional[float]:
        return rec.get(key) if rec else None

    mem_ratio = _ratio(get(dense, "peak_mb"), get(clamp, "peak_mb"))
    time_ratio = _ratio(get(dense, "time_ms"), get(clamp, "time_ms"))
    simclr_ratio = _ratio(get(simclr, "time_ms"), get(clamp, "time_ms"))
    cpu_dense = _ratio(get(dense, "cpu_ms"), get(clamp, "cpu_ms"))
    cpu_simclr = _ratio(get(simclr, "cpu_ms"), get(clamp, "cpu_ms"))
    grid_ratios = [
        impls["simclr"]["time_ms"] / impls["clamp"]["time_ms"]
        for impls in _index(loss).values()
        if "simclr" in impls and "clamp" in impls
    ]
    by_method = {rec["method"]: rec for rec in steps}
    step_ratio = cpu_ratio = None
    if "clamp" in by_method and "simclr" in by_method:
        step_ratio = by_method["clamp"]["views_per_s"] / by_method["simclr"]["views_per_s"]
        cpu_ratio = by_method["simclr"]["cpu_ms"] / by_method["clamp"]["cpu_ms"]

    def verdict(value: Optional[float], threshold: float) -> str:
        if value is None:
            return "not measured"
        return "met" if value >= threshold else "**missed**"

    n, v, d = TARGET_POINT
    lines = [
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| dense_reference / clamp peak memory >= 30 (N={n}, V={v}, D={d}) | "
        f"{_fmt(mem_ratio, 1)} | {verdict(mem_ratio, 30)} |",
        f"| dense_reference / clamp time >= 30 (N={n}, V={v}, D={d}) | "
        f"{_fmt(time_ratio, 1)} | {verdict(time_ratio, 30)} |",
        f"| SimCLR / CLAMP loss time >= 4 on the same V*N embeddings (N={n}, V={v}, D={d}) | "
        f"{_fmt(simclr_ratio)} | {verdict(simclr_ratio, 4)} |",
    ]
    if cpu_dense is not None:
        lines.append(
            f"| same two, from CPU time (less sensitive to other jobs) | "
            f"{_fmt(cpu_dense, 1)} and {_fmt(cpu_simclr)} | "
            f"{verdict(cpu_dense, 30)} and {verdict(cpu_simclr, 4)} |"
        )
    if grid_ratios:
        met = sum(ratio >= 4 for ratio in grid_ratios)
        lines.append(
            f"| SimCLR / CLAMP loss time >= 4 at every point where both ran | "
            f"{met} of {len(grid_ratios)} points (worst {_fmt(min(grid_ratios))}, "
            f"median {_fmt(sorted(grid_ratios)[len(grid_ratios) // 2])}) | "
            f"{verdict(min(grid_ratios), 4)} |"
        )
    lines.append(
        f"| CLAMP / SimCLR training-step views per second >= 0.95 | "
        f"{_fmt(step_ratio, 3)} | {verdict(step_ratio, 0.95)} |"
    )
    lines.append(
        f"| same, from CPU time per step (less sensitive to other jobs) | "
        f"{_fmt(cpu_ratio, 3)} | {verdict(cpu_ratio, 0.95)} |"
    )
    if "clamp_percrop" in by_method and "simclr" in by_method:
        percrop = by_method["clamp_percrop"]["views_per_s"] / by_method["simclr"]["views_per_s"]
        lines.append(
            f"| same with `joint_forward: false` (one forward per crop, as SimCLR) | "
            f"{_fmt(percrop, 3)} | {verdict(percrop, 0.95)} |"
        )
    return lines + [""]


def loss_section(loss: list[dict], skips: list[dict]) -> list[str]:
    lines = [
        "## Loss: forward + backward",
        "",
        "Time is the wall time of the best timed run (ms); peak is the memory above the "
        "inputs (MB); CPU is the process's user + system time of the best run, all threads "
        "(less sensitive to other jobs on the cores than wall time). Ratios are against the "
        "default `clamp` path at the same point, measured in the same run.",
        "",
        "| N | V | D | impl | time ms | peak MB | time / clamp | peak / clamp | CPU ms | "
        "CPU / clamp | note |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    skip_of = {(s["impl"], s["N"], s["V"], s["D"]): s["reason"] for s in skips}
    index = _index(loss)
    points = sorted(set(index) | {(s["N"], s["V"], s["D"]) for s in skips})
    for point in points:
        impls = index.get(point, {})
        base = impls.get("clamp")
        for impl in IMPL_ORDER:
            rec = impls.get(impl)
            if rec is None:
                reason = skip_of.get((impl, *point))
                if reason:
                    lines.append(
                        f"| {point[0]} | {point[1]} | {point[2]} | {impl} | "
                        f"- | - | - | - | - | - | skipped: {reason} |"
                    )
                continue
            lines.append(
                f"| {point[0]} | {point[1]} | {point[2]} | {impl} | {rec['time_ms']:.1f} | "
                f"{rec['peak_mb']:.1f} | "
                f"{_fmt(_ratio(rec['time_ms'], base['time_ms'] if base else None))} | "
                f"{_fmt(_ratio(rec['peak_mb'], base['peak_mb'] if base else None))} | "
                f"{_fmt(rec.get('cpu_ms'), 1)} | "
                f"{_fmt(_ratio(rec.get('cpu_ms'), base.get('cpu_ms') if base else None))} | |"
            )
    return lines + [""]


def steps_section(steps: list[dict], settings: argparse.Namespace) -> list[str]:
    """The training-step table; ``settings`` are train_step_bench.py's parsed arguments."""
    if not steps:
        return ["## Training step", "", "Not measured (solo-learn not importable).", ""]
    base = next((r for r in steps if r["method"] == "simclr"), None)
    lines = [
        "## Training step",
        "",
        "Full step (backbone, projector, loss, online classifier, backward, LARS step; BYOL's "
        f"EMA update), resnet18 with solo-learn's stem for `{settings.dataset}`, "
        f"{settings.crop_size} px inputs, random data, {settings.threads} torch threads. CLAMP and "
        "SimCLR take V crops of B images; BYOL and VICReg take 2 crops of B*V/2 images, so "
        "every method pushes the same number of views through the backbone per step. "
        "`clamp` forwards all views as one batch (`joint_forward: true`, the default); "
        "`clamp_percrop` forwards each crop alone, as SimCLR does. "
        "`loss %` = fwd + bwd time of the step's loss calls, replayed on detached inputs, "
        "over the step time. `CPU ms` is the process's user + system time in the step "
        "(best step); its ratio is less sensitive to other jobs taking the cores.",
        "",
        "| method | crops x images | step ms | CPU ms | views / s | vs SimCLR | "
        "vs SimCLR (CPU time) | loss ms | loss % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rec in steps:
        ratio = rec["views_per_s"] / base["views_per_s"] if base else None
        cpu_ratio = base["cpu_ms"] / rec["cpu_ms"] if base else None
        lines.append(
            f"| {rec['method']} | {rec['crops']} x {rec['images_per_step']} | "
            f"{rec['step_ms']:.0f} | {rec['cpu_ms']:.0f} | {rec['views_per_s']:.1f} | "
            f"{_fmt(ratio, 3)} | {_fmt(cpu_ratio, 3)} | "
            f"{rec['loss_ms']:.2f} | {100 * rec['loss_fraction']:.2f} |"
        )
    return lines + [""]


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


def render(loss: list[dict], skips: list[dict], steps: list[dict], meta: dict) -> str:
    """The Markdown page. ``meta["loss_settings"]`` and ``meta["steps_settings"]`` are the
    parsed arguments of the two benchmarks, so the page states the settings that ran."""
    loss_settings, steps_settings = meta["loss_settings"], meta["steps_settings"]
    lines = [
        "# Benchmarks",
        "",
        "Regenerate this page and `benchmarks_loss.png` from fresh runs with one command:",
        "",
        "```",
        "python3 bench/report.py",
        "```",
        "",
        f"(`{meta['command']}` produced this version on {meta['date']}; {meta['timing']}.) "
        "The pieces run alone too: `python3 bench/loss_bench.py [--quick] [--json PATH]`, "
        "`python3 bench/train_step_bench.py [--quick] [--json PATH]`.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in meta["machine"].items()],
        f"| torch threads (loss / training step) | {loss_settings.threads} / "
        f"{steps_settings.threads} |",
        f"| load average (1 min) before / after | {meta['load_before']} / {meta['load_after']} |",
        "",
        "The machine is shared with other jobs: absolute times are noisy (each case reports its "
        "best run), ratios measured in the same run are the numbers to read.",
        "",
        *targets_section(loss, steps),
        *loss_section(loss, skips),
        "![time and memory vs N](benchmarks_loss.png)",
        "",
        *steps_section(steps, steps_settings),
        "## GPU",
        "",
        "`python3 bench/gpu_check.py --out DIR` is the prepared check for a CUDA machine "
        "(under 8 minutes): CLAMP (4 views) vs SimCLR training steps per second with bf16"
        " autocast (ResNet-50, 224 px, synthetic images, each at the largest batch that "
        "fits), the tiled loss at N = 32768 images (time, peak memory) and a few batches "
        "of solo-learn's DALI pipeline with 4 views when nvidia-dali is installed. It "
        "writes `gpu_check.json` and `gpu_check.md`; paste the table here. `--dry` runs "
        "it at tiny sizes on the CPU (a test does). Not yet run on a GPU: no GPU was "
        "available where this page was produced.",
        "",
        "## How it is measured",
        "",
        "* Loss: `bench/loss_bench.py`. Each case runs in a freshly forked process with "
        f"{loss_settings.threads} torch threads; peak memory is the RSS high-water mark "
        "(`ru_maxrss`) after the runs minus the one after allocating the inputs (on CUDA: "
        "`torch.cuda.max_memory_allocated`). One warm-up run, then up to `--reps` timed runs "
        "within `--case-seconds`; a case slower than that reports its warm-up run. Cases whose "
        f"estimated memory exceeds {100 * loss_bench.MEMORY_FRACTION:.0f} % of the available "
        f"RAM are skipped (listed above with the estimate). `clamp_tiled` uses "
        f"{loss_settings.tile} rows per block; `clamp` is the default path, which switches to "
        f"the tiled path itself above `AUTO_TILE_MIN_IMAGES` = {AUTO_TILE_MIN_IMAGES} images.",
        "* `dense_reference` (`bench/dense_reference.py`) is the official code's formulation "
        "with the `N x N x D` difference tensor; `bench/loss_bench.py` checks that it gives "
        "the loss and gradient of `clamp` (float64) and writes no results otherwise.",
        "* SimCLR gets all V*N rows (an image's views are its positives); VICReg pairs view v "
        "with view v + V/2; BYOL predicts view v + V/2 from view v (one call over all rows).",
        "* Training step: `bench/train_step_bench.py`, methods timed round-robin, best step.",
        "",
    ]
    return "\n".join(lines)


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
    print("\n".join(targets_section(loss, steps)))


if __name__ == "__main__":
    main()
