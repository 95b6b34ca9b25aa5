"""Forward + backward time and peak memory of the CLAMP loss paths and of solo-learn's losses.

Usage::

    python3 bench/loss_bench.py                 # full grid (several minutes on 2 cores)
    python3 bench/loss_bench.py --quick         # a small subset, under a minute
    python3 bench/loss_bench.py --json out.json --skips-json skipped.json
    python3 bench/loss_bench.py --points 1024,4,512 --cpu-time   # one point, with CPU time

Implementations, all on the same ``V * N`` embeddings of dimension ``D``: ``clamp``
(``clamp_loss_func``'s default path: the dense Gram matrix up to ``AUTO_TILE_MIN_IMAGES``
images; skipped above, where it is the tiled path), ``clamp_tiled`` (the tiled path with
``--tile`` rows per block), ``dense_reference`` (the tests' reference, checked against
``clamp`` after the cases: a mismatch raises before anything is written) and solo-learn's
``simclr``, ``vicreg`` and ``byol`` (``build`` pairs their views).

On the CPU each case runs in a freshly forked process (its own RSS high-water mark); a case
whose estimated memory exceeds the budget is skipped with its estimate. Time is the best of
``--reps`` runs after a warm-up (the minimum is the least noisy estimator on a shared
machine), fewer when the warm-up exceeds ``--case-seconds``; the details: docs/benchmarks.md.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from argparse import Namespace
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import common
import torch
from clamp_testing import reference_clamp_loss

import solo_clamp.losses.clamp as clamp_module

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


@dataclass(frozen=True)
class Case:
    """One benchmark point: an implementation on V views of N images in D dimensions."""

    impl: str
    N: int
    V: int
    D: int


def estimate_bytes(case: Case, tile: int) -> int:
    """A deliberately generous estimate of the peak extra memory of fwd + bwd.

    Calibrated against measured CPU peaks (see docs/benchmarks.md); the constants count the
    ``N x N`` (or ``V*N x V*N``, or ``N x N x D``) float tensors alive at the peak.
    """
    n, v, d = case.N, case.V, case.D
    embeddings = 8 * v * n * d
    floats = {
        "clamp": 16 * n * n + embeddings,  # the Gram path: plan skips it above AUTO_TILE_MIN_IMAGES
        "clamp_tiled": 16 * n * min(n, tile) + embeddings,
        "dense_reference": 4 * n * n * d + 16 * n * n + embeddings,
        "simclr": 8 * (v * n) ** 2 + embeddings,
        "vicreg": 2 * embeddings + 8 * d * d,
        "byol": 2 * embeddings,
    }
    return FLOAT_BYTES * floats[case.impl]


def memory_budget(device: str) -> int:
    """Bytes a single case may use: ``MEMORY_FRACTION`` of the available RAM or GPU memory."""
    if device == "cuda":
        return int(MEMORY_FRACTION * torch.cuda.get_device_properties(0).total_memory)
    available = common.meminfo_bytes("MemAvailable")
    return 8 << 30 if available is None else int(MEMORY_FRACTION * available)


def plan(
    points: list[tuple[int, ...]], impls: list[str], tile: int, budget: int
) -> tuple[list[Case], list[dict]]:
    """The cases to run and the skipped ones, each skip with its reason."""
    cases, skips = [], []
    for point in points:
        for case in (Case(impl, *point) for impl in impls):
            reason = None
            if case.impl in SOLO_IMPLS and SOLO_ERROR is not None:
                reason = SOLO_ERROR
            elif case.impl == "clamp" and case.N > clamp_module.AUTO_TILE_MIN_IMAGES:
                reason = (
                    f"N > AUTO_TILE_MIN_IMAGES={clamp_module.AUTO_TILE_MIN_IMAGES}: the "
                    "default path is the tiled path here (see clamp_tiled)"
                )
            elif (needed := estimate_bytes(case, tile)) > budget:
                reason = f"estimated {needed / 2**30:.1f} GiB > budget {budget / 2**30:.1f} GiB"
            if reason is None:
                cases.append(case)
            else:
                skips.append({**asdict(case), "reason": reason})
    return cases, skips


def build(case: Case, args: Namespace) -> tuple[Callable[[], torch.Tensor], torch.Tensor]:
    """Allocates the inputs of a case on ``args.device`` and returns (loss closure, leaf)."""
    device, rs, rows = args.device, args.rs, case.V * case.N
    gen = torch.Generator(device=device).manual_seed(0)
    z = torch.randn(rows, case.D, generator=gen, device=device).requires_grad_(True)
    if case.impl == "clamp":
        return (lambda: clamp_module.clamp_loss_func(z, case.V, rs=rs)), z
    if case.impl == "clamp_tiled":
        return (lambda: clamp_module.clamp_loss_func(z, case.V, rs=rs, tile_size=args.tile)), z
    if case.impl == "dense_reference":
        return (lambda: reference_clamp_loss(z, case.V, rs=rs).loss), z
    if case.impl == "simclr":
        indexes = torch.arange(case.N, device=device).repeat(case.V)
        return (lambda: simclr_loss_func(z, indexes=indexes, temperature=0.2)), z
    if case.impl == "vicreg":
        return (lambda: vicreg_loss_func(z[: rows // 2], z[rows // 2 :])), z
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
    leaves = [z.clone().requires_grad_(True) for _ in range(2)]
    settings = {"rs": 0.8, "lw0": 0.1, "max_range": 0.9}
    reference = reference_clamp_loss(leaves[0], 4, **settings).loss
    loss = clamp_module.clamp_loss_func(leaves[1], 4, **settings)
    torch.testing.assert_close(reference, loss, rtol=1e-10, atol=1e-10)
    grads = [torch.autograd.grad(value, leaf)[0] for value, leaf in zip((reference, loss), leaves)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-10)


def measure(case: Case, args: Namespace) -> dict:
    """Runs one case in the current process (on ``args.device``) and returns its record; with
    ``args.cpu_time`` it also holds ``cpu_ms``, the process's user + system time of the best
    timed run, all threads (less sensitive than wall time to other jobs on the cores)."""
    device = args.device
    loss_fn, z = build(case, args)
    common.synchronize(device)

    def peak_bytes() -> int:
        if device == "cuda":
            return torch.cuda.max_memory_allocated()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline = peak_bytes()

    def step() -> tuple[float, float]:
        cpu_start, start = common.cpu_seconds(), time.perf_counter()
        loss_fn().backward()
        common.synchronize(device)
        elapsed, cpu = time.perf_counter() - start, common.cpu_seconds() - cpu_start
        z.grad = None
        return elapsed, cpu

    warmup = step()
    timed = min(args.reps, int(args.case_seconds / warmup[0])) if warmup[0] > 0 else args.reps
    runs = [step() for _ in range(timed)] or [warmup]
    record = {
        **asdict(case),
        "time_ms": 1e3 * min(wall for wall, _ in runs),
        "peak_mb": max(0, peak_bytes() - baseline) / 2**20,
    }
    if args.cpu_time:
        record["cpu_ms"] = 1e3 * min(cpu for _, cpu in runs)
    return record


def run_forked(case: Case, args: Namespace) -> dict:
    """Runs a case on the CPU in a freshly forked process (fresh RSS high-water mark); any
    failure there, the process's death included, is raised here as a RuntimeError."""
    context = mp.get_context("fork")
    with ProcessPoolExecutor(1, context, torch.set_num_threads, (args.threads,)) as process:
        try:
            return process.submit(measure, case, args).result()
        except Exception as err:  # noqa: BLE001 - main records it as a failed case
            raise RuntimeError(f"{type(err).__name__}: {err}") from err


def point_of(record: dict) -> tuple[int, int, int]:
    return record["N"], record["V"], record["D"]


def loss_rows(records: list[dict], skips: list[dict]) -> list[dict]:
    """The loss table's rows, point by point in ``IMPLS`` order: a record with its ratios to
    the default ``clamp`` at its point (None where not measured), or a skip with its reason."""
    clamp = {point_of(r): r for r in records if r["impl"] == "clamp"}
    rows = []
    for row in sorted([*records, *skips], key=lambda r: (*point_of(r), IMPLS.index(r["impl"]))):
        base = clamp.get(point_of(row), {})
        ratios = {
            f"{name}_ratio": common.ratio(row.get(key), base.get(key))
            for name, key in (("time", "time_ms"), ("peak", "peak_mb"), ("cpu", "cpu_ms"))
        }
        rows.append({"cpu_ms": None, **row, "skipped": row.get("reason"), **ratios})
    return rows


def parse_point(text: str) -> tuple[int, ...]:
    """An argparse type: ``N,V,D``, three positive integers."""
    values = tuple(common.positive_int(x) for x in text.split(","))
    if len(values) != 3:
        raise ValueError(text)
    return values


def parse_args(argv: Optional[list[str]] = None) -> Namespace:
    parser = common.bench_parser(__doc__, quick="a small subset (< 60 s)", threads=2)
    parser.add_argument("--skips-json", type=Path, help="write the skipped cases here")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--tile", type=common.positive_int, default=512, help="rows per block")
    parser.add_argument("--reps", type=common.positive_int, default=5, help="timed runs per case")
    parser.add_argument(
        "--case-seconds", type=float, default=2.0, help="time budget of the timed runs of one case"
    )
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument(
        "--points",
        nargs="+",
        type=parse_point,
        metavar="N,V,D",
        help="run only these points instead of the grid, e.g. 1024,4,512",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="add cpu_ms (process CPU time of the best run) to the records",
    )
    parser.set_defaults(rs=RS)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch sees no CUDA device.")
    return args


def main(argv: Optional[list[str]] = None) -> list[dict]:
    from tqdm import tqdm

    args = parse_args(argv)
    points = args.points or (QUICK_GRID if args.quick else FULL_GRID + [TARGET_POINT] + LARGE_N)
    cases, skips = plan(points, args.impls, args.tile, memory_budget(args.device))
    if SOLO_ERROR is not None:
        print(f"note: {SOLO_ERROR}; simclr, vicreg and byol are skipped.")
    for skip in skips:
        print(f"skip {skip['impl']} N={skip['N']} V={skip['V']} D={skip['D']}: {skip['reason']}")

    records = []
    for case in tqdm(cases, desc="loss cases", unit="case"):
        try:
            records.append(run_forked(case, args) if args.device == "cpu" else measure(case, args))
        except RuntimeError as err:
            skips.append({**asdict(case), "reason": f"failed: {err}"})
        if args.device == "cuda":
            torch.cuda.empty_cache()

    if "dense_reference" in args.impls:
        # Not before the cases: a parent that computes on CPU hangs its forked children (its
        # thread pool does not survive the fork). A mismatch raises before anything is written.
        check_dense_reference()
    print(
        f"\ndevice={args.device} threads={args.threads} tile={args.tile} torch={torch.__version__}"
    )
    print(common.render("loss_table.md.j2", loss_rows=loss_rows(records, skips)), end="")
    common.write_json(args.json, records)
    common.write_json(args.skips_json, skips)
    return records


if __name__ == "__main__":
    main()
