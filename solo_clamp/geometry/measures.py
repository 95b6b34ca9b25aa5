"""Geometry of the image sub-manifolds, for analysing CLAMP embeddings.

Pure torch (no solo-learn import). The functions take ``z`` of shape ``[V, B, D]``: ``V``
views (augmentations) of each of ``B`` images in a ``D``-dimensional space. A view-major
loss matrix ``[V * B, D]`` becomes this layout with ``z.reshape(V, B, D)``.

Normalisation. With ``normalize=True`` (the default of most functions) the embeddings are
prepared exactly as the CLAMP loss prepares them: centred on the mean of all ``V * B`` rows,
then every row L2-normalised. Centroids and radii then come from the loss's own
:func:`solo_clamp.losses.clamp.submanifold_geometry`, so they and the neighbour counts
match the loss's diagnostics. ``normalize=False`` measures the raw embeddings (for
example backbone features, or synthetic points of known geometry).

Definitions, for image ``i`` with (prepared) views ``x_vi`` and centroid
``c_i = mean_v x_vi``:

* sub-manifold covariance ``C_i = sum_v (x_vi - c_i)(x_vi - c_i)^T / (V - 1)`` (unbiased);
* unscaled radius ``r_i = sqrt(trace(C_i) / min(D, V))``, scaled radius ``R_i = rs * r_i``
  (the loss's radius);
* ``j != i`` is a neighbour of ``i`` when ``d_ij < min(0.99 * rs * (r_i + r_j), max_range)``
  with ``d_ij = ||c_i - c_j||``.

Every function takes ``z`` and a ``normalize`` flag (:func:`prepare_views` gives its meaning).
Pair distances always come from a Gram matrix of the centroids (never an
``N x N x D`` tensor); functions returning per-image values process the rows in blocks so
that their memory stays ``O(B * block)``. The functions are diagnostics, evaluated under
``torch.no_grad`` by their callers; their gradients are not guaranteed at degenerate points
(zero radius, zero-norm rows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from solo_clamp.geometry.checks import check_positive, check_views
from solo_clamp.geometry.pairs import block_sq_distances, row_blocks, upper_pairs
from solo_clamp.losses.clamp import normalize_views, submanifold_geometry

NEIGHBOUR_FACTOR = 0.99
"""``j`` is a neighbour of ``i`` when ``d_ij < NEIGHBOUR_FACTOR * rs * (r_i + r_j)``."""


def prepare_views(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The views as the geometry functions measure them.

    Args:
        z: ``[V, B, D]`` embeddings (views, images, dim).
        normalize: centre on the mean of all ``V * B`` rows, then L2-normalise each row, as
            the CLAMP loss does; False returns the (validated, floating) input unchanged.

    Returns:
        ``[V, B, D]`` floating tensor (float32, or float64 for float64 input).
    """
    z = check_views(z)
    if not normalize:
        return z
    return normalize_views(z)


def _centroids_and_radii(
    z: torch.Tensor, normalize: bool, rs: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(centroids [B, D], radii rs * r_i [B])`` of ``z [V, B, D]``; with ``normalize``
    exactly the CLAMP loss's (whose radii carry ``1e-12`` under the root)."""
    z = check_views(z)
    if normalize:
        return submanifold_geometry(z, rs)
    num_views, _, dim = z.shape
    return z.mean(dim=0), rs * torch.sqrt(_traces(z) / min(dim, num_views))


def submanifold_centroids(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``[B, D]``: the centroid ``c_i = mean_v x_vi`` of every image's views."""
    return _centroids_and_radii(z, normalize)[0]


def submanifold_traces(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``[B]``: the trace of every image's sub-manifold covariance, ``trace(C_i) = sum_v
    ||x_vi - c_i||^2 / (V - 1)`` (unbiased covariance)."""
    return _traces(prepare_views(z, normalize))


def _traces(views: torch.Tensor) -> torch.Tensor:
    """``[B]`` covariance traces of prepared views ``[V, B, D]``."""
    centred = views - views.mean(dim=0, keepdim=True)
    return centred.pow(2).sum(dim=(0, 2)) / (views.shape[0] - 1)


def submanifold_radii(z: torch.Tensor, rs: float = 1.0, normalize: bool = True) -> torch.Tensor:
    """``[B]``: the radius ``rs * sqrt(trace(C_i) / min(D, V))`` of every image's sub-manifold,
    as the CLAMP loss defines it (radius scale ``rs > 0``; ``rs=1`` gives the unscaled radius
    ``r_i``). With ``normalize=True`` these are the radii of
    :func:`solo_clamp.losses.clamp.submanifold_geometry` (with its ``1e-12`` under the root)."""
    return _centroids_and_radii(z, normalize, check_positive(rs, "rs"))[1]


def neighbour_counts(
    z: torch.Tensor,
    rs: float,
    max_range: float = math.inf,
    normalize: bool = True,
    factor: float = NEIGHBOUR_FACTOR,
) -> torch.Tensor:
    """Number of neighbouring sub-manifolds of every image.

    ``j != i`` is a neighbour of ``i`` when

        ``d_ij < min(factor * rs * (r_i + r_j), max_range)``,

    where ``d_ij = ||c_i - c_j||`` is the centroid distance and ``r_i = sqrt(trace(C_i) /
    min(D, V))`` the *unscaled* radius, so ``rs * r_i`` is the loss's radius and the default
    ``factor=0.99`` counts the pairs whose balls overlap by more than 1 % of their contact
    distance. The relation is symmetric. With ``factor=1``, the loss's ``max_range`` and
    ``normalize=True``, the mean count equals the loss's ``neighbours`` statistic (which also
    ignores pairs closer than ``min_margin``). Distances come from a Gram matrix, evaluated
    in row blocks (memory ``O(B * block)``, never ``B x B x D``).

    Args:
        rs: radius scale (> 0).
        max_range: cap on the interaction distance (> 0); the default ``inf`` applies none.
        factor: multiplies the contact distance (> 0).

    Returns:
        ``[B]`` int64 counts in ``[0, B - 1]``.
    """
    rs = check_positive(rs, "rs")
    check_positive(max_range, "max_range", " (inf for no cap)")
    check_positive(factor, "factor")
    centroids, radii = _centroids_and_radii(z, normalize)
    num_images = centroids.shape[0]
    sq_norms = centroids.pow(2).sum(dim=1)
    counts = torch.zeros(num_images, dtype=torch.int64, device=centroids.device)
    index = torch.arange(num_images, device=centroids.device)
    for rows in row_blocks(num_images, num_images):
        dist = torch.sqrt(block_sq_distances(centroids[rows], centroids, sq_norms))
        reach = (factor * rs * (radii[rows, None] + radii[None, :])).clamp(max=max_range)
        close = (dist < reach) & (index[rows, None] != index[None, :])
        counts[rows] = close.sum(dim=1)
    return counts


def centroid_distances(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``[B, B]``: the Euclidean distances between the centroids of all images (from a Gram
    matrix), symmetric with an exact zero diagonal; :func:`upper_pairs` turns it into the
    ``[B * (B - 1) / 2]`` vector of distinct pairs."""
    centroids = submanifold_centroids(z, normalize)
    sq_norms = centroids.pow(2).sum(dim=1)
    dist = torch.sqrt(block_sq_distances(centroids, centroids, sq_norms))
    dist = 0.5 * (dist + dist.T)
    return dist.fill_diagonal_(0.0)


def centroid_similarity(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``[B * (B - 1) / 2]``: the cosine similarity in ``[-1, 1]`` between the centroids of
    distinct images ``i < j`` (row-major; ``B >= 2``); a zero-norm centroid has similarity 0
    with every other."""
    check_views(z, min_images=2)
    centroids = F.normalize(submanifold_centroids(z, normalize), dim=-1)
    return upper_pairs(centroids @ centroids.T).clamp(-1.0, 1.0)


def principal_axes(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``[B, D]``: the top eigenvector (principal axis) of every image's sub-manifold
    covariance, a unit vector defined up to sign (and arbitrary within a degenerate top
    eigenspace); the zero vector for an image whose views coincide. Computed from the ``V x V``
    Gram matrix of the centred views (cost ``O(B V^2 D)``), never from the ``D x D``
    covariance."""
    views = prepare_views(z, normalize)
    centred = (views - views.mean(dim=0, keepdim=True)).transpose(0, 1)  # [B, V, D]
    gram = centred @ centred.transpose(1, 2)  # [B, V, V]
    _, eigvecs = torch.linalg.eigh(gram.double())
    top = eigvecs[..., -1].to(centred.dtype)  # [B, V], eigenvalues ascend
    axes = (top[:, None, :] @ centred).squeeze(1)  # [B, D]
    norms = axes.norm(dim=1, keepdim=True)
    tiny = centred.flatten(1).norm(dim=1, keepdim=True) * 1e-6
    return torch.where(norms > tiny, axes / norms.clamp_min(1e-30), torch.zeros_like(axes))


def orientation_similarity(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``[B * (B - 1) / 2]``: the alignment of the principal axes (:func:`principal_axes`) of
    distinct sub-manifolds ``i < j`` (``B >= 2``), squared cosines ``(u_i . u_j)^2`` in ``[0,
    1]``: 1 for parallel axes (either sign), 0 for orthogonal ones; ``1 / D`` is the mean for
    random axes."""
    check_views(z, min_images=2)
    axes = principal_axes(z, normalize)
    return upper_pairs(axes @ axes.T).pow(2).clamp(0.0, 1.0)


def own_centroid_fraction(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The fraction in ``[0, 1]`` of the ``V * B`` views whose nearest centroid (among all
    images', Euclidean; a tie goes to the image of lowest index) is their own image's."""
    views = prepare_views(z, normalize)
    num_views, num_images, dim = views.shape
    centroids = views.mean(dim=0)
    sq_norms = centroids.pow(2).sum(dim=1)
    flat = views.transpose(0, 1).reshape(-1, dim)  # [B * V, D], rows grouped by image
    owner = torch.arange(num_images, device=views.device).repeat_interleave(num_views)
    hits = torch.zeros((), dtype=torch.int64, device=views.device)
    for rows in row_blocks(flat.shape[0], num_images):
        nearest = block_sq_distances(flat[rows], centroids, sq_norms).argmin(dim=1)
        hits += (nearest == owner[rows]).sum()
    return hits.to(views.dtype) / flat.shape[0]


def within_image_variance_fraction(z: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Share of the total variance of the views that lies within images (across views).

    ``sum_{v,i} ||x_vi - c_i||^2 / sum_{v,i} ||x_vi - mean||^2`` (law of total variance):
    0 when every image's views coincide (invariant features), 1 when the centroids coincide.
    Scale-invariant, hence ``normalize=False`` by default (raw features). A scalar in
    ``[0, 1]``; 0 when the total variance is 0.
    """
    views = prepare_views(z, normalize)
    within = (views - views.mean(dim=0, keepdim=True)).pow(2).sum()
    total = (views - views.mean(dim=(0, 1), keepdim=True)).pow(2).sum()
    if total <= 0:
        return total.new_zeros(())
    return (within / total).clamp(0.0, 1.0)
