"""All-gathering the embeddings of every rank for a loss over the global batch.

``ddp_gradient`` chooses what flows back to each rank (see :mod:`solo_clamp.losses.clamp`):
``"full"`` sums the gradients of all ranks (DDP's average then equals the single-process
gradient), ``"local"`` detaches the other ranks' embeddings as the official CLAMP code does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

DDP_GRADIENTS = ("full", "local")


class _GatherImages(torch.autograd.Function):
    """All-gathers ``[V, B, D]`` along the image axis; backward sums the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rank = dist.get_rank()
        ctx.local_images = x.shape[1]
        parts[ctx.rank] = x
        return torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = ctx.rank * ctx.local_images
        return grad[:, start : start + ctx.local_images]


def gather_images(z_views: torch.Tensor, ddp_gradient: str = "full") -> torch.Tensor:
    """Gathers ``[V, B, D]`` from all ranks into ``[V, B * world, D]`` (identity off DDP).

    ``ddp_gradient="full"`` sums the ranks' gradients in backward; ``"local"`` detaches the
    other ranks' embeddings (the official code's convention).
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return z_views
    if ddp_gradient == "full":
        return _GatherImages.apply(z_views)
    parts = [torch.empty_like(z_views) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z_views.detach().contiguous())
    parts[dist.get_rank()] = z_views
    return torch.cat(parts, dim=1)
