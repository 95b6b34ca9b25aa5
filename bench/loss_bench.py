"""Forward + backward time and peak memory of the CLAMP loss paths and of solo-learn's losses.

Usage::

    python3 bench/loss_bench.py                 # full grid (several minutes on 2 cores)
    python3 bench/loss_bench.py --quick         # a small subset, under a minute
    python3 bench/loss_bench.py --json out.json --skips-json skipped.json
    python3 bench/loss_bench.py --points 1024,4,512 --cpu-time   # one point, with CPU time

Implementations, all on the same ``V * N`` embeddings of dimension ``D``:

* ``clamp``: ``clamp_loss_func`` with its default path (the dense Gram matrix up to
  ``AUTO_TILE_MIN_IMAGES`` images, the tiled path above);
* ``clamp_tiled``: the tiled path with ``--tile`` rows per block;
* ``dense_reference``: the official code's ``N x N x D`` formulation, the tests' reference
  (``reference_clamp_loss`` of tests/clamp_testing.py), checked against ``clamp`` (float64,
  40 images) after the cases: a mismatch raises before anything is written;
* ``simclr``: ``solo.losses.simclr.simclr_loss_func`` over all ``V * N`` rows, the views of an
  image being its positives;
* ``vicreg``: ``vicreg_loss_func(z[: V*N/2], z[V*N/2 :])``: view v is paired with view v + V/2;
* ``byol``: ``byol_loss_func(p, t)`` with p the ``V * N`` rows (standing in for the predictor's
  outputs) and t a detached target of the same shape, rolled so view v predicts view v + V/2.

Memory on CPU: every case runs in a freshly forked process (the parent computes nothing
until every case has run, so the fork is safe and the child's RSS high-water mark starts at
its own size); ``peak_mb`` is ``ru_maxrss`` after the runs minus ``ru_maxrss`` once the inputs are
allocated. On CUDA it is ``torch.cuda.max_memory_allocated`` above the memory held by the
inputs. A case whose estimated memory exceeds the budget (``MEMORY_FRACTION`` of MemAvailable,
or of the GPU's memory) is skipped with its estimate printed; so is ``clamp`` above
``AUTO_TILE_MIN_IMAGES`` images, where the default path *is* the tiled path.

Time: the best of ``--reps`` timed runs after one untimed warm-up run (the minimum is the
least noisy estimator on a machine shared with other jobs), with fewer reps for cases whose
warm-up exceeds ``--case-seconds`` (then the warm-up run itself is reported).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for _path in (str(REPO_ROOT), str(BENCH_DIR), str(REPO_ROOT / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402
from clamp_testing import reference_clamp_loss  # noqa: E402

import solo_clamp.losses.clamp as clamp_module  # noqa: E402

try:
    from solo.losses.byol import byol_loss_func
    from solo.losses.simclr import simclr_loss_func
    from solo.losses.vicreg import vicreg_loss_func

    SOLO_ERROR: Optional[str] = None
except ImportError as err:  # solo-learn absent: its three losses are skipped
    SOLO_ERROR = f"solo-learn is not importable ({err})"

IMPLS = ("clamp", "clamp_tiled", "dense_reference", "simclr", "vicreg", "byol")
SOLO_IMPLS = ("simclr", "vicreg", "byol")
RS = 7.0
FLOAT_BYTES = 4
MEMORY_FRACTION = 0.8
"""Share of the available RAM (or of the GPU's memory) a single case may use."""

FULL_GRID = [(n, v, d) for n in (256, 1024, 4096) for v in (4, 16) for d in (256, 2048)]
TARGET_POINT = (1024, 4, 512)
LARGE_N = [(8192, 4, 512), (16384, 4, 512), (32768, 4, 512)]
QUICK_GRID = [(256, 4, 256), (1024, 4, 256)]
QUICK_LARGE_N: list[tuple[int, int, int]] = []


@dataclass(frozen=True)
class Case:
    """One benchmark point: an implementation on V views of N images in D dimensions."""

    impl: str
    N: int
    V: int
    D: int


def dense_reference_loss(z: torch.Tensor, num_views: int, **kwargs: float) -> torch.Tensor:
    """The loss of the tests' reference (``N x N x D`` differences of the centroids)."""
    return reference_clamp_loss(z, num_views, **kwargs).loss


def estimate_bytes(case: Case, tile: int) -> int:
    """A deliberately generous estimate of the peak extra memory of fwd + bwd.

    Calibrated against measured CPU peaks (see docs/benchmarks.md); the constants count the
    ``N x N`` (or ``V*N x V*N``, or ``N x N x D``) float tensors alive at the peak.
    """
    n, v, d = case.N, case.V, case.D
    rows = v * n
    embeddings = 8 * rows * d
    if case.impl == "clamp":
        pairs = n * n if n <= clamp_module.AUTO_TILE_MIN_IMAGES else n * min(n, tile)
        return FLOAT_BYTES * (16 * pairs + embeddings)
    if case.impl == "clamp_tiled":
        return FLOAT_BYTES * (16 * n * min(n, tile) + embeddings)
    if case.impl == "dense_reference":
        return FLOAT_BYTES * (4 * n * n * d + 16 * n * n + embeddings)
    if case.impl == "simclr":
        return FLOAT_BYTES * (8 * rows * rows + embeddings)
    if case.impl == "vicreg":
        return FLOAT_BYTES * (2 * embeddings + 8 * d * d)
    if case.impl == "byol":
        return FLOAT_BYTES * (2 * embeddings)
    raise ValueError(f"unknown impl {case.impl!r}; choose from {IMPLS}.")


def memory_budget(device: str) -> int:
    """Bytes a single case may use: ``MEMORY_FRACTION`` of the available RAM or GPU memory."""
    if device == "cuda":
        return int(MEMORY_FRACTION * torch.cuda.get_device_properties(0).total_memory)
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(MEMORY_FRACTION * int(line.split()[1]) * 1024)
    return 8 << 30


def plan(grid, large_n, impls, tile: int, budget: int) -> tuple[list[Case], list[dict]]:
    """The cases to run and the skipped ones, each skip with its reason."""
    cases, skips = [], []
    points = [(p, list(impls)) for p in grid] + [(p, list(impls)) for p in large_n]
    for (n, v, d), names in points:
        for impl in names:
            case = Case(impl, n, v, d)
            reason = None
            if impl in SOLO_IMPLS and SOLO_ERROR is not None:
                reason = SOLO_ERROR
            elif impl == "clamp" and n > clamp_module.AUTO_TILE_MIN_IMAGES:
                reason = (
                    f"N > AUTO_TILE_MIN_IMAGES={clamp_module.AUTO_TILE_MIN_IMAGES}: the "
                    "default path is the tiled path here (see clamp_tiled)"
                )
            elif estimate_bytes(case, tile) > budget:
                reason = (
                    f"estimated {estimate_bytes(case, tile) / 2**30:.1f} GiB > budget "
                    f"{budget / 2**30:.1f} GiB"
                )
            if reason is None:
                cases.append(case)
            else:
                skips.append({**asdict(case), "reason": reason})
    return cases, skips


def build(case: Case, tile: int, device: str) -> tuple[Callable[[], torch.Tensor], torch.Tensor]:
    """Allocates the inputs of a case and returns (loss closure, leaf tensor)."""
    gen = torch.Generator(device=device).manual_seed(0)
    rows = case.V * case.N
    z = torch.randn(rows, case.D, generator=gen, device=device).requires_grad_(True)
    if case.impl == "clamp":
        return (lambda: clamp_module.clamp_loss_func(z, case.V, rs=RS)), z
    if case.impl == "clamp_tiled":
        return (lambda: clamp_module.clamp_loss_func(z, case.V, rs=RS, tile_size=tile)), z
    if case.impl == "dense_reference":
        return (lambda: dense_reference_loss(z, case.V, rs=RS)), z
    if case.impl == "simclr":
        indexes = torch.arange(case.N, device=device).repeat(case.V)
        return (lambda: simclr_loss_func(z, indexes=indexes, temperature=0.2)), z
    if case.impl == "vicreg":
        half = rows // 2
        return (lambda: vicreg_loss_func(z[:half], z[half:])), z
    if case.impl == "byol":
        target = torch.randn(rows, case.D, generator=gen, device=device)
        target = target.roll(shifts=(case.V // 2) * case.N, dims=0)
        return (lambda: byol_loss_func(z, target)), z
    raise ValueError(f"unknown impl {case.impl!r}; choose from {IMPLS}.")


def check_dense_reference() -> None:
    """Raises AssertionError unless ``dense_reference`` computes the loss and gradient of
    ``clamp`` (float64, 40 images, about 3/4 of the pairs interacting, some ranges capped):
    the timings must compare one and the same function. Computes in this process."""
    z = torch.randn(4 * 40, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    values, grads = [], []
    for loss_fn in (dense_reference_loss, clamp_module.clamp_loss_func):
        leaf = z.clone().requires_grad_(True)
        loss = loss_fn(leaf, 4, rs=0.8, lw0=0.1, max_range=0.9)
        values.append(loss.detach())
        grads.append(torch.autograd.grad(loss, leaf)[0])
    torch.testing.assert_close(values[0], values[1], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-10)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    case: Case, tile: int, device: str, reps: int, case_seconds: float, cpu_time: bool = False
) -> dict:
    """Runs one case in the current process and returns its record.

    With ``cpu_time`` the record also holds ``cpu_ms``: the process's user + system time of
    the best timed run, all threads (less sensitive than wall time to other jobs on the cores).
    """
    loss_fn, z = build(case, tile, device)
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = _max_rss_bytes()

    def step() -> tuple[float, float]:
        cpu_start, start = _cpu_seconds(), time.perf_counter()
        loss_fn().backward()
        _sync(device)
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_start
        z.grad = None
        return elapsed, cpu

    warmup = step()
    timed = min(reps, int(case_seconds / warmup[0])) if warmup[0] > 0 else reps
    runs = [step() for _ in range(timed)] or [warmup]
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else _max_rss_bytes()
    record = {
        **asdict(case),
        "time_ms": 1e3 * min(wall for wall, _ in runs),
        "peak_mb": max(0, peak - baseline) / 2**20,
    }
    if cpu_time:
        record["cpu_ms"] = 1e3 * min(cpu for _, cpu in runs)
    return record


def _child(
    case: Case, tile: int, threads: int, reps: int, case_seconds: float, cpu_time: bool, conn
) -> None:
    try:
        torch.set_num_threads(threads)
        conn.send(("ok", measure(case, tile, "cpu", reps, case_seconds, cpu_time)))
    except BaseException as err:  # noqa: BLE001 - report any failure to the parent
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


def run_forked(
    case: Case, tile: int, threads: int, reps: int, case_seconds: float, cpu_time: bool = False
) -> dict:
    """Runs a case in a freshly forked process (fresh RSS high-water mark)."""
    context = mp.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child, args=(case, tile, threads, reps, case_seconds, cpu_time, sender)
    )
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = "error", "the worker died (out of memory?)"
    process.join()
    if status != "ok":
        raise RuntimeError(payload)
    return payload


def format_table(records: list[dict], skips: list[dict]) -> str:
    """A plain-text table per (N, V, D) with time and memory ratios vs the default clamp."""
    by_point: dict[tuple[int, int, int], dict[str, dict]] = {}
    for rec in records:
        by_point.setdefault((rec["N"], rec["V"], rec["D"]), {})[rec["impl"]] = rec
    for skip in skips:
        by_point.setdefault((skip["N"], skip["V"], skip["D"]), {})
    with_cpu = any("cpu_ms" in rec for rec in records)
    lines = [
        f"{'N':>6} {'V':>3} {'D':>5}  {'impl':<16}{'time ms':>11}{'peak MB':>11}"
        f"{'time/clamp':>12}{'mem/clamp':>11}"
        + (f"{'cpu ms':>11}{'cpu/clamp':>11}" if with_cpu else "")
    ]
    for point in sorted(by_point):
        base = by_point[point].get("clamp")
        for impl in IMPLS:
            rec = by_point[point].get(impl)
            if rec is None:
                reason = next(
                    (
                        s["reason"]
                        for s in skips
                        if (s["N"], s["V"], s["D"]) == point and s["impl"] == impl
                    ),
                    None,
                )
                if reason:
                    lines.append(
                        f"{point[0]:>6} {point[1]:>3} {point[2]:>5}  {impl:<16}skipped: {reason}"
                    )
                continue
            t_ratio = m_ratio = "-"
            if base is not None:
                t_ratio = f"{rec['time_ms'] / base['time_ms']:.2f}"
                m_ratio = f"{rec['peak_mb'] / base['peak_mb']:.2f}" if base["peak_mb"] > 0 else "-"
            cpu = ""
            if with_cpu and "cpu_ms" in rec:
                c_ratio = (
                    f"{rec['cpu_ms'] / base['cpu_ms']:.2f}"
                    if base is not None and base.get("cpu_ms")
                    else "-"
                )
                cpu = f"{rec['cpu_ms']:>11.1f}{c_ratio:>11}"
            lines.append(
                f"{point[0]:>6} {point[1]:>3} {point[2]:>5}  {impl:<16}"
                f"{rec['time_ms']:>11.1f}{rec['peak_mb']:>11.1f}"
                f"{t_ratio:>12}{m_ratio:>11}{cpu}"
            )
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small subset (< 60 s)")
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--skips-json", type=Path, help="write the skipped cases here")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    parser.add_argument("--tile", type=int, default=512, help="rows per block of clamp_tiled")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per case (max)")
    parser.add_argument(
        "--case-seconds", type=float, default=2.0, help="time budget of the timed runs of one case"
    )
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument(
        "--points",
        nargs="+",
        metavar="N,V,D",
        help="run only these points instead of the grid, e.g. 1024,4,512",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="add cpu_ms (process CPU time of the best run) to the records",
    )
    args = parser.parse_args(argv)
    if args.points:
        try:
            args.points = [tuple(int(x) for x in p.split(",")) for p in args.points]
        except ValueError:
            parser.error("--points takes N,V,D triples of integers, e.g. 1024,4,512.")
        if any(len(p) != 3 or min(p) < 1 for p in args.points):
            parser.error("--points takes N,V,D triples of positive integers, e.g. 1024,4,512.")
    if args.threads < 1 or args.tile < 1 or args.reps < 1:
        parser.error("--threads, --tile and --reps must be positive integers.")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch sees no CUDA device.")
    return args


def main(argv: Optional[list[str]] = None) -> list[dict]:
    from tqdm import tqdm

    args = parse_args(argv)
    grid, large_n = (
        (QUICK_GRID, QUICK_LARGE_N) if args.quick else (FULL_GRID + [TARGET_POINT], LARGE_N)
    )
    if args.points:
        grid, large_n = args.points, []
    budget = memory_budget(args.device)
    cases, skips = plan(grid, large_n, args.impls, args.tile, budget)
    if SOLO_ERROR is not None:
        print(f"note: {SOLO_ERROR}; simclr, vicreg and byol are skipped.")
    for skip in skips:
        print(f"skip {skip['impl']} N={skip['N']} V={skip['V']} D={skip['D']}: {skip['reason']}")

    records = []
    for case in tqdm(cases, desc="loss cases", unit="case"):
        try:
            if args.device == "cpu":
                rec = run_forked(
                    case, args.tile, args.threads, args.reps, args.case_seconds, args.cpu_time
                )
            else:
                rec = measure(
                    case, args.tile, args.device, args.reps, args.case_seconds, args.cpu_time
                )
                torch.cuda.empty_cache()
        except RuntimeError as err:
            skips.append({**asdict(case), "reason": f"failed: {err}"})
            continue
        records.append(rec)

    if "dense_reference" in args.impls:
        # Not before the cases: a parent that computes on CPU hangs its forked children (its
        # thread pool does not survive the fork). A mismatch raises before anything is written.
        check_dense_reference()
    print(
        f"\ndevice={args.device} threads={args.threads} tile={args.tile} torch={torch.__version__}"
    )
    print(format_table(records, skips))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1))
    if args.skips_json:
        args.skips_json.parent.mkdir(parents=True, exist_ok=True)
        args.skips_json.write_text(json.dumps(skips, indent=1))
    return records


if __name__ == "__main__":
    main()
