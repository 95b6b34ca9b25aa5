"""What the exact close-pair distances cost: the loss with and without them, side by side.

Usage::

    python3 bench/close_pairs_bench.py            # N = 1024 (Gram path) and 8192 (tiled path)
    python3 bench/close_pairs_bench.py --quick    # N = 256 and 1024

The loss recomputes from differences the pairs whose Gram squared distance is below
``CLOSE_SQ_DISTANCE`` (``solo_clamp.losses.pair_distances``). ``exact`` is the loss as shipped;
``gram_only`` sets the threshold to 0, i.e. the Gram form for every pair (the behaviour before
the fix). Two inputs: ``spread`` (random embeddings: almost no close pairs, the usual case) and
``duplicates`` (clusters of 16 near-duplicate images, centroids ~1e-3 apart: 15 close pairs per
image, as in web-scale data with many near-copies). Cases are timed round-robin, best of
``--reps``, forward + backward, on 1 torch thread by default (2 oversubscribe a shared 2-core
machine); the ratio exact / gram_only is the number to read. The float32 gradient's relative
error against float64 is printed beside it.
"""

from __future__ import annotations

import time
from typing import Optional

import common
import torch

import solo_clamp.losses.pair_distances as pair_distances
from solo_clamp.losses.clamp import clamp_loss_func

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
    """Seconds of forward + backward with ``threshold`` as CLOSE_SQ_DISTANCE, and the gradient."""
    pair_distances.CLOSE_SQ_DISTANCE = threshold
    leaf = z.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    clamp_loss_func(leaf, VIEWS, rs=RS).backward()
    return time.perf_counter() - start, leaf.grad


def main(argv: Optional[list[str]] = None) -> list[dict]:
    from tqdm import tqdm

    parser = common.bench_parser(__doc__, quick="N = 256 and 1024", threads=1)
    parser.add_argument("--reps", type=common.positive_int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shipped = pair_distances.CLOSE_SQ_DISTANCE
    thresholds = {"gram_only": 0.0, "exact": shipped}
    sizes = (256, 1024) if args.quick else (1024, 8192)
    records = []
    try:
        for images, kind in tqdm([(n, k) for n in sizes for k in ("spread", "duplicates")]):
            z = inputs(kind, images)
            times: dict[str, list[float]] = {name: [] for name in thresholds}
            grads = {}
            for _ in range(args.reps):
                for name, threshold in thresholds.items():
                    seconds, grads[name] = grad(z, threshold)
                    times[name].append(seconds)
            _, reference = grad(z.double(), shipped)
            record = {"images": images, "input": kind}
            for name in thresholds:
                record[f"{name}_ms"] = 1e3 * min(times[name])
                error = (grads[name].double() - reference).norm() / reference.norm()
                record[f"{name}_grad_error"] = error.item()
            records.append({**record, "ratio": record["exact_ms"] / record["gram_only_ms"]})
    finally:
        pair_distances.CLOSE_SQ_DISTANCE = shipped
    print(common.render("close_pairs.md.j2", records=records), end="")
    common.write_json(args.json, records)
    return records


if __name__ == "__main__":
    main()
