"""Pairwise centroid distances from one Gram matrix, exact for close pairs.

``|c_i|² + |c_j|² - 2 c_i·c_j`` needs no ``N x N x D`` tensor, but it cancels for close
pairs: in float32 its absolute error is about ``1e-7``, i.e. 10 % of the squared distance at a
separation of ``1e-3`` (``min_margin``'s default). Pairs whose Gram squared distance is below
``CLOSE_SQ_DISTANCE`` are therefore recomputed from their differences ``c_i - c_j``, as the
official code computes every pair, in chunks of at most ``_CHUNK_ELEMENTS`` numbers. Memory
stays ``O(rows x N)`` scalars plus one chunk, however many pairs are close.
"""

from __future__ import annotations

import torch

CLOSE_SQ_DISTANCE = 0.05
"""Squared distances below this (separations below ~0.22) are recomputed from differences;
above it the Gram form's relative error is below ~1e-5."""

_CHUNK_ELEMENTS = 1 << 22


def _chunks(count: int, dim: int):
    step = max(1, _CHUNK_ELEMENTS // max(dim, 1))
    for start in range(0, count, step):
        yield slice(start, min(start + step, count))


def accumulate_pair_forces(
    points: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    weights: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """``out[rows[k]] += weights[k] * (points[rows[k]] - points[cols[k]])`` for every k, in
    chunks (the differences are never all in memory at once).

    Args:
        points: ``[N, D]``.
        rows, cols: ``[K]`` indices into ``points``.
        weights: ``[K]``.
        out: ``[N, D]``, updated in place.
    """
    for part in _chunks(rows.numel(), points.shape[1]):
        diff = points[rows[part]] - points[cols[part]]
        out.index_add_(0, rows[part], weights[part, None] * diff)


class _ExactSquaredDistances(torch.autograd.Function):
    """``|points[rows] - points[cols]|²`` from differences; backward recomputes them chunk by
    chunk, so only the indices are saved."""

    @staticmethod
    def forward(ctx, points, rows, cols):  # type: ignore[override]
        out = points.new_empty(rows.numel())
        for part in _chunks(rows.numel(), points.shape[1]):
            out[part] = (points[rows[part]] - points[cols[part]]).pow(2).sum(dim=1)
        ctx.save_for_backward(points, rows, cols)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        points, rows, cols = ctx.saved_tensors
        grad_points = torch.zeros_like(points)
        # d|p_r - p_c|² / d p_r = 2 (p_r - p_c), and the opposite for p_c.
        accumulate_pair_forces(points, rows, cols, 2.0 * grad, grad_points)
        accumulate_pair_forces(points, cols, rows, 2.0 * grad, grad_points)
        return grad_points, None, None


def block_squared_distances(
    points: torch.Tensor, sq_norms: torch.Tensor, row_start: int, rows: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Squared distances of ``points[row_start:row_start + rows]`` to all points.

    Args:
        points: ``[N, D]`` centroids.
        sq_norms: ``[N]`` squared norms of ``points``.
        row_start, rows: the block of rows.

    Returns:
        ``(sq_dist [rows, N], (close_rows, close_cols))``: the squared distances (Gram form,
        exact from differences for the close off-diagonal pairs) and the block coordinates of
        those close pairs (``close_rows`` relative to ``row_start``).
    """
    block = points[row_start : row_start + rows]
    sq_dist = (
        sq_norms[row_start : row_start + rows, None] + sq_norms[None, :] - 2.0 * (block @ points.T)
    ).clamp_min(0)
    close = sq_dist.detach() < CLOSE_SQ_DISTANCE
    local = torch.arange(rows, device=points.device)
    close[local, local + row_start] = False  # self-pairs never interact
    close_rows, close_cols = close.nonzero(as_tuple=True)
    if close_rows.numel():
        exact = _ExactSquaredDistances.apply(points, close_rows + row_start, close_cols)
        sq_dist = sq_dist.index_put((close_rows, close_cols), exact)
    return sq_dist, (close_rows, close_cols)
