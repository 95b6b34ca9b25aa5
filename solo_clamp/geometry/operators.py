"""Diagnostics of learned transport operators, as the official code's logger (``transop_plots``
and ``AugmentationNNEval``): the real parts of the generators' eigenvalues (positive: ``T``
grows features along that direction), the generators' Frobenius norms, and the
nearest-neighbour label accuracy of prior-augmented features, here set beside the same features
moved by Gaussian noise of the same norm. Pure torch; the held-out check of the operators on
pairs of views is :mod:`solo_clamp.geometry.transport`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from solo_clamp.geometry.checks import shape_of
from solo_clamp.geometry.pairs import block_sq_distances, row_blocks
from solo_clamp.geometry.transport import LearnedTransport, transport_in_chunks
from solo_clamp.losses.variational import laplace_draw


def _check_psi(psi: torch.Tensor) -> torch.Tensor:
    if not isinstance(psi, torch.Tensor) or psi.dim() != 4 or psi.shape[-1] != psi.shape[-2]:
        raise ValueError(f"psi must be a 4-D tensor [M, S, k, k], got {shape_of(psi)}.")
    return psi.detach().double().cpu()


def generator_norms(psi: torch.Tensor) -> torch.Tensor:
    """The Frobenius norm of each generator ``Ψ_m`` (all its blocks): ``[M]``, as the official
    logger's ``avg_transop_mag``."""
    psi = _check_psi(psi)
    return psi.reshape(len(psi), -1).norm(dim=-1)


def generator_eigenvalue_real_parts(psi: torch.Tensor) -> torch.Tensor:
    """Real parts of the eigenvalues of each generator: ``[M, S * k]`` (a block-diagonal
    matrix's eigenvalues are its blocks'). ``expm(c Ψ)`` scales a direction by ``exp(c·Re λ)``:
    0 for a pure rotation, positive where it grows features, negative where it shrinks them."""
    psi = _check_psi(psi)
    return torch.linalg.eigvals(psi).real.reshape(len(psi), -1)


def spectrum_summary(psi: torch.Tensor) -> dict[str, Any]:
    """The generators' eigenvalue real parts and norms, summarised for a report."""
    eigenvalues = torch.linalg.eigvals(_check_psi(psi)).reshape(len(psi), -1)
    real, norms = eigenvalues.real, generator_norms(psi)
    scale = real.abs().max().clamp_min(1e-12)
    return {
        "eigenvalue_real_max": float(real.max()),
        "eigenvalue_real_min": float(real.min()),
        "eigenvalue_real_mean": float(real.mean()),
        "eigenvalue_real_abs_mean": float(real.abs().mean()),
        "eigenvalue_imag_abs_mean": float(eigenvalues.imag.abs().mean()),
        "eigenvalue_positive_fraction": float((real > 1e-6 * scale).double().mean()),
        "eigenvalue_real_max_per_generator": real.max(dim=-1).values.tolist(),
        "norm_per_generator": norms.tolist(),
        "norm_mean": float(norms.mean()),
    }


def equal_norm_noise(
    features: torch.Tensor, augmented: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``features`` moved by Gaussian noise of the norm of each augmentation: row ``i`` is
    ``features[i] + ‖augmented[i] − features[i]‖ · u_i`` with ``u_i`` a uniform random unit
    vector: the control of :func:`neighbour_label_accuracy` that needs no operator.

    Args:
        features, augmented: ``[N, d]`` (a feature and its augmentation, row by row).
    """
    if features.shape != augmented.shape or features.dim() != 2:
        raise ValueError(
            f"features and augmented must be 2-D tensors of one shape, got "
            f"{shape_of(features)} and {shape_of(augmented)}."
        )
    features, augmented = features.double(), augmented.double()
    direction = F.normalize(torch.randn(features.shape, generator=generator, dtype=torch.float64))
    distance = (augmented - features).norm(dim=-1, keepdim=True)
    return features + distance * direction


def neighbour_label_accuracy(
    bank: torch.Tensor,
    labels: torch.Tensor,
    queries: torch.Tensor,
    sources: torch.Tensor,
) -> float:
    """The fraction of ``queries`` whose nearest neighbour (Euclidean) in ``bank`` has the
    label of the query's source image, the source itself left out (the official
    ``AugmentationNNEval`` keeps it, which lets a small augmentation find its own image).

    Args:
        bank: ``[N, d]`` features of ``N`` images; ``labels``: ``[N]``.
        queries: ``[Q, d]`` features (augmentations of bank images).
        sources: ``[Q]`` the bank row each query comes from.
    """
    if bank.dim() != 2 or queries.dim() != 2 or bank.shape[1] != queries.shape[1]:
        raise ValueError(
            f"bank [N, d] and queries [Q, d] must share d, got {shape_of(bank)} and "
            f"{shape_of(queries)}."
        )
    if len(bank) < 2 or labels.shape != (len(bank),) or sources.shape != (len(queries),):
        raise ValueError(
            f"need labels [N] for N >= 2 bank rows and sources [Q], got {shape_of(labels)} "
            f"labels, {len(bank)} rows and {shape_of(sources)} sources."
        )
    bank, queries = bank.double(), queries.double()
    sq_norms = bank.pow(2).sum(dim=1)
    correct = 0
    for rows in row_blocks(len(queries), len(bank)):
        distances = block_sq_distances(queries[rows], bank, sq_norms)
        own = sources[rows]
        distances[torch.arange(len(own)), own] = float("inf")
        nearest = distances.argmin(dim=1)
        correct += int((labels[nearest] == labels[own]).sum())
    return correct / max(1, len(queries))


def prior_neighbour_check(
    learned: LearnedTransport,
    features: torch.Tensor,
    labels: torch.Tensor,
    samples: int = 8,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Nearest-neighbour label accuracy of prior-augmented features ``T(c) z``, ``c ~ p(c | z)``
    (``samples`` per image, soft-thresholded, clamped to ``[−1, 1]`` as the official
    ``AugmentationNNEval``), beside the same images moved by noise of equal norm and the
    unaugmented features, each against the bank of unaugmented ``features`` (own image left
    out).

    Returns:
        ``{"images", "samples", "unaugmented", "prior", "equal_norm_noise",
        "displacement_over_norm"}``: accuracies in ``[0, 1]`` and the mean
        ``‖T(c) z − z‖ / ‖z‖``.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}.")
    features = features.float()
    sources = torch.arange(len(features)).repeat_interleave(samples)
    repeated = features[sources]
    with torch.no_grad():
        distribution = learned.prior(features)
        draws = [laplace_draw(distribution, learned.threshold, generator) for _ in range(samples)]
        c = torch.stack(draws, dim=1).reshape(len(sources), -1).clamp(-1.0, 1.0)
        augmented = transport_in_chunks(learned.transport, repeated, c)
    noisy = equal_norm_noise(repeated, augmented, generator)
    displacement = (augmented - repeated.double()).norm(dim=-1)
    norms = repeated.double().norm(dim=-1).clamp_min(1e-12)
    return {
        "images": len(features),
        "samples": samples,
        "unaugmented": neighbour_label_accuracy(
            features, labels, features, torch.arange(len(features))
        ),
        "prior": neighbour_label_accuracy(features, labels, augmented, sources),
        "equal_norm_noise": neighbour_label_accuracy(features, labels, noisy, sources),
        "displacement_over_norm": float((displacement / norms).mean()),
    }
