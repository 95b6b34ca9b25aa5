"""A dense re-implementation of the official CLAMP loss formulation, for checks and benchmarks.

This follows the formulation of the official CLAMP code (Zhang, Heeger, Martiniani,
NeurIPS 2025): pair distances come from the ``N x N x D`` broadcast difference tensor
``centers[:, None, :] - centers[None, :, :]`` and the interacting pairs are selected by
boolean-mask indexing. It is written from the paper's equations, not copied, and is
deliberately naive: its memory grows as ``N**2 * D``. ``solo_clamp.losses.clamp`` computes
the same loss from a Gram matrix (``O(N**2)``) or in row tiles (``O(N * tile)``).

It is a contender of ``bench/loss_bench.py``, which checks that it computes the same loss as
``solo_clamp.losses.clamp`` before timing it. The tests have their own reference formula
(``tests/clamp_testing.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dense_reference_loss(
    z: torch.Tensor,
    num_views: int,
    rs: float,
    pot_pow: float = 2.0,
    lw0: float = 0.0,
    lw1: float = 1.0,
    min_margin: float = 1e-3,
    max_range: float = 1.5,
) -> torch.Tensor:
    """CLAMP loss through the dense ``N x N x D`` difference tensor.

    Args:
        z: ``[num_views * N, D]`` embeddings, view-major (row ``v * N + i`` is view v of image i).
        num_views: V, views per image (>= 2).
        rs: radius scale of the sub-manifolds.
        pot_pow: exponent of the soft-sphere potential.
        lw0: weight of the total radius term.
        lw1: weight of the pair repulsion term.
        min_margin: pairs closer than this are ignored.
        max_range: cap of the interaction range.

    Returns:
        The scalar loss ``log(E + 1e-6)``, in float64 for float64 input and float32 otherwise.
    """
    if z.dim() != 2 or z.shape[0] % num_views != 0:
        raise ValueError(
            f"z must be [num_views * N, D] with rows divisible by num_views={num_views}, "
            f"got shape {tuple(z.shape)}."
        )
    if num_views < 2:
        raise ValueError(f"num_views must be >= 2, got {num_views}.")
    if z.dtype != torch.float64:
        z = z.float()
    dim = z.shape[1]
    views = z.reshape(num_views, -1, dim)
    num_images = views.shape[1]

    views = views - views.reshape(-1, dim).mean(dim=0)
    views = F.normalize(views, dim=-1)
    centers = views.mean(dim=0)  # [N, D]

    trace = ((views - centers[None]) ** 2).sum(dim=-1).sum(dim=0) / (num_views - 1)
    radii = rs * torch.sqrt(trace / min(dim, num_views) + 1e-12)

    diff = centers[:, None, :] - centers[None, :, :]  # [N, N, D]
    dists = torch.sqrt((diff**2).sum(dim=-1) + 1e-12)
    ranges = torch.clamp(radii[:, None] + radii[None, :] + 1e-6, max=max_range)

    not_self = ~torch.eye(num_images, dtype=torch.bool, device=z.device)
    mask = not_self & (dists > min_margin) & (dists < ranges)
    overlap = 1.0 - dists[mask] / ranges[mask]
    energy = 0.5 * lw1 * (overlap**pot_pow).sum() + lw0 * radii.sum()
    return torch.log(energy + 1e-6)
