"""Held-out checks of learned transport operators (ManifoldCLR's ``T(c) = expm(Σ c_m Ψ_m)``):
do the operators, with the coefficients their posterior infers, move one view's features onto
the other's better than maps that need no learned operator?

Pure torch (no solo-learn import). For pairs ``z0, z1`` (backbone features of two views of
each of ``B`` images) and the posterior's coefficients ``c`` of each pair, every row of the
check is a map applied to ``z0``:

* ``identity``: ``z0`` itself (``c = 0``), the reference of every ratio;
* ``scalar_global``: ``a·z0`` with the one scalar ``a = Σ⟨z0, z1⟩ / Σ‖z0‖²`` that minimises the
  squared error over all pairs;
* ``scalar_per_pair``: ``a_i·z0_i`` with ``a_i = ⟨z0_i, z1_i⟩ / ‖z0_i‖²`` for each pair (the
  best any rescaling can do);
* ``posterior``: ``T(c) z0`` with ``c`` one draw of ``q(c | z0, z1)`` (soft-thresholded by the
  model's ``λ``, as in training before max-ELBO); ``posterior_location``: ``c`` the
  posterior's location;
* ``shuffled``: ``T(c_j) z0_i`` with ``c_j`` the posterior draw of another pair ``j ≠ i`` (a
  random derangement): operators that fit every pair alike score as well here as with ``c``;
* ``mean_c``: ``T(c̄) z0`` with ``c̄`` the mean of the posterior draws over the pairs;
* ``prior``: ``T(c) z0`` with ``c`` one draw of the prior ``p(c | z0)``, which never sees ``z1``.

Each row reports ``error_ratio = MSE(map(z0), z1) / MSE(z0, z1)`` (below 1: the map explains
part of the difference between the views) and ``angular_ratio = mean(1 − cos(map(z0), z1)) /
mean(1 − cos(z0, z1))``, which any positive rescaling leaves at exactly 1: only a map that turns
``z0`` towards ``z1`` lowers it. With ``normalize`` (the run's ``normalize_transport``) both
views are L2-normalised first, as the transport MSE compares them in training.

Each ratio comes with a 95 % percentile bootstrap interval over the pairs, and each learned row
(``posterior``, ``posterior_location``) with the paired difference of its ratios from every
control's on the same resampled pairs (``scipy.stats.bootstrap``): "beats a control" is read
from that interval, not from two point values (:mod:`solo_clamp.geometry.transport_intervals`).
How often each coefficient is used is reported beside the rows; the generators' spectrum and the
nearest-neighbour check of prior samples are in :mod:`solo_clamp.geometry.operators`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from solo_clamp.geometry.checks import shape_of
from solo_clamp.geometry.transport_intervals import ratio_intervals
from solo_clamp.losses.variational import Laplace, laplace_draw

CONTROLS = (
    "identity",
    "scalar_global",
    "scalar_per_pair",
    "posterior",
    "posterior_location",
    "shuffled",
    "mean_c",
    "prior",
)
"""The rows of :func:`held_out_transport`, in order: ``posterior`` and ``posterior_location``
use the learned operators with the pair's own coefficients; every other row is a control."""

CHUNK = 256
"""Pairs transported at once: bounds the ``[chunk, S, k, k]`` matrix exponentials."""

Transport = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(z [..., d], c [..., M]) -> [..., d]``: the operators ``T(c) z``."""


@dataclass(frozen=True)
class LearnedTransport:
    """A trained run's transport operators and coefficient networks, in eval mode: what a
    method's ``facts.learned_transport`` hook returns.

    Attributes:
        transport: ``(z [..., d], c [..., M]) -> [..., d]``, the operators ``T(c) z``.
        psi: ``[M, S, k, k]`` generators (``S`` diagonal blocks of size ``k``).
        posterior: ``(z0 [B, d], z1 [B, d]) -> Laplace`` of ``[B, M]`` tensors.
        prior: ``z0 [B, d] -> Laplace`` of ``[B, M]`` tensors (the trained prior, after its
            warm-up).
        threshold: the soft threshold ``λ`` of the coefficient samples.
        normalize: the transport error is measured on L2-normalised features.
    """

    transport: Transport
    psi: torch.Tensor
    posterior: Callable[[torch.Tensor, torch.Tensor], Laplace]
    prior: Callable[[torch.Tensor], Laplace]
    threshold: float = 0.0
    normalize: bool = False


def _check_pairs(z0: torch.Tensor, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(z0, torch.Tensor) or z0.dim() != 2:
        raise ValueError(f"z0 must be a 2-D tensor [B, d], got {shape_of(z0)}.")
    if not isinstance(z1, torch.Tensor) or z1.shape != z0.shape:
        raise ValueError(f"z1 must have the shape of z0 {tuple(z0.shape)}, got {shape_of(z1)}.")
    if len(z0) < 2:
        raise ValueError(f"the check needs at least 2 pairs (z0.shape[0] >= 2), got {len(z0)}.")
    return z0.detach().double(), z1.detach().double()


def best_scalar(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """The float64 scalar ``a`` minimising ``Σ_i ‖a·z0_i − z1_i‖²`` over ``[B, d]`` pairs:
    ``Σ⟨z0, z1⟩ / Σ‖z0‖²`` (0 when every ``z0`` is zero)."""
    z0, z1 = _check_pairs(z0, z1)
    denominator = z0.pow(2).sum()
    return (z0 * z1).sum() / denominator if denominator > 0 else denominator


def best_scalars(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """``[B]`` float64: for each pair the scalar ``a_i`` minimising ``‖a_i·z0_i − z1_i‖²``,
    ``⟨z0_i, z1_i⟩ / ‖z0_i‖²`` (0 for a zero ``z0_i``)."""
    z0, z1 = _check_pairs(z0, z1)
    denominator = z0.pow(2).sum(dim=-1)
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, (z0 * z1).sum(dim=-1) / safe, torch.zeros_like(safe))


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``[n]`` permutation ``π`` of ``range(n)`` (``n >= 2``) with ``π(i) ≠ i`` for
    every ``i``: a random order, each element sent to the next one in it (a single cycle)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (a derangement moves every index), got {n!r}.")
    order = torch.randperm(n, generator=generator)
    permutation = torch.empty(n, dtype=torch.long)
    permutation[order] = order.roll(-1)
    return permutation


def error_ratio(moved: torch.Tensor, z0: torch.Tensor, z1: torch.Tensor) -> float:
    """``MSE(moved, z1) / MSE(z0, z1)``: the error of a map over the identity's (``inf`` when
    the views are equal and ``moved`` is not; NaN when both are exact)."""
    moved, (z0, z1) = moved.detach().double(), _check_pairs(z0, z1)
    return float(F.mse_loss(moved, z1) / F.mse_loss(z0, z1))


def angular_ratio(moved: torch.Tensor, z0: torch.Tensor, z1: torch.Tensor) -> float:
    """``mean(1 − cos(moved, z1)) / mean(1 − cos(z0, z1))``: the angular error of a map over the
    identity's. Any positive rescaling of ``z0`` leaves it at 1; 0 when ``moved`` points along
    ``z1`` for every pair."""
    moved, (z0, z1) = moved.detach().double(), _check_pairs(z0, z1)
    moved_error = (1 - F.cosine_similarity(moved, z1, dim=-1)).mean()
    identity_error = (1 - F.cosine_similarity(z0, z1, dim=-1)).mean()
    return float(moved_error / identity_error)


def transport_in_chunks(transport: Transport, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``transport(z, c)`` in chunks of :data:`CHUNK` rows, without gradients."""
    with torch.no_grad():
        parts = [
            transport(z[start : start + CHUNK], c[start : start + CHUNK])
            for start in range(0, len(z), CHUNK)
        ]
    return torch.cat(parts).double()


def control_maps(
    transport: Transport,
    z0: torch.Tensor,
    z1: torch.Tensor,
    c: torch.Tensor,
    prior_c: torch.Tensor,
    location: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``z0`` moved by every row of :data:`CONTROLS` (see the module docstring).

    Args:
        transport: ``(z [n, d], c [n, M]) -> [n, d]``.
        z0, z1: ``[B, d]`` pairs, as the error is measured (normalised or not).
        c: ``[B, M]`` the posterior's coefficients of each pair.
        prior_c: ``[B, M]`` the prior's coefficients of each ``z0``.
        location: ``[B, M]`` the posterior's location (None: that row is left out).
        generator: the derangement of the ``shuffled`` row.

    Returns:
        ``(moved, permutation)``: ``{row: [B, d] float64}`` and the ``[B]`` derangement whose
        ``c[permutation[i]]`` moved ``z0[i]`` in the ``shuffled`` row.
    """
    z0d, z1d = _check_pairs(z0, z1)
    for name, value in (("c", c), ("prior_c", prior_c), ("location", location)):
        if value is None and name == "location":
            continue
        if not isinstance(value, torch.Tensor) or value.dim() != 2 or len(value) != len(z0):
            raise ValueError(
                f"{name} must be a 2-D tensor [B, M] with B = {len(z0)} rows, got "
                f"{shape_of(value)}."
            )
    permutation = derangement(len(z0), generator)
    moved = {
        "identity": z0d,
        "scalar_global": best_scalar(z0d, z1d) * z0d,
        "scalar_per_pair": best_scalars(z0d, z1d)[:, None] * z0d,
        "posterior": transport_in_chunks(transport, z0, c),
    }
    if location is not None:
        moved["posterior_location"] = transport_in_chunks(transport, z0, location)
    moved["shuffled"] = transport_in_chunks(transport, z0, c[permutation])
    moved["mean_c"] = transport_in_chunks(transport, z0, c.mean(dim=0, keepdim=True).expand_as(c))
    moved["prior"] = transport_in_chunks(transport, z0, prior_c)
    return moved, permutation


def control_table(
    moved: dict[str, torch.Tensor], z0: torch.Tensor, z1: torch.Tensor
) -> dict[str, dict[str, float]]:
    """``{row: {"mse", "error_ratio", "angular_ratio"}}`` of the maps of :func:`control_maps`."""
    z0d, z1d = _check_pairs(z0, z1)
    return {
        name: {
            "mse": float(F.mse_loss(value.double(), z1d)),
            "error_ratio": error_ratio(value, z0d, z1d),
            "angular_ratio": angular_ratio(value, z0d, z1d),
        }
        for name, value in moved.items()
    }


def held_out_transport(
    learned: LearnedTransport,
    z0: torch.Tensor,
    z1: torch.Tensor,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """The held-out transport check of pairs ``z0, z1`` (backbone features of two views of
    images the run never trained on): every row of :data:`CONTROLS` with its MSE, error ratio
    and angular ratio, and the coefficients' usage.

    The posterior and prior see the raw features, as in training; the errors compare
    L2-normalised features when ``learned.normalize``.

    Args:
        learned: the run's operators and coefficient networks, in eval mode.
        z0, z1: ``[B, d]`` pairs, ``B >= 2``.
        generator: CPU generator of the coefficient draws and the derangement.

    Returns:
        ``{"pairs", "normalized", "rows": {row: {...}}, "coefficients": {...}}``.
    """
    _check_pairs(z0, z1)
    z0, z1 = z0.float(), z1.float()
    with torch.no_grad():
        posterior = learned.posterior(z0, z1)
        c = laplace_draw(posterior, learned.threshold, generator)
        prior_c = laplace_draw(learned.prior(z0), learned.threshold, generator)
        source, target = z0, z1
        if learned.normalize:
            source, target = F.normalize(z0, dim=-1), F.normalize(z1, dim=-1)
        moved, _ = control_maps(
            learned.transport, source, target, c, prior_c, posterior.shift, generator
        )
    return {
        "pairs": len(z0),
        "normalized": bool(learned.normalize),
        "rows": control_table(moved, source, target),
        "intervals": ratio_intervals(moved, source, target),
        "coefficients": {
            "posterior_usage": coefficient_usage(c).tolist(),
            "posterior_active_mean": float((c != 0).float().sum(dim=-1).mean()),
            "prior_usage": coefficient_usage(prior_c).tolist(),
            "prior_active_mean": float((prior_c != 0).float().sum(dim=-1).mean()),
            "posterior_abs_mean": float(c.abs().mean()),
        },
    }


def coefficient_usage(c: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """How often each dictionary element is used: the fraction of rows of ``c [N, M]`` whose
    coefficient ``m`` has ``|c_m| > tolerance`` (the official code counts non-zeros: the soft
    threshold makes unused coefficients exactly 0).

    Returns:
        ``[M]`` fractions in ``[0, 1]``.
    """
    if not isinstance(c, torch.Tensor) or c.dim() != 2 or len(c) < 1:
        raise ValueError(f"c must be a 2-D tensor [N, M] with N >= 1, got {shape_of(c)}.")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}.")
    return (c.abs() > tolerance).double().mean(dim=0)
