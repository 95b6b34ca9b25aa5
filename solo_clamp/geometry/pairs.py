"""Pair distances from Gram matrices, in row blocks: never an ``N x N x D`` tensor, and at
most ``_PAIR_BLOCK_ELEMENTS`` pair values built at once by the blockwise measures."""

from __future__ import annotations

from typing import Iterator

import torch

from solo_clamp.geometry.checks import shape_of

_PAIR_BLOCK_ELEMENTS = 1 << 22
"""Largest ``rows x B`` block of pair values built at once by the blockwise functions."""


def row_blocks(num_rows: int, num_cols: int) -> Iterator[slice]:
    """Row slices whose ``rows x num_cols`` blocks hold at most ``_PAIR_BLOCK_ELEMENTS``."""
    step = max(1, _PAIR_BLOCK_ELEMENTS // max(1, num_cols))
    for start in range(0, num_rows, step):
        yield slice(start, min(num_rows, start + step))


def block_sq_distances(
    rows: torch.Tensor, cols: torch.Tensor, col_sq_norms: torch.Tensor
) -> torch.Tensor:
    """Squared distances ``[R, C]`` between ``rows [R, D]`` and ``cols [C, D]`` via a Gram."""
    row_sq = rows.pow(2).sum(dim=1)
    return (row_sq[:, None] + col_sq_norms[None, :] - 2.0 * (rows @ cols.T)).clamp_min(0)


def upper_pairs(matrix: torch.Tensor) -> torch.Tensor:
    """Entries above the diagonal of a square matrix, one per unordered pair.

    Args:
        matrix: ``[B, B]``.

    Returns:
        ``[B * (B - 1) / 2]``: ``matrix[i, j]`` for ``i < j``, in row-major order.
    """
    if (
        not isinstance(matrix, torch.Tensor)
        or matrix.dim() != 2
        or (matrix.shape[0] != matrix.shape[1])
    ):
        raise ValueError(f"matrix must be a square 2-D tensor [B, B], got {shape_of(matrix)}.")
    rows, cols = torch.triu_indices(*matrix.shape, offset=1, device=matrix.device)
    return matrix[rows, cols]
