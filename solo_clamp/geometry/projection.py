"""Encoder against projector: how much of the augmentations each keeps, how many dimensions
each uses, and where the projector looks in the encoder's space.

Pure torch (no solo-learn import). Background: Cosentino et al. 2022, "Toward a Geometrical
Understanding of Self-supervised Contrastive Learning" (arXiv:2205.06926), find that with
stronger augmentations the projector, rather than the encoder, becomes invariant to them, by
projecting the encoder's representation onto a low-dimensional space, a noisy estimate of the
tangent plane of the data manifold in the encoder's representation; which is why projector
features transfer worse. :func:`encoder_projector_geometry` measures the three parts of that
statement on the views of held-out images.

Layout: ``views [V, B, F]`` holds the encoder (backbone) features of ``V`` augmented views of
each of ``B`` images; the projector maps ``[N, F] -> [N, D]``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import jacrev, vmap

from solo_clamp.geometry.checks import check_views
from solo_clamp.geometry.features import effective_rank, participation_ratio

RANK_TOLERANCE = 1e-6
"""A singular value of an image's centred views below this times the largest counts as 0."""


def within_image_share(z: torch.Tensor) -> torch.Tensor:
    """Share of the feature variance that lies within images, across their views.

    The one-way random-effects estimate (an ANOVA with the images as groups), summed over the
    feature dimensions: with ``c_i`` the mean of image ``i``'s ``V`` views and ``c`` the mean
    of the ``B`` centroids,

    * within-image variance ``w = sum_{v,i} ||z_vi - c_i||^2 / (B (V - 1))``;
    * between-image variance ``b = max(0, V sum_i ||c_i - c||^2 / (B - 1) - w) / V`` (the
      centroids' spread less the part their own views' noise puts in it);
    * share ``w / (w + b)``.

    So features that depend only on the image give 0 and features that are noise independent
    of the image give 1 (in expectation; exactly 1 whenever the centroids spread no more than
    the noise alone would make them). Unlike the raw ratio of sums of squares
    (:func:`~solo_clamp.geometry.measures.within_image_variance_fraction`, ``(V - 1) / V``
    for pure noise) it does not depend on ``V``. Scale-invariant. ``z [V, B, F]`` with ``V >= 2``
    views and ``B >= 2`` images gives a float64 scalar in ``[0, 1]``; 0 when the features do not
    vary at all.
    """
    z = check_views(z, min_images=2).double()
    num_views, num_images, _ = z.shape
    centroids = z.mean(dim=0)
    within = (z - centroids).pow(2).sum() / (num_images * (num_views - 1))
    spread = num_views * (centroids - centroids.mean(dim=0)).pow(2).sum() / (num_images - 1)
    between = (spread - within).clamp_min(0.0) / num_views
    if within + between <= 0:
        return within.new_zeros(())
    return (within / (within + between)).clamp(0.0, 1.0)


def augmentation_bases(views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal bases of each image's augmentation directions in the encoder's space, of
    ``views [V, B, F]``.

    Returns:
        ``(bases [B, F, V], dims [B])``: the columns ``0 .. dims[i] - 1`` of ``bases[i]`` span
        ``T_i``, the span of the centred views ``h_vi - c_i`` (dimension at most ``V - 1``:
        singular values below :data:`RANK_TOLERANCE` times the largest are dropped); the
        other columns are 0.
    """
    views = check_views(views).double()
    centred = (views - views.mean(dim=0)).permute(1, 2, 0)  # [B, F, V]
    left, singular, _ = torch.linalg.svd(centred, full_matrices=False)  # [B, F, K], [B, K]
    keep = singular > RANK_TOLERANCE * singular[:, :1].clamp_min(1e-300)
    keep &= singular[:, :1] > 0
    return left * keep[:, None, :], keep.sum(dim=1)


def tangent_share(
    views: torch.Tensor, projector: Callable[[torch.Tensor], torch.Tensor], chunk_size: int = 64
) -> dict[str, float]:
    """Share of the projector's input directions that lie in the encoder's augmentation
    directions (the local tangent estimate).

    For image ``i``: ``c_i`` is the mean of its encoder views ``h_vi``; the **local tangent
    estimate** ``T_i`` is the span of its centred views ``h_vi - c_i`` (the directions in which
    the training augmentations move the image in the encoder's space; dimension
    ``k_i <= V - 1``, :func:`augmentation_bases`); ``J_i = dP/dh (c_i)`` is the projector's
    ``D x F`` Jacobian at the centroid. Its right singular vectors ``u_j`` with singular values
    ``s_j`` are the projector's input directions and their gains; the share of image ``i`` is

        ``t_i = ||J_i Q_i||_F^2 / ||J_i||_F^2 = sum_j s_j^2 ||Q_i^T u_j||^2 / sum_j s_j^2``

    with ``Q_i`` an orthonormal basis of ``T_i``: the fraction of the projector's squared
    gain, over input directions weighted uniformly, that lies in ``T_i``. 1: the projector
    reads only augmentation directions; 0: it ignores them (it is invariant to them to first
    order). A projector blind to direction (``J^T J`` a multiple of the identity) gives
    ``k_i / F``, the chance level. Images whose views coincide (``k_i = 0``) or where the
    Jacobian is 0 are left out.

    Args:
        views: ``[V, B, F]`` encoder features.
        projector: ``[N, F] -> [N, D]``, differentiable (an ``nn.Module`` in eval mode; its
            parameters are not differentiated).
        chunk_size: images per batch of Jacobians (memory ``chunk_size * D * F``).

    Returns:
        ``{"tangent_share": mean_i t_i, "tangent_chance": mean_i k_i / F}`` over the images
        kept (NaN when none is).
    """
    views = check_views(views)
    bases, dims = augmentation_bases(views)
    centroids = views.mean(dim=0)

    def single(h: torch.Tensor) -> torch.Tensor:
        return projector(h.unsqueeze(0)).squeeze(0)

    shares, chances = [], []
    for start in range(0, centroids.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        jacobian = vmap(jacrev(single))(centroids[rows]).detach().double()  # [b, D, F]
        total = jacobian.pow(2).sum(dim=(1, 2))
        inside = (jacobian @ bases[rows]).pow(2).sum(dim=(1, 2))
        keep = (dims[rows] > 0) & (total > 0)
        shares.append((inside / total.clamp_min(1e-300))[keep])
        chances.append(dims[rows][keep].double() / views.shape[2])
    share, chance = torch.cat(shares), torch.cat(chances)
    if share.numel() == 0:
        return {"tangent_share": float("nan"), "tangent_chance": float("nan")}
    return {"tangent_share": float(share.mean()), "tangent_chance": float(chance.mean())}


def encoder_projector_geometry(
    views: torch.Tensor, projector: Callable[[torch.Tensor], torch.Tensor], chunk_size: int = 64
) -> dict[str, float]:
    """Encoder against projector on the same views: invariance, dimension, tangent share.

    The projector features are ``z_vi = projector(h_vi)``. For each of the two spaces
    (``encoder_*`` of ``views``, ``projector_*`` of ``z``):

    * ``invariance`` = 1 - :func:`within_image_share`: 1 when every image's views coincide
      (invariant to the augmentations), 0 when the features are noise independent of the
      image;
    * ``effective_rank`` (:func:`~solo_clamp.geometry.features.effective_rank`) and
      ``participation_ratio`` (:func:`~solo_clamp.geometry.features.participation_ratio`) of
      all ``V * B`` views' features;

    and ``tangent_share`` / ``tangent_chance`` (:func:`tangent_share`): how much of the
    projector's input directions lie in the span of the encoder's augmentation directions.

    Args:
        views: ``[V, B, F]`` encoder features of ``V`` augmented views of ``B >= 2`` images.
        projector: ``[N, F] -> [N, D]`` (e.g. a method's ``projector`` in eval mode).
        chunk_size: images per batch of Jacobians.
    """
    views = check_views(views, min_images=2)
    num_views, num_images, dim = views.shape
    with torch.no_grad():
        z = projector(views.reshape(-1, dim)).reshape(num_views, num_images, -1)
    out: dict[str, float] = {}
    for space, feats in (("encoder", views), ("projector", z)):
        flat = feats.reshape(num_views * num_images, -1)
        out[f"{space}_invariance"] = float(1.0 - within_image_share(feats))
        out[f"{space}_effective_rank"] = float(effective_rank(flat))
        out[f"{space}_participation_ratio"] = float(participation_ratio(flat))
    return {**out, **tangent_share(views, projector, chunk_size)}
