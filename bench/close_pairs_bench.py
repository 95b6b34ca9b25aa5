"""What the exact close-pair distances cost: the loss with and without them, side by side.

Usage::

    python3 bench/close_pairs_bench.py            # N = 1024 (Gram path) and 8192 (tiled path)
    python3 bench/close_pairs_bench.py --quick    # N = 256 and 1024

The loss recomputes from differences the pairs whose Gram squared distance is below
``CLOSE_SQ_DISTANCE`` (``solo_clamp.losses.pair_distances``). ``exact`` is the loss as shipped;
``gram_only`` sets the threshold to 0, i.e. the Gram form for every pair (the behaviour before
the fix). Two inputs: ``spread`` (random embeddings: almost no close pairs, the usual case) and
``duplicates`` (clusters of 16 near-duplicate images, centroids ~1e-3 apart: 15 close pairs per
image, as in web-scale data with many near-copies). Cases are timed
round-robin, best of ``--reps``, forward + backward; the ratio exact / gram_only is the number
to read. Float32 error against float64 is printed beside it (max over the gradient, relative).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR.parent))

import torch  # noqa: E402

import solo_clamp.losses.pair_distances as pair_distances  # noqa: E402
from solo_clamp.losses.clamp import clamp_loss_func  # noqa: E402

VIEWS, DIM, RS = 4, 512, 7.0


def inputs(kind: str, images: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if kind == "spread":
        return torch.randn(VIEWS * images, DIM, generator=gen)
    clusters = torch.randn(images // 16, DIM, generator=gen).repeat_interleave(16, dim=0)
    views = clusters + 0.3 * torch.randn(VIEWS, 1, images, DIM, generator=gen)[:, 0, :1]
    views = views + 1e-3 * torch.randn(VIEWS, images, DIM, generator=gen)
    return views.reshape(VIEWS * images, DIM)


def grad(z: torch.Tensor, threshold: float) -> tuple[float, torch.Tensor]:
    pair_distances.CLOSE_SQ_DISTANCE = threshold
    leaf = z.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    clamp_loss_func(leaf, VIEWS, rs=RS).backward()
    return time.perf_counter() - start, leaf.grad


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (2 oversubscribe a shared 2-core machine)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shipped = pair_distances.CLOSE_SQ_DISTANCE
    sizes = (256, 1024) if args.quick else (1024, 8192)
    records = []
    print(
        "| N | input | gram_only ms | exact ms | exact / gram_only | grad error gram_only "
        "| grad error exact |\n|---|---|---|---|---|---|---|"
    )
    for images in sizes:
        for kind in ("spread", "duplicates"):
            z = inputs(kind, images)
            times = {"gram_only": [], "exact": []}
            grads = {}
            for _ in range(args.reps):
                for name, threshold in (("gram_only", 0.0), ("exact", shipped)):
                    seconds, grads[name] = grad(z, threshold)
                    times[name].append(seconds)
            _, reference = grad(z.double(), shipped)
            errors = {
                name: ((g.double() - reference).norm() / reference.norm()).item()
                for name, g in grads.items()
            }
            best = {name: 1e3 * min(values) for name, values in times.items()}
            record = {
                "images": images,
                "input": kind,
                **{f"{k}_ms": v for k, v in best.items()},
                "ratio": best["exact"] / best["gram_only"],
                **{f"{k}_grad_error": v for k, v in errors.items()},
            }
            records.append(record)
            print(
                f"| {images} | {kind} | {best['gram_only']:.1f} | {best['exact']:.1f} | "
                f"{record['ratio']:.2f} | {errors['gram_only']:.1e} | {errors['exact']:.1e} |"
            )
    pair_distances.CLOSE_SQ_DISTANCE = shipped
    return records


if __name__ == "__main__":
    main()
