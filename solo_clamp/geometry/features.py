"""Geometry of a feature set and of its classes: effective dimension, how spread out the
features are (and whether they collapsed: the pretrain report's check), class centroids, radii
and separation.

Pure torch (no solo-learn import). The functions take ``feats [N, F]`` (one row per image)
and, for the class measures, integer ``labels [N]``. A class is measured like an image
sub-manifold (:mod:`solo_clamp.geometry.measures`) whose views are the class members.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from solo_clamp.geometry.checks import check_feats, check_labels, shape_of
from solo_clamp.geometry.pairs import block_sq_distances, upper_pairs


def participation_ratio(feats: torch.Tensor) -> torch.Tensor:
    """Effective dimension of a feature set.

    ``PR = (sum_k lambda_k)^2 / sum_k lambda_k^2`` over the eigenvalues ``lambda_k`` of the
    feature covariance (from the singular values of the centred features): ``k`` for an
    isotropic cloud in ``k`` dimensions, 1 for points on a line. A scalar in ``[1, min(N - 1,
    F)]`` (``N >= 2``); 0 when the features have no variance.
    """
    feats = check_feats(feats, min_rows=2)
    centred = feats - feats.mean(dim=0, keepdim=True)
    eigvals = torch.linalg.svdvals(centred.double()).pow(2)
    total = eigvals.sum()
    if total <= 0:
        return feats.new_zeros(())
    return (total.pow(2) / eigvals.pow(2).sum()).to(feats.dtype)


def effective_rank(feats: torch.Tensor) -> torch.Tensor:
    """Effective rank of a feature set (Roy & Vetterli, 2007).

    ``exp(-sum_k p_k log p_k)`` with ``p_k = s_k / sum_j s_j`` over the singular values
    ``s_k`` of the centred features: ``k`` for ``k`` orthogonal directions of equal spread, 1
    for points on a line. A float64 scalar in ``[1, min(N - 1, F)]`` (``N >= 2``); 0 when the
    features have no variance (non-finite features are not refused: they give NaN, or the SVD's
    error).
    """
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or len(feats) < 2:
        raise ValueError(f"feats must be a 2-D tensor [N, F] with N >= 2, got {shape_of(feats)}.")
    feats = feats.double()
    singular = torch.linalg.svdvals(feats - feats.mean(dim=0, keepdim=True))
    total = singular.sum()
    if total <= 0:
        return total.new_zeros(())
    p = singular / total
    return (-(p * p.clamp_min(1e-300).log()).sum()).exp()


COLLAPSE_EFFECTIVE_RANK = 8.0
"""Features collapsed: an effective rank below this and below half the untrained backbone's
(a tiny set of images caps the rank). Measured on 2,000 MNIST training images: untrained
ResNet-18 220, CLAMP's main job 113; the diverged ManifoldCLR run of issue 22 had 2.4. The mean
cosine is reported beside it but is no collapse test: an untrained ResNet-18 scores 0.93 (its
post-ReLU features share one direction), above that diverged run's 0.81."""


def feature_spread(features: torch.Tensor) -> dict[str, float]:
    """How spread out ``[N, F]`` features are: ``mean_cosine``, the mean cosine similarity over
    the pairs of distinct rows, and ``effective_rank``, ``exp`` of the entropy of the centred
    features' normalised singular values (Roy & Vetterli, 2007;
    :func:`effective_rank`)."""
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f"features must be [N, F] with N >= 2, got {tuple(features.shape)}.")
    unit = F.normalize(features.double(), dim=-1)
    n = len(unit)
    total = unit.sum(dim=0)
    mean_cosine = (total @ total - n) / (n * (n - 1))  # sum over i != j of <u_i, u_j>
    return {"mean_cosine": float(mean_cosine), "effective_rank": float(effective_rank(features))}


def collapsed(spread: dict[str, float], untrained: dict[str, float]) -> bool:
    """The effective rank of ``spread`` is below :data:`COLLAPSE_EFFECTIVE_RANK` and below half
    that of ``untrained`` (the same images through the backbone at initialisation)."""
    bound = min(COLLAPSE_EFFECTIVE_RANK, untrained["effective_rank"] / 2)
    return not spread["effective_rank"] >= bound


def class_centroids(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(classes [K], centroids [K, F])``: the mean feature of every class, ``classes`` the
    sorted distinct labels."""
    feats = check_feats(feats)
    labels = check_labels(feats, labels)
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = feats.new_zeros(len(classes), feats.shape[1]).index_add_(0, inverse, feats)
    return classes, sums / counts[:, None].to(feats.dtype)


def class_radii(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Radius of every class, with the sub-manifold radius formula (``rs = 1``).

    ``R_c = sqrt(trace(Cov_c) / min(F, n_c))`` with the unbiased covariance ``Cov_c`` of the
    ``n_c`` features of class ``c``: a class is measured like an image sub-manifold whose
    views are the class members. (It is not the RMS distance to the class centroid, which
    is ``sqrt(trace(Cov_c) * (n_c - 1) / n_c)``.) Returns ``(classes [K], radii [K])``,
    classes sorted; NaN for a class with one member.
    """
    feats = check_feats(feats)
    labels = check_labels(feats, labels)
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
    """The mean Euclidean distance between the centroids of distinct classes (at least two),
    over the ``K * (K - 1) / 2`` class pairs."""
    classes, centroids = class_centroids(feats, labels)
    if len(classes) < 2:
        raise ValueError(
            f"labels must contain at least 2 distinct classes to measure a separation, "
            f"got {len(classes)}."
        )
    sq_norms = centroids.pow(2).sum(dim=1)
    dist = torch.sqrt(block_sq_distances(centroids, centroids, sq_norms))
    return upper_pairs(dist).mean()
