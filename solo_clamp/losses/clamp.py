"""The CLAMP packing loss (Contrastive Learning As Manifold Packing).

Reference: Zhang, Heeger, Martiniani, "Contrastive Learning As Manifold Packing",
NeurIPS 2025.

The V augmented views of image i form a sub-manifold, modelled as a ball of centre ``c_i``
(the mean of its L2-normalised views) and radius ``r_i = rs * sqrt(trace(C_i) / min(D, V))``.
Overlapping balls repel each other through a short-range soft-sphere potential, exactly
like particles in a jammed packing:

    E = 0.5 * lw1 * sum_{i != j, min_margin < d_ij < S_ij} (1 - d_ij / S_ij) ** pot_pow
        + lw0 * sum_i r_i,          S_ij = min(r_i + r_j, max_range)
    loss = log(E + 1e-6)

Unlike the official implementation, pair distances come from one Gram matrix of the
centroids, so no ``N x N x D`` tensor is ever built. Above ``AUTO_TILE_MIN_IMAGES`` images
(or when ``tile_size`` is given) the pair energy is evaluated in row blocks by a custom
autograd function whose backward recomputes each block
(:mod:`solo_clamp.losses.pair_energy`): peak memory is then ``O(N * tile_size + N * V * D)``
instead of ``O(N**2)``.

Close pairs of centroids, where the Gram form cancels, are recomputed from their differences
(:mod:`solo_clamp.losses.pair_distances`), so float32 matches float64 down to separations of
``min_margin``.

Distributed convention: with ``gather=True`` and an initialised process group, every
rank gathers all ranks' embeddings (all ranks must hold the same number of images), so
each rank computes the loss of the global batch. ``ddp_gradient`` says what flows back:

* ``"full"`` (default): the gather's backward sums the gradients of all ranks, so after DDP
  averages the parameter gradients they equal the single-process gradients of the
  concatenated global batch exactly (factor 1; solo-learn's ``gather`` convention). Results
  do not depend on the number of GPUs.
* ``"local"``: the other ranks' embeddings are detached, exactly as the official CLAMP code
  does; after DDP's average the parameter gradients are ``1 / world_size`` of the
  single-process ones. The paper's multi-GPU learning rates were tuned under this convention.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from solo_clamp.errors import DivergedError
from solo_clamp.losses.gather import DDP_GRADIENTS, gather_images
from solo_clamp.losses.pair_energy import EPS_SQRT, dense_pair_energy, tiled_pair_energy

AUTO_TILE_MIN_IMAGES = 4096
"""Above this many images (global batch) the tiled path is used when ``tile_size`` is None."""

_TILE_ELEMENTS = 1 << 24
"""Elements of one ``tile_size x N`` block used to pick the automatic tile size."""

_EPS_LOG = 1e-6

STAT_NAMES = ("mean_radius", "neighbours", "centroid_distance", "overlap_fraction")


class NonFiniteEmbeddingsError(DivergedError, ValueError):
    """The embeddings given to the loss hold NaN or Inf (training diverged)."""


def _validate(
    z: torch.Tensor,
    num_views: int,
    rs: float,
    min_margin: float,
    max_range: float,
    ddp_gradient: str,
) -> None:
    if not isinstance(z, torch.Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must be a 2-D tensor [num_views * B, D], got {shape}.")
    if not isinstance(num_views, int) or num_views < 2:
        raise ValueError(
            f"num_views must be an integer >= 2 (a sub-manifold needs at least two views), "
            f"got {num_views!r}."
        )
    if z.shape[0] % num_views != 0:
        raise ValueError(
            f"z has {z.shape[0]} rows, which is not divisible by num_views={num_views}; "
            "rows must be view-major [num_views * B, D]."
        )
    if not rs > 0:
        raise ValueError(f"rs must be > 0, got {rs!r}.")
    if not max_range > min_margin:
        raise ValueError(
            f"max_range must be > min_margin, got max_range={max_range!r}, "
            f"min_margin={min_margin!r}."
        )
    if ddp_gradient not in DDP_GRADIENTS:
        raise ValueError(
            f"ddp_gradient must be one of {list(DDP_GRADIENTS)}, got {ddp_gradient!r}."
        )
    # The one non-finite check of a training step (it synchronises with the device).
    if not torch.isfinite(z).all():
        raise NonFiniteEmbeddingsError(
            "z contains non-finite values (NaN or Inf): the embeddings diverged. "
            "Lower the learning rate or enable gradient clipping."
        )


def normalize_views(z_views: torch.Tensor) -> torch.Tensor:
    """Step 1 of the loss: centre ``[V, N, D]`` on the mean of all ``V * N`` rows, then
    L2-normalise each row."""
    return F.normalize(z_views - z_views.mean(dim=(0, 1), keepdim=True), dim=-1)


def submanifold_geometry(z_views: torch.Tensor, rs: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids and radii of the sub-manifolds (steps 2-5 of the loss).

    Args:
        z_views: ``[V, N, D]`` embeddings, view-major.
        rs: radius scale.

    Returns:
        ``(centroids [N, D], radii [N])`` after centring on the mean of all ``V * N`` rows and
        L2-normalising each row.
    """
    num_views, _, dim = z_views.shape
    z_views = normalize_views(z_views)
    centroids = z_views.mean(dim=0)
    spread = (z_views - centroids).pow(2).sum(dim=(0, 2)) / (num_views - 1)
    radii = rs * torch.sqrt(spread / min(dim, num_views) + EPS_SQRT)
    return centroids, radii


def _resolve_tile(tile_size: Optional[int], num_images: int) -> Optional[int]:
    if tile_size is None:
        if num_images <= AUTO_TILE_MIN_IMAGES:
            return None
        return max(1, min(num_images, _TILE_ELEMENTS // num_images))
    if not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer or None, got {tile_size!r}.")
    return tile_size


def clamp_loss_and_stats(
    z: torch.Tensor,
    num_views: int,
    rs: float,
    pot_pow: float = 2.0,
    lw0: float = 0.0,
    lw1: float = 1.0,
    min_margin: float = 1e-3,
    max_range: float = 1.5,
    gather: bool = True,
    tile_size: Optional[int] = None,
    ddp_gradient: str = "full",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CLAMP loss and its packing diagnostics, from the same intermediates.

    Args:
        z: ``[num_views * B, D]`` embeddings, view-major: row ``v * B + b`` is view ``v`` of
            image ``b`` (``torch.cat`` of the per-crop projector outputs).
        num_views: V, the number of views per image (>= 2).
        rs: radius scale of the sub-manifolds (> 0).
        pot_pow: exponent of the soft-sphere potential.
        lw0: weight of the total radius term.
        lw1: weight of the repulsion term.
        min_margin: pairs closer than this are ignored (coincident centroids).
        max_range: upper bound of the interaction range ``S_ij``.
        gather: all-gather the images of every rank when torch.distributed is initialised.
        tile_size: rows per block of the tiled path; None picks the dense Gram path up to
            ``AUTO_TILE_MIN_IMAGES`` images and a tiled path above.
        ddp_gradient: ``"full"`` or ``"local"``: what flows back through the gather (see the
            module docstring).

    Returns:
        ``(loss, stats)``: the scalar loss and a dict of detached scalars: ``mean_radius``,
        ``neighbours`` (mean interacting neighbours per sub-manifold), ``centroid_distance``
        (mean over pairs i != j) and ``overlap_fraction`` (interacting pairs / all pairs).

    Examples:
        >>> z = torch.randn(4 * 32, 128)  # 4 views of 32 images
        >>> loss, stats = clamp_loss_and_stats(z, num_views=4, rs=7.0)
    """
    _validate(z, num_views, rs, min_margin, max_range, ddp_gradient)
    with torch.autocast(device_type=z.device.type, enabled=False):
        # Half precision is promoted to float32; float64 is kept (gradient checks need it).
        z_views = (z if z.dtype == torch.float64 else z.float()).reshape(num_views, -1, z.shape[1])
        if gather:
            z_views = gather_images(z_views, ddp_gradient)
        num_images = z_views.shape[1]
        if num_images < 2:
            raise ValueError(
                f"CLAMP needs at least 2 images in the (global) batch to pack, got {num_images}; "
                "increase optimizer.batch_size."
            )
        centroids, radii = submanifold_geometry(z_views, rs)
        tile = _resolve_tile(tile_size, num_images)
        if tile is None:
            pair_energy, counts = dense_pair_energy(
                centroids, radii, min_margin, max_range, pot_pow
            )
        else:
            pair_energy, counts = tiled_pair_energy(
                centroids, radii, tile, min_margin, max_range, pot_pow
            )
        energy = 0.5 * lw1 * pair_energy + lw0 * radii.sum()
        loss = torch.log(energy + _EPS_LOG)

    num_pairs = num_images * (num_images - 1)
    stats = {
        "mean_radius": radii.detach().mean(),
        "neighbours": counts[0].detach() / num_images,
        "centroid_distance": counts[1].detach() / num_pairs,
        "overlap_fraction": counts[0].detach() / num_pairs,
    }
    return loss, stats


def clamp_loss_func(
    z: torch.Tensor,
    num_views: int,
    rs: float,
    pot_pow: float = 2.0,
    lw0: float = 0.0,
    lw1: float = 1.0,
    min_margin: float = 1e-3,
    max_range: float = 1.5,
    gather: bool = True,
    tile_size: Optional[int] = None,
    ddp_gradient: str = "full",
) -> torch.Tensor:
    """Computes the CLAMP packing loss; see :func:`clamp_loss_and_stats` for the arguments.

    Examples:
        >>> z = torch.randn(16 * 8, 256, requires_grad=True)  # 16 views of 8 images
        >>> clamp_loss_func(z, num_views=16, rs=7.0).backward()
    """
    loss, _ = clamp_loss_and_stats(
        z, num_views, rs, pot_pow, lw0, lw1, min_margin, max_range, gather, tile_size, ddp_gradient
    )
    return loss
