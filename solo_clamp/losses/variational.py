"""Laplace distributions over transport-operator coefficients: sampling, KL, and the
posterior ``q(c | z0, z1)`` and prior ``p(c | z0)`` networks of ManifoldCLR.

Reference: Fallah, Helbling, Johnsen, Rozell, "Manifold Contrastive Learning with Variational
Lie Group Operators", TMLR 2024 (official code: github.com/kfallah/manifold-contrastive).

A distribution is a pair ``(shift, logscale)`` of ``[..., M]`` tensors: coefficient ``c_m`` is
``Laplace(shift_m, exp(logscale_m))``. Samples are reparameterised; an optional soft threshold
``λ`` zeroes small draws (sparse coefficients) with a straight-through gradient.
:func:`prior_augment` draws augmented features ``T(c) z``, ``c ~ p(c | z)``, for downstream use.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn

_MIN_LOG_ARGUMENT = 1e-6


class Laplace(NamedTuple):
    """Location ``shift`` and log-scale ``logscale``, both ``[..., M]``."""

    shift: torch.Tensor
    logscale: torch.Tensor


def laplace_noise(shape: tuple[int, ...] | torch.Size, device=None) -> torch.Tensor:
    """Uniform ``U(−½, ½)`` noise, the source of :func:`laplace_sample`'s draws."""
    return torch.rand(shape, device=device) - 0.5


def laplace_sample(
    distribution: Laplace, noise: torch.Tensor | None = None, threshold: float = 0.0
) -> torch.Tensor:
    """Reparameterised Laplace samples, optionally soft-thresholded.

    ``ε = −b·sign(u)·log(1 − 2|u|)`` with ``u ~ U(−½, ½)`` and ``b = exp(logscale)`` is
    ``Laplace(0, b)``; the sample is ``shift + ε``. With ``threshold = λ > 0`` the value becomes
    ``shift + sign(ε)(|ε| − λ)`` where ``|ε| > λ`` and exactly 0 elsewhere (as the official
    code), while the gradient stays that of ``shift + ε`` (straight-through).

    Args:
        distribution: ``[..., M]`` parameters.
        noise: ``[..., M]`` or ``[J, ..., M]`` uniform noise in ``(−½, ½)``; drawn when None.
        threshold: soft threshold ``λ >= 0``.

    Returns:
        Samples with the shape of ``noise``.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}.")
    shift, logscale = distribution
    if noise is None:
        noise = laplace_noise(shift.shape, device=shift.device)
    log_term = torch.log((1.0 - 2.0 * noise.abs()).clamp(min=_MIN_LOG_ARGUMENT))
    eps = -logscale.exp() * torch.sign(noise) * log_term
    sample = shift + eps
    if threshold == 0:
        return sample
    eps_value = eps.detach()
    kept = eps_value.abs() > threshold
    shrunk = torch.sign(eps_value) * (eps_value.abs() - threshold)
    value = torch.where(kept, shift.detach() + shrunk, torch.zeros_like(shrunk))
    return sample + (value - sample.detach())


def laplace_draw(
    distribution: Laplace, threshold: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One :func:`laplace_sample` of ``distribution`` whose noise comes from the CPU
    ``generator`` (repeatable on any device)."""
    noise = torch.rand(distribution.shift.shape, generator=generator) - 0.5
    return laplace_sample(distribution, noise.to(distribution.shift.device), threshold)


def laplace_kl(q: Laplace, p: Laplace) -> torch.Tensor:
    """Closed-form ``KL(q ‖ p)`` between Laplace distributions, summed over the last axis.

    ``KL = log(b_p / b_q) + |μ_q − μ_p| / b_p + (b_q / b_p)·exp(−|μ_q − μ_p| / b_q) − 1``.

    Returns:
        ``[...]``: one value per distribution (the coefficient axis summed).
    """
    distance = (q.shift - p.shift).abs()
    q_scale, p_scale = q.logscale.exp(), p.logscale.exp()
    kl = (
        p.logscale
        - q.logscale
        + distance / p_scale
        + (q_scale / p_scale) * torch.exp(-distance / q_scale)
        - 1.0
    )
    return kl.sum(dim=-1)


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(widths) - 2:
            layers.append(nn.LeakyReLU())
    return nn.Sequential(*layers)


class CoefficientPosterior(nn.Module):
    """``q(c | z0, z1)``: an MLP on ``[z0, z1]`` with a log-scale and a shift head.

    Widths ``2d → 4f → 4f → f``, LeakyReLU, then two ``Linear(f, M)`` heads. As the official
    code: ``logscale = clamp(head, −100, 3) + log(scale_prior)`` and
    ``shift = clamp(head, −5, 5) + shift_prior``. Computed in float32.

    Examples:
        >>> posterior = CoefficientPosterior(feature_dim=512, dictionary_size=32)
        >>> q = posterior(torch.randn(8, 512), torch.randn(8, 512))  # Laplace, [8, 32] each
    """

    def __init__(
        self,
        feature_dim: int,
        dictionary_size: int,
        hidden_dim: int = 512,
        scale_prior: float = 0.01,
        shift_prior: float = 0.05,
    ) -> None:
        super().__init__()
        if not scale_prior > 0:
            raise ValueError(f"scale_prior must be > 0, got {scale_prior!r}.")
        self.features = _mlp([2 * feature_dim, 4 * hidden_dim, 4 * hidden_dim, hidden_dim])
        self.logscale_head = nn.Linear(hidden_dim, dictionary_size)
        self.shift_head = nn.Linear(hidden_dim, dictionary_size)
        self.log_scale_prior = math.log(scale_prior)
        self.shift_prior = shift_prior

    def forward(self, z0: torch.Tensor, z1: torch.Tensor) -> Laplace:
        """``[B, d]`` pair (give it detached features) → ``Laplace`` of ``[B, M]`` tensors."""
        hidden = self.features(torch.cat([z0, z1], dim=-1))
        logscale = self.logscale_head(hidden).float().clamp(min=-100.0, max=3.0)
        shift = self.shift_head(hidden).float().clamp(min=-5.0, max=5.0)
        return Laplace(shift + self.shift_prior, logscale + self.log_scale_prior)


class CoefficientPrior(nn.Module):
    """``p(c | z0)``: an MLP on ``z0`` with the same heads, warmed up from a fixed Laplace.

    Widths ``d → 4f → 2f → f``, LeakyReLU, two ``Linear(f, M)`` heads;
    ``logscale = clamp(head, max=3) + log(scale_prior)``, ``shift = clamp(head, −5, 5)``.
    During the first ``warmup_steps`` steps the output is mixed with the fixed
    ``Laplace(shift_prior·sign(shift), scale_prior)`` by ``w = min(step / warmup_steps, 1)``,
    exactly as the official code::

        logscale = w·logscale + (1 − w)·log(scale_prior)
        shift    = w·shift + (1 − w)·shift_prior·sign(w·shift)     (sign without gradient)

    so at step 0 the prior is ``Laplace(0, scale_prior)`` and from ``warmup_steps`` on it is
    the network's. ``warmup_steps = 0`` uses the network from the start.
    """

    def __init__(
        self,
        feature_dim: int,
        dictionary_size: int,
        hidden_dim: int = 512,
        scale_prior: float = 0.01,
        shift_prior: float = 0.05,
        warmup_steps: int = 10000,
    ) -> None:
        super().__init__()
        if not scale_prior > 0:
            raise ValueError(f"scale_prior must be > 0, got {scale_prior!r}.")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}.")
        self.features = _mlp([feature_dim, 4 * hidden_dim, 2 * hidden_dim, hidden_dim])
        self.logscale_head = nn.Linear(hidden_dim, dictionary_size)
        self.shift_head = nn.Linear(hidden_dim, dictionary_size)
        self.log_scale_prior = math.log(scale_prior)
        self.shift_prior = shift_prior
        self.warmup_steps = warmup_steps

    def warmup_weight(self, step: int) -> float:
        """``w = min(step / warmup_steps, 1)`` (1 without warm-up)."""
        if self.warmup_steps == 0:
            return 1.0
        return min(max(step, 0) / self.warmup_steps, 1.0)

    def forward(self, z0: torch.Tensor, step: int) -> Laplace:
        """``[B, d]`` features (give them detached) and the training step → ``[B, M]`` each."""
        hidden = self.features(z0)
        logscale = self.logscale_head(hidden).float().clamp(max=3.0) + self.log_scale_prior
        shift = self.shift_head(hidden).float().clamp(min=-5.0, max=5.0)
        weight = self.warmup_weight(step)
        if weight == 1.0:
            return Laplace(shift, logscale)
        fixed_shift = self.shift_prior * torch.sign(weight * shift).detach()
        return Laplace(
            weight * shift + (1.0 - weight) * fixed_shift,
            weight * logscale + (1.0 - weight) * self.log_scale_prior,
        )


@torch.no_grad()
def max_elbo_noise(
    posterior: Laplace,
    transport,
    z0: torch.Tensor,
    z1: torch.Tensor,
    num_samples: int,
    threshold: float = 0.0,
    l1_penalty: float = 0.0,
) -> torch.Tensor:
    """Of ``num_samples`` noise draws per pair, the one whose coefficients best transport
    ``z0`` to ``z1`` (lowest ``MSE(T(c) z0, z1) + l1_penalty·‖c‖₁``): the official code's
    "max-ELBO" sampling. Draws are evaluated one at a time to bound memory.

    Args:
        posterior: ``[B, M]`` parameters of ``q(c | z0, z1)``.
        transport: a :class:`~solo_clamp.losses.transport.TransportOperators`.
        z0, z1: ``[B, d]`` features.
        num_samples: ``J >= 1`` draws per pair.

    Returns:
        ``[B, M]`` uniform noise, to be passed to :func:`laplace_sample`.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
    best_noise = best_cost = None
    for _ in range(num_samples):
        noise = laplace_noise(posterior.shift.shape, device=posterior.shift.device)
        c = laplace_sample(posterior, noise, threshold)
        moved = transport(z0, c, detach_operators=True)
        cost = (moved - z1.float()).pow(2).mean(dim=-1) + l1_penalty * c.abs().sum(dim=-1)
        if best_cost is None:
            best_noise, best_cost = noise, cost
            continue
        better = cost < best_cost
        best_noise = torch.where(better[:, None], noise, best_noise)
        best_cost = torch.where(better, cost, best_cost)
    return best_noise


@torch.no_grad()
def prior_augment(
    features: torch.Tensor,
    transport,
    prior: CoefficientPrior,
    samples: int,
    threshold: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Feature augmentation with the learned prior, as the paper's downstream use:
    ``T(c) z`` with ``c ~ p(c | z)``, ``samples`` draws per feature.

    The prior is the network's own, after its warm-up (as at the end of training, and as the
    official code samples it for evaluation), and draws are soft-thresholded by ``threshold``
    (the model's ``λ``). Computed in float32 with autocast off and without gradients; one
    draw of all features at a time, which bounds the matrix exponentials' memory.

    Args:
        features: ``[N, d]`` backbone features.
        transport: the model's :class:`~solo_clamp.losses.transport.TransportOperators`.
        prior: the model's :class:`CoefficientPrior`.
        samples: ``n >= 1`` draws per feature.
        threshold: soft threshold ``λ >= 0`` of the coefficient samples.
        generator: CPU generator of the noise, for repeatable draws.

    Returns:
        ``[N * n, d]`` float32; row ``i * n + j`` is draw ``j`` of feature ``i`` (labels
        follow with ``labels.repeat_interleave(n)``).

    Examples:
        >>> extra = prior_augment(z, model.manifold.transport, model.manifold.prior, 10,
        ...                       threshold=model.manifold.threshold)
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}.")
    if features.dim() != 2:
        raise ValueError(
            f"features must be a 2-D tensor [N, d], got shape {tuple(features.shape)}."
        )
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.float()
        distribution = prior(z, step=prior.warmup_steps)
        draws = []
        for _ in range(samples):
            c = laplace_draw(distribution, threshold, generator)
            draws.append(transport(z, c, detach_operators=True))
    return torch.stack(draws, dim=1).reshape(len(z) * samples, z.shape[-1])
