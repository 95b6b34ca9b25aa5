"""Geometry of the image sub-manifolds and of the classes, for analysing CLAMP embeddings.

Pure torch (no solo-learn import). Most functions take ``z`` of shape ``[V, B, D]``: ``V``
views (augmentations) of each of ``B`` images in a ``D``-dimensional space. A view-major
loss matrix ``[V * B, D]`` becomes this layout with ``z.reshape(V, B, D)``.

Normalisation. With ``normalize=True`` (the default of the sub-manifold functions) the
embeddings are prepared exactly as the CLAMP loss prepares them
(:func:`solo_clamp.losses.clamp.submanifold_geometry`): centred on the mean of all
``V * B`` rows, then every row L2-normalised. Centroids, radii and neighbour counts then
match the loss's own diagnostics. ``normalize=False`` measures the raw embeddings (for
example backbone features, or synthetic points of known geometry).

Definitions, for image ``i`` with (prepared) views ``x_vi`` and centroid
``c_i = mean_v x_vi``:

* sub-manifold covariance ``C_i = sum_v (x_vi - c_i)(x_vi - c_i)^T / (V - 1)`` (unbiased);
* unscaled radius ``r_i = sqrt(trace(C_i) / min(D, V))``, scaled radius ``R_i = rs * r_i``
  (the loss's radius);
* ``j != i`` is a neighbour of ``i`` when ``d_ij < min(0.99 * rs * (r_i + r_j), max_range)``
  with ``d_ij = ||c_i - c_j||``.

Pair distances always come from a Gram matrix of the centroids (never an
``N x N x D`` tensor); functions returning per-image values process the rows in blocks so
that their memory stays ``O(B * block)``. The functions are diagnostics, evaluated under
``torch.no_grad`` by their callers; their gradients are not guaranteed at degenerate points
(zero radius, zero-norm rows).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

NEIGHBOUR_FACTOR = 0.99
"""``j`` is a neighbour of ``i`` when ``d_ij < NEIGHBOUR_FACTOR * rs * (r_i + r_j)``."""

_PAIR_BLOCK_ELEMENTS = 1 << 22
"""Largest ``rows x B`` block of pair values built at once by the blockwise functions."""


# --------------------------------------------------------------------------- validation


def _shape_of(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    return type(value).__name__


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """Upcasts integer and half-precision tensors to float32; float64 stays float64."""
    if x.dtype == torch.float64:
        return x
    return x.float()


def _check_views(z: torch.Tensor, min_images: int = 1) -> torch.Tensor:
    """Validates ``z [V, B, D]`` and returns it as a floating tensor (float32 or float64)."""
    if not isinstance(z, torch.Tensor) or z.dim() != 3:
        raise ValueError(
            f"z must be a 3-D tensor [V, B, D] (views, images, dim), got {_shape_of(z)}; "
            "reshape a view-major [V * B, D] matrix with z.reshape(V, B, D)."
        )
    num_views, num_images, dim = z.shape
    if num_views < 2:
        raise ValueError(
            f"z must hold at least 2 views per image (z.shape[0] >= 2) to measure a "
            f"sub-manifold, got {num_views}."
        )
    if num_images < min_images:
        raise ValueError(
            f"z must hold at least {min_images} image(s) (z.shape[1]), got {num_images}."
        )
    if dim < 1:
        raise ValueError(f"z must have an embedding dimension >= 1 (z.shape[2]), got {dim}.")
    z = _as_float(z)
    if not torch.isfinite(z).all():
        raise ValueError("z contains non-finite values (NaN or Inf).")
    return z


def _check_rs(rs: float) -> float:
    if isinstance(rs, bool) or not isinstance(rs, (int, float)) or not rs > 0:
        raise ValueError(f"rs must be a number > 0, got {rs!r}.")
    return float(rs)


def _check_feats(feats: torch.Tensor, min_rows: int = 1) -> torch.Tensor:
    """Validates ``feats [N, F]`` and returns it as a floating tensor."""
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
        raise ValueError(f"feats must be a 2-D tensor [N, F], got {_shape_of(feats)}.")
    if feats.shape[0] < min_rows:
        raise ValueError(f"feats must hold at least {min_rows} rows, got {feats.shape[0]}.")
    if feats.shape[1] < 1:
        raise ValueError(f"feats must have at least 1 feature column, got {feats.shape[1]}.")
    feats = _as_float(feats)
    if not torch.isfinite(feats).all():
        raise ValueError("feats contains non-finite values (NaN or Inf).")
    return feats


def _check_labels(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Validates ``labels [N]`` (integers, one per row of ``feats``)."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor [N], got {_shape_of(labels)}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integer class ids, got dtype {labels.dtype}.")
    if labels.shape[0] != feats.shape[0]:
        raise ValueError(
            f"labels must have one entry per row of feats: got {labels.shape[0]} labels "
            f"for {feats.shape[0]} rows."
        )
    return labels.to(feats.device)


# --------------------------------------------------------------------------- helpers


def _row_blocks(num_rows: int, num_cols: int) -> Iterator[slice]:
    """Row slices whose ``rows x num_cols`` blocks hold at most ``_PAIR_BLOCK_ELEMENTS``."""
    step = max(1, _PAIR_BLOCK_ELEMENTS // max(1, num_cols))
    for start in range(0, num_rows, step):
        yield slice(start, min(num_rows, start + step))


def _block_sq_distances(
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
    if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2 or (
        matrix.shape[0] != matrix.shape[1]
    ):
        raise ValueError(f"matrix must be a square 2-D tensor [B, B], got {_shape_of(matrix)}.")
    rows, cols = torch.triu_indices(*matrix.shape, offset=1, device=matrix.device)
    return matrix[rows, cols]


# --------------------------------------------------------------------------- sub-manifolds


def prepare_views(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The views as the geometry functions measure them.

    Args:
        z: ``[V, B, D]`` embeddings (views, images, dim).
        normalize: centre on the mean of all ``V * B`` rows, then L2-normalise each row, as
            the CLAMP loss does; False returns the (validated, floating) input unchanged.

    Returns:
        ``[V, B, D]`` floating tensor (float32, or float64 for float64 input).
    """
    z = _check_views(z)
    if not normalize:
        return z
    z = z - z.mean(dim=(0, 1), keepdim=True)
    return F.normalize(z, dim=-1)


def submanifold_centroids(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Centroid of every image's views.

    Args:
        z: ``[V, B, D]``.
        normalize: see :func:`prepare_views`.

    Returns:
        ``[B, D]``: ``c_i = mean_v x_vi``.
    """
    return prepare_views(z, normalize).mean(dim=0)


def submanifold_traces(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Trace of every image's sub-manifold covariance.

    Args:
        z: ``[V, B, D]``.
        normalize: see :func:`prepare_views`.

    Returns:
        ``[B]``: ``trace(C_i) = sum_v ||x_vi - c_i||^2 / (V - 1)`` (unbiased covariance).
    """
    return _traces(prepare_views(z, normalize))


def _traces(views: torch.Tensor) -> torch.Tensor:
    """``[B]`` covariance traces of prepared views ``[V, B, D]``."""
    centred = views - views.mean(dim=0, keepdim=True)
    return centred.pow(2).sum(dim=(0, 2)) / (views.shape[0] - 1)


def _unscaled_radii(views: torch.Tensor) -> torch.Tensor:
    """``[B]`` radii ``sqrt(trace(C_i) / min(D, V))`` of prepared views ``[V, B, D]``."""
    num_views, _, dim = views.shape
    return torch.sqrt(_traces(views) / min(dim, num_views))


def submanifold_radii(z: torch.Tensor, rs: float = 1.0, normalize: bool = True) -> torch.Tensor:
    """Radius of every image's sub-manifold, as the CLAMP loss defines it.

    With ``normalize=True`` this equals the radii of
    :func:`solo_clamp.losses.clamp.submanifold_geometry` (up to its ``1e-12`` under the root).

    Args:
        z: ``[V, B, D]``.
        rs: radius scale (> 0); ``rs=1`` gives the unscaled radius ``r_i``.
        normalize: see :func:`prepare_views`.

    Returns:
        ``[B]``: ``rs * sqrt(trace(C_i) / min(D, V))``.
    """
    rs = _check_rs(rs)
    return rs * _unscaled_radii(prepare_views(z, normalize))


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
        z: ``[V, B, D]``.
        rs: radius scale (> 0).
        max_range: cap on the interaction distance (> 0); the default ``inf`` applies none.
        normalize: see :func:`prepare_views`.
        factor: multiplies the contact distance (> 0).

    Returns:
        ``[B]`` int64 counts in ``[0, B - 1]``.
    """
    rs = _check_rs(rs)
    if isinstance(max_range, bool) or not isinstance(max_range, (int, float)) or not (
        max_range > 0
    ):
        raise ValueError(f"max_range must be a number > 0 (inf for no cap), got {max_range!r}.")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
        raise ValueError(f"factor must be a number > 0, got {factor!r}.")
    views = prepare_views(z, normalize)
    num_images = views.shape[1]
    centroids = views.mean(dim=0)
    radii = _unscaled_radii(views)
    sq_norms = centroids.pow(2).sum(dim=1)
    counts = torch.zeros(num_images, dtype=torch.int64, device=views.device)
    index = torch.arange(num_images, device=views.device)
    for rows in _row_blocks(num_images, num_images):
        dist = torch.sqrt(_block_sq_distances(centroids[rows], centroids, sq_norms))
        reach = (factor * rs * (radii[rows, None] + radii[None, :])).clamp(max=max_range)
        close = (dist < reach) & (index[rows, None] != index[None, :])
        counts[rows] = close.sum(dim=1)
    return counts


def centroid_distances(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Euclidean distances between the centroids of all images (from a Gram matrix).

    Args:
        z: ``[V, B, D]``.
        normalize: see :func:`prepare_views`.

    Returns:
        ``[B, B]`` symmetric matrix with an exact zero diagonal; :func:`upper_pairs` turns it
        into the ``[B * (B - 1) / 2]`` vector of distinct pairs.
    """
    centroids = submanifold_centroids(z, normalize)
    sq_norms = centroids.pow(2).sum(dim=1)
    dist = torch.sqrt(_block_sq_distances(centroids, centroids, sq_norms))
    dist = 0.5 * (dist + dist.T)
    return dist.fill_diagonal_(0.0)


def centroid_similarity(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Cosine similarity between the centroids of distinct images.

    Args:
        z: ``[V, B, D]`` with ``B >= 2``.
        normalize: see :func:`prepare_views`.

    Returns:
        ``[B * (B - 1) / 2]`` values in ``[-1, 1]`` for pairs ``i < j`` (row-major); a
        zero-norm centroid has similarity 0 with every other.
    """
    _check_views(z, min_images=2)
    centroids = F.normalize(submanifold_centroids(z, normalize), dim=-1)
    return upper_pairs(centroids @ centroids.T).clamp(-1.0, 1.0)


def principal_axes(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Top eigenvector (principal axis) of every image's sub-manifold covariance.

    Computed from the ``V x V`` Gram matrix of the centred views (cost ``O(B V^2 D)``),
    never from the ``D x D`` covariance.

    Args:
        z: ``[V, B, D]``.
        normalize: see :func:`prepare_views`.

    Returns:
        ``[B, D]`` unit vectors, defined up to sign (and arbitrary within a degenerate top
        eigenspace); the zero vector for an image whose views coincide.
    """
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
    """Alignment of the principal axes of distinct sub-manifolds.

    Args:
        z: ``[V, B, D]`` with ``B >= 2``.
        normalize: see :func:`prepare_views`.

    Returns:
        ``[B * (B - 1) / 2]`` squared cosines ``(u_i . u_j)^2`` in ``[0, 1]`` between the
        principal axes (:func:`principal_axes`) for pairs ``i < j``: 1 for parallel axes
        (either sign), 0 for orthogonal ones; ``1 / D`` is the mean for random axes.
    """
    _check_views(z, min_images=2)
    axes = principal_axes(z, normalize)
    return upper_pairs(axes @ axes.T).pow(2).clamp(0.0, 1.0)


def own_centroid_fraction(z: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Fraction of views whose nearest centroid (among all images') is their own image's.

    Args:
        z: ``[V, B, D]``.
        normalize: see :func:`prepare_views`.

    Returns:
        Scalar in ``[0, 1]`` over all ``V * B`` views (Euclidean distance; a tie goes to the
        image of lowest index).
    """
    views = prepare_views(z, normalize)
    num_views, num_images, dim = views.shape
    centroids = views.mean(dim=0)
    sq_norms = centroids.pow(2).sum(dim=1)
    flat = views.transpose(0, 1).reshape(-1, dim)  # [B * V, D], rows grouped by image
    owner = torch.arange(num_images, device=views.device).repeat_interleave(num_views)
    hits = torch.zeros((), dtype=torch.int64, device=views.device)
    for rows in _row_blocks(flat.shape[0], num_images):
        nearest = _block_sq_distances(flat[rows], centroids, sq_norms).argmin(dim=1)
        hits += (nearest == owner[rows]).sum()
    return hits.to(views.dtype) / flat.shape[0]


def within_image_variance_fraction(z: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Share of the total variance of the views that lies within images (across views).

    ``sum_{v,i} ||x_vi - c_i||^2 / sum_{v,i} ||x_vi - mean||^2`` (law of total variance):
    0 when every image's views coincide (invariant features), 1 when the centroids coincide.
    Scale-invariant, hence ``normalize=False`` by default (raw features).

    Args:
        z: ``[V, B, D]``.
        normalize: see :func:`prepare_views`.

    Returns:
        Scalar in ``[0, 1]``; 0 when the total variance is 0.
    """
    views = prepare_views(z, normalize)
    within = (views - views.mean(dim=0, keepdim=True)).pow(2).sum()
    total = (views - views.mean(dim=(0, 1), keepdim=True)).pow(2).sum()
    if total <= 0:
        return total.new_zeros(())
    return (within / total).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- features


def participation_ratio(feats: torch.Tensor) -> torch.Tensor:
    """Effective dimension of a feature set.

    ``PR = (sum_k lambda_k)^2 / sum_k lambda_k^2`` over the eigenvalues ``lambda_k`` of the
    feature covariance (from the singular values of the centred features): ``k`` for an
    isotropic cloud in ``k`` dimensions, 1 for points on a line.

    Args:
        feats: ``[N, F]`` with ``N >= 2``.

    Returns:
        Scalar in ``[1, min(N - 1, F)]``; 0 when the features have no variance.
    """
    feats = _check_feats(feats, min_rows=2)
    centred = feats - feats.mean(dim=0, keepdim=True)
    eigvals = torch.linalg.svdvals(centred.double()).pow(2)
    total = eigvals.sum()
    if total <= 0:
        return feats.new_zeros(())
    return (total.pow(2) / eigvals.pow(2).sum()).to(feats.dtype)


def class_centroids(
    feats: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of every class.

    Args:
        feats: ``[N, F]``.
        labels: ``[N]`` integer class ids.

    Returns:
        ``(classes [K], centroids [K, F])`` with ``classes`` the sorted distinct labels.
    """
    feats = _check_feats(feats)
    labels = _check_labels(feats, labels)
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = feats.new_zeros(len(classes), feats.shape[1]).index_add_(0, inverse, feats)
    return classes, sums / counts[:, None].to(feats.dtype)


def class_radii(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Radius of every class, with the sub-manifold radius formula (``rs = 1``).

    ``R_c = sqrt(trace(Cov_c) / min(F, n_c))`` with the unbiased covariance ``Cov_c`` of the
    ``n_c`` features of class ``c``: a class is measured like an image sub-manifold whose
    views are the class members. (It is not the RMS distance to the class centroid, which
    is ``sqrt(trace(Cov_c) * (n_c - 1) / n_c)``.)

    Args:
        feats: ``[N, F]``.
        labels: ``[N]`` integer class ids.

    Returns:
        ``(classes [K], radii [K])``, classes sorted; NaN for a class with one member.
    """
    feats = _check_feats(feats)
    labels = _check_labels(feats, labels)
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = feats.new_zeros(len(classes), feats.shape[1]).index_add_(0, inverse, feats)
    centroids = sums / counts[:, None].to(feats.dtype)
    sq_dev = (feats - centroids[inverse]).pow(2).sum(dim=1)
    scatter = feats.new_zeros(len(classes)).index_add_(0, inverse, sq_dev)
    counts_f = counts.to(feats.dtype)
    dims = counts_f.clamp(max=feats.shape[1])
    radii = torch.sqrt(scatter / (counts_f - 1).clamp_min(1) / dims)
    return classes, torch.where(counts > 1, radii, torch.full_like(radii, math.nan))


def mean_class_separation(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance between the centroids of distinct classes.

    Args:
        feats: ``[N, F]``.
        labels: ``[N]`` integer class ids, at least two distinct.

    Returns:
        Scalar: mean over the ``K * (K - 1) / 2`` class pairs.
    """
    classes, centroids = class_centroids(feats, labels)
    if len(classes) < 2:
        raise ValueError(
            f"labels must contain at least 2 distinct classes to measure a separation, "
            f"got {len(classes)}."
        )
    sq_norms = centroids.pow(2).sum(dim=1)
    dist = torch.sqrt(_block_sq_distances(centroids, centroids, sq_norms))
    return upper_pairs(dist).mean()
