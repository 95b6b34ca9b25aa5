"""Regenerates docs/benchmarks.md and docs/benchmarks_loss.png from fresh benchmark runs.

Usage::

    python3 bench/report.py            # full loss grid + training steps (~10-15 min, 2 cores)
    python3 bench/report.py --quick    # the --quick subsets, to check the pipeline (~2.5 min)

It runs ``bench/loss_bench.py`` and ``bench/train_step_bench.py``, then writes the page from
``bench/templates/benchmarks.md.j2`` (ratios vs the default CLAMP path and vs SimCLR, the
targets, the machine) and a log-log plot of loss time and peak memory against N.
``--json-dir`` keeps their JSON; ``--reuse`` renders from a directory of earlier JSON instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import common
import loss_bench
import torch
import train_step_bench

from solo_clamp.internals import installed_version
from solo_clamp.io import write_below_marker
from solo_clamp.losses.clamp import AUTO_TILE_MIN_IMAGES
from solo_clamp.provenance import cpu_name

MARKER = (
    "<!-- Below this line: `python3 bench/report.py`'s output; it rewrites everything below. "
    "Hand-written text (measured separately) stays above it. -->"
)


def machine_info() -> dict[str, str]:
    """CPU model, cores, memory, GPU and library versions of this machine."""
    memory = common.meminfo_bytes("MemTotal")
    return {
        "CPU": cpu_name(),
        "logical cores": str(os.cpu_count()),
        "memory": "unknown" if memory is None else f"{memory / 2**30:.1f} GiB",
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{dist: installed_version(dist) for dist in ("solo-learn", "lightning")},
    }


def targets(loss: list[dict], steps: list[dict]) -> dict[str, Any]:
    """The measured values of the performance issue's targets (None: not measured), read from
    the ratios of the two tables."""
    loss_rows = loss_bench.loss_rows(loss, [])
    at_target = {
        r["impl"]: r for r in loss_rows if loss_bench.point_of(r) == loss_bench.TARGET_POINT
    }
    dense, simclr = at_target.get("dense_reference", {}), at_target.get("simclr", {})
    by_method = {r["method"]: r for r in train_step_bench.steps_rows(steps)}
    clamp, percrop = by_method.get("clamp", {}), by_method.get("clamp_percrop", {})
    return {
        "point": dict(zip("NVD", loss_bench.TARGET_POINT)),
        "memory": dense.get("peak_ratio"),
        "time": dense.get("time_ratio"),
        "simclr": simclr.get("time_ratio"),
        "cpu_dense": dense.get("cpu_ratio"),
        "cpu_simclr": simclr.get("cpu_ratio"),
        "grid": sorted(
            r["time_ratio"]
            for r in loss_rows
            if r["impl"] == "simclr" and r["time_ratio"] is not None
        ),
        "step": clamp.get("vs_simclr"),
        "step_cpu": clamp.get("vs_simclr_cpu"),
        "percrop": percrop.get("vs_simclr"),
    }


def plot(loss: list[dict], path: Path) -> None:
    """Log-log time and peak memory vs N, one line per (impl, D) at V = 4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, int], list[dict]] = {}
    for record in sorted(loss, key=lambda r: r["N"]):
        if record["V"] == 4:
            series.setdefault((record["impl"], record["D"]), []).append(record)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = dict(zip(loss_bench.IMPLS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    styles = {256: "-", 512: "--", 2048: ":"}
    for (impl, dim), records in sorted(series.items()):
        for axis, key in zip(axes, ("time_ms", "peak_mb")):
            axis.plot(
                [r["N"] for r in records],
                [max(r[key], 1e-3) for r in records],
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


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="use the benches' --quick subsets")
    parser.add_argument("--json-dir", type=Path, help="keep the raw JSON here")
    parser.add_argument(
        "--reuse", type=Path, help="render from loss.json, skips.json, steps.json in this directory"
    )
    parser.add_argument(
        "--docs", type=Path, default=common.REPO_ROOT / "docs", help="output directory"
    )
    parser.add_argument("--loss-args", default="", help="extra arguments for loss_bench.py")
    parser.add_argument("--steps-args", default="", help="extra arguments for train_step_bench.py")
    args = parser.parse_args(argv)
    # the settings the benchmarks run with, which the page states (parsed first: a bad argument
    # fails before the benchmarks run)
    loss_settings = loss_bench.parse_args(args.loss_args.split())
    steps_settings = train_step_bench.parse_args(args.steps_args.split())

    load_before = f"{os.getloadavg()[0]:.2f}"
    timing = f"rendered from the JSON in {args.reuse}"
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.reuse or args.json_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        loss_json, skips_json, steps_json = (
            folder / name for name in ("loss.json", "skips.json", "steps.json")
        )
        if args.reuse is None:
            quick = ["--quick"] if args.quick else []
            start = time.perf_counter()
            loss_bench.main(
                [*quick, "--cpu-time", "--json", str(loss_json), "--skips-json", str(skips_json)]
                + args.loss_args.split()
            )
            steps_start = time.perf_counter()
            train_step_bench.main([*quick, "--json", str(steps_json), *args.steps_args.split()])
            timing = (
                f"loss benchmark {steps_start - start:.0f} s, "
                f"training-step benchmark {time.perf_counter() - steps_start:.0f} s"
            )
        loss = json.loads(loss_json.read_text())
        skips = json.loads(skips_json.read_text()) if skips_json.exists() else []
        steps = json.loads(steps_json.read_text()) if steps_json.exists() else []

    meta = {
        "date": dt.date.today().isoformat(),
        "command": "python3 bench/report.py" + (" --quick" if args.quick else ""),
        "timing": timing,
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": f"{os.getloadavg()[0]:.2f}",
    }
    measured = targets(loss, steps)
    args.docs.mkdir(parents=True, exist_ok=True)
    plot(loss, args.docs / "benchmarks_loss.png")
    page = common.render(
        "benchmarks.md.j2",
        meta=meta,
        loss_settings=loss_settings,
        steps_settings=steps_settings,
        t=measured,
        loss_rows=loss_bench.loss_rows(loss, skips),
        steps=train_step_bench.steps_rows(steps),
        memory_fraction=loss_bench.MEMORY_FRACTION,
        auto_tile=AUTO_TILE_MIN_IMAGES,
    )
    write_below_marker(args.docs / "benchmarks.md", MARKER, page)
    print(f"wrote {args.docs / 'benchmarks.md'} and {args.docs / 'benchmarks_loss.png'}")
    print(common.render("targets.md.j2", t=measured), end="")


if __name__ == "__main__":
    main()
