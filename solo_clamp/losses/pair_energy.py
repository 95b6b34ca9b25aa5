"""The soft-sphere energy of the packing loss, summed over the ordered pairs of sub-manifolds
``i != j``: ``(1 - d_ij / S_ij) ** pot_pow`` where ``min_margin < d_ij < S_ij``, ``S_ij =
min(r_i + r_j, max_range)`` (:mod:`solo_clamp.losses.clamp`).

Distances come from one Gram matrix, close pairs from their differences
(:mod:`solo_clamp.losses.pair_distances`). :func:`dense_pair_energy` builds the ``N x N`` block
at once; :func:`tiled_pair_energy` walks row blocks with a custom autograd function whose
backward recomputes each block, so no ``N x N`` intermediate outlives its block.
"""

from __future__ import annotations

import torch

from solo_clamp.losses.pair_distances import accumulate_pair_forces, block_squared_distances

EPS_SQRT = 1e-12
"""Added under every square root of the loss (radii and distances)."""
_EPS_RANGE = 1e-6


def _pair_block(
    centroids: torch.Tensor,
    radii: torch.Tensor,
    sq_norms: torch.Tensor,
    row_start: int,
    rows: int,
    min_margin: float,
    max_range: float,
):
    """Distances, interaction ranges, interaction mask, off-diagonal mask and the close pairs
    (see :func:`block_squared_distances`) for rows ``row_start:row_start + rows`` vs all."""
    sq_dist, close = block_squared_distances(centroids, sq_norms, row_start, rows)
    dist_ = torch.sqrt(sq_dist + EPS_SQRT)
    r_rows = radii[row_start : row_start + rows]
    reach = (r_rows[:, None] + radii[None, :] + _EPS_RANGE).clamp(max=max_range)
    cols = torch.arange(centroids.shape[0], device=centroids.device)
    off_diag = cols[None, :] != (cols[row_start : row_start + rows])[:, None]
    mask = off_diag & (dist_ > min_margin) & (dist_ < reach)
    return dist_, reach, mask, off_diag, close


def _soft_sphere(dist_, reach, mask, pot_pow: float) -> torch.Tensor:
    # The masked-out base is set to 1 so that pow() has a finite gradient there (for
    # pot_pow < 1 a zero base would give inf * 0 = NaN in backward).
    base = torch.where(mask, 1.0 - dist_ / reach, torch.ones_like(dist_))
    return torch.where(mask, base.pow(pot_pow), torch.zeros_like(dist_))


def dense_pair_energy(
    centroids: torch.Tensor,
    radii: torch.Tensor,
    min_margin: float,
    max_range: float,
    pot_pow: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(energy, counts)`` of ``centroids [N, D]`` and ``radii [N]``: the summed energy and
    the detached ``[interacting pairs, summed distance over pairs i != j]``."""
    sq_norms = centroids.pow(2).sum(dim=1)
    dist_, reach, mask, off_diag, _ = _pair_block(
        centroids, radii, sq_norms, 0, centroids.shape[0], min_margin, max_range
    )
    energy = _soft_sphere(dist_, reach, mask, pot_pow).sum()
    counts = torch.stack([mask.sum().to(dist_.dtype), (dist_.detach() * off_diag).sum()])
    return energy, counts


class _TiledPairEnergy(torch.autograd.Function):
    """Sum over ordered pairs of the soft-sphere energy, evaluated in row blocks.

    Forward keeps only the inputs; backward recomputes each block and applies the
    analytic gradient, so no ``N x N`` intermediate outlives its block.
    """

    @staticmethod
    def forward(ctx, centroids, radii, tile, min_margin, max_range, pot_pow):  # type: ignore[override]
        sq_norms = centroids.pow(2).sum(dim=1)
        energy = centroids.new_zeros(())
        counts = centroids.new_zeros(2)
        for start in range(0, centroids.shape[0], tile):
            rows = min(tile, centroids.shape[0] - start)
            dist_, reach, mask, off_diag, _ = _pair_block(
                centroids, radii, sq_norms, start, rows, min_margin, max_range
            )
            energy += _soft_sphere(dist_, reach, mask, pot_pow).sum()
            counts[0] += mask.sum()
            counts[1] += (dist_ * off_diag).sum()
        ctx.save_for_backward(centroids, radii)
        ctx.hyper = (tile, min_margin, max_range, pot_pow)
        ctx.mark_non_differentiable(counts)
        return energy, counts

    @staticmethod
    def backward(ctx, grad_energy, _grad_counts):  # type: ignore[override]
        # Recompute in float32 even if backward is called inside an autocast region.
        with torch.autocast(device_type=grad_energy.device.type, enabled=False):
            return _TiledPairEnergy._backward(ctx, grad_energy)

    @staticmethod
    def _backward(ctx, grad_energy):
        centroids, radii = ctx.saved_tensors
        tile, min_margin, max_range, pot_pow = ctx.hyper
        sq_norms = centroids.pow(2).sum(dim=1)
        grad_c = torch.zeros_like(centroids)
        grad_r = torch.zeros_like(radii)
        for start in range(0, centroids.shape[0], tile):
            rows = min(tile, centroids.shape[0] - start)
            c_rows, r_rows = centroids[start : start + rows], radii[start : start + rows]
            dist_, reach, mask, _, (close_rows, close_cols) = _pair_block(
                centroids, radii, sq_norms, start, rows, min_margin, max_range
            )
            base = torch.where(mask, 1.0 - dist_ / reach, torch.ones_like(dist_))
            slope = torch.where(mask, pot_pow * base.pow(pot_pow - 1.0), torch.zeros_like(dist_))
            # d e / d d_ij = -slope / S_ij ;  d e / d S_ij = slope * d_ij / S_ij**2
            weight = -slope / (reach * dist_)
            unclamped = (r_rows[:, None] + radii[None, :] + _EPS_RANGE) < max_range
            # Each unordered pair appears twice (ij and ji) with equal terms, hence the 2.
            # Close pairs take sum_j w_ij (c_i - c_j) from their differences: the expanded
            # form w_ij c_i - w_ij c_j cancels like the Gram distance does.
            close_weight = weight[close_rows, close_cols]
            weight = weight.index_put((close_rows, close_cols), torch.zeros_like(close_weight))
            block_grad = weight.sum(dim=1, keepdim=True) * c_rows - weight @ centroids
            grad_c[start : start + rows] = 2.0 * block_grad
            accumulate_pair_forces(
                centroids, close_rows + start, close_cols, 2.0 * close_weight, grad_c
            )
            grad_r[start : start + rows] = 2.0 * (slope * dist_ / reach.pow(2) * unclamped).sum(
                dim=1
            )
        return grad_c * grad_energy, grad_r * grad_energy, None, None, None, None


def tiled_pair_energy(
    centroids: torch.Tensor,
    radii: torch.Tensor,
    tile: int,
    min_margin: float,
    max_range: float,
    pot_pow: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dense_pair_energy` in blocks of ``tile`` rows."""
    return _TiledPairEnergy.apply(centroids, radii, tile, min_margin, max_range, float(pot_pow))
