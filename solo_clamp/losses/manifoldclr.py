"""The ManifoldCLR objective: contrastive learning with learned Lie group feature augmentation.

Reference: Fallah, Helbling, Johnsen, Rozell, "Manifold Contrastive Learning with Variational
Lie Group Operators", TMLR 2024 (official code: github.com/kfallah/manifold-contrastive).

For backbone features ``z0, z1`` of two views of each image, with transport operators ``T``
(:mod:`solo_clamp.losses.transport`), posterior ``q(c | z0, z1)`` and prior ``p(c | z0)``
(:mod:`solo_clamp.losses.variational`):

    loss = NT-Xent_τ(proj(T(c0) z0), proj(z1))          c0 ~ p(c | z0)   (feature augmentation)
         + w_mse · MSE(T(c) z0, stopgrad(z1))            c  ~ q(c | z0, z1)
         + w_kl · mean_b KL(q ‖ p)                       (closed form, summed over M)
         + w_shift · mean_b ‖shift_q‖²

The networks see detached features; gradients reach the backbone through ``z0`` in the
transport terms and through both views in NT-Xent, as in the official code.

``use_operators=False`` is the ``c ≡ 0`` ablation: ``T = I``, so the loss is
``NT-Xent_τ(proj(z0), proj(z1))`` alone (SimCLR with this recipe's projector, optimiser and
temperature); the operators and coefficient networks are frozen and never run.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from solo_clamp.losses.gather import gather_images
from solo_clamp.losses.transport import TransportOperators
from solo_clamp.losses.variational import (
    CoefficientPosterior,
    CoefficientPrior,
    laplace_kl,
    laplace_sample,
    max_elbo_noise,
)

STAT_NAMES = (
    "ntxent",
    "transport_mse",
    "transport_ratio",
    "kl",
    "shift_l2",
    "active_coefficients",
)


def transport_ratio(
    moved: torch.Tensor, source: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """``MSE(T(c) z0, z1) / MSE(z0, z1)``: the transport error with the posterior's coefficients
    over the error of the identity (``c = 0``). Below 1 the operators explain part of the
    difference between the two views; 1 means they explain none of it.

    Args:
        moved: ``[B, d]`` transported features ``T(c) z0``.
        source, target: ``[B, d]`` features ``z0`` and ``z1`` (as the MSE compares them).

    Returns:
        A detached scalar (``inf`` when the two views are identical and ``moved`` is not).
    """
    identity = F.mse_loss(source.detach().float(), target.detach().float())
    moved_error = F.mse_loss(moved.detach().float(), target.detach().float())
    return moved_error / identity


def nt_xent_loss(p0: torch.Tensor, p1: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent between two ``[B, D]`` views: row ``i`` of ``p0`` and of ``p1`` are
    positives, the other ``2N − 2`` rows of the global batch negatives (``N`` = images on all
    ranks: under DDP the views are all-gathered, gradients summed across ranks).

    Returns:
        The mean over the ``2B`` local anchors of the cross-entropy of the positive.

    Examples:
        >>> loss = nt_xent_loss(torch.randn(8, 128), torch.randn(8, 128), temperature=0.5)
    """
    if p0.dim() != 2 or p0.shape != p1.shape:
        raise ValueError(
            f"p0 and p1 must be 2-D tensors of the same shape [B, D], got {tuple(p0.shape)} "
            f"and {tuple(p1.shape)}."
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}.")
    local = F.normalize(torch.stack([p0, p1]).float(), dim=-1)  # [2, B, D]
    everyone = gather_images(local)  # [2, N, D]
    batch, images = local.shape[1], everyone.shape[1]
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    anchors = local.reshape(2 * batch, -1)
    logits = anchors @ everyone.reshape(2 * images, -1).T / temperature  # [2B, 2N]
    own = torch.arange(batch, device=logits.device) + rank * batch
    self_column = torch.cat([own, own + images])
    is_self = F.one_hot(self_column, 2 * images).bool()
    logits = logits.masked_fill(is_self, float("-inf"))
    positive_column = torch.cat([own + images, own])
    return F.cross_entropy(logits, positive_column)


class ManifoldCLRLoss(nn.Module):
    """Transport operators, coefficient posterior and prior, and the combined loss.

    Args:
        feature_dim: ``d``, the backbone's feature dimension.
        dictionary_size: ``M`` generators.
        block_dim: ``k``, the size of a diagonal block of the operators (divides ``d``).
        hidden_dim: ``f``, the width parameter of the posterior and prior MLPs.
        real_range, imag_range: initialisation of the operators (see ``TransportOperators``).
        scale_prior, shift_prior: the fixed Laplace the networks' outputs are offset by.
        threshold: soft threshold ``λ`` of the coefficient samples (0 = none).
        prior_warmup_steps: steps over which the prior moves from the fixed Laplace to its
            network's output.
        max_elbo_samples: ``J`` posterior draws per pair, the best kept (1 = plain sampling).
        max_elbo_start_step: first step at which the ``J`` draws are used.
        max_elbo_l1_penalty: ``‖c‖₁`` weight in the choice of the best draw.
        temperature: ``τ`` of NT-Xent.
        mse_weight, kl_weight, shift_l2_weight: weights of the transport, KL and shift terms.
        normalize_transport: compare L2-normalised features in the transport MSE (and the
            max-ELBO choice): ``MSE(T(c) ẑ0, ẑ1)`` with ``ẑ = z / ‖z‖``; the official code uses
            the raw features (False).
        transport_grad_start_step: first step at which the transport MSE's gradient reaches
            the backbone through ``z0`` (official: 0, from the start); None: never (``z0``
            detached in that term). The operators and the networks train from step 0 either way.
        operator_init: ``"rotation"`` (official paper configs) or ``"random"``.
        use_operators: False: the ``c ≡ 0`` ablation (``T = I``): NT-Xent between ``proj(z0)``
            and ``proj(z1)`` only, the operators, posterior and prior frozen
            (``requires_grad`` off) and never run; the transport statistics are those of the
            identity (``transport_mse`` = ``MSE(z0, z1)``, ratio 1, KL, shift and active
            coefficients 0).

    Examples:
        >>> criterion = ManifoldCLRLoss(feature_dim=512, dictionary_size=32)
        >>> projector = nn.Linear(512, 128)
        >>> z0, z1 = torch.randn(16, 512), torch.randn(16, 512)
        >>> loss, stats = criterion(z0, z1, projector, step=0)
    """

    def __init__(
        self,
        feature_dim: int,
        dictionary_size: int,
        block_dim: int = 64,
        hidden_dim: int = 512,
        real_range: float = 1e-4,
        imag_range: float = 6.0,
        scale_prior: float = 0.01,
        shift_prior: float = 0.05,
        threshold: float = 0.01,
        prior_warmup_steps: int = 10000,
        max_elbo_samples: int = 20,
        max_elbo_start_step: int = 5000,
        max_elbo_l1_penalty: float = 0.0,
        temperature: float = 0.5,
        mse_weight: float = 10.0,
        kl_weight: float = 1e-3,
        shift_l2_weight: float = 1e-2,
        normalize_transport: bool = False,
        transport_grad_start_step: int | None = 0,
        operator_init: str = "rotation",
        use_operators: bool = True,
    ) -> None:
        super().__init__()
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold!r}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        if (
            isinstance(max_elbo_samples, bool)
            or not isinstance(max_elbo_samples, int)
            or (max_elbo_samples < 1)
        ):
            raise ValueError(f"max_elbo_samples must be an integer >= 1, got {max_elbo_samples!r}.")
        for name, weight in (
            ("mse_weight", mse_weight),
            ("kl_weight", kl_weight),
            ("shift_l2_weight", shift_l2_weight),
            ("max_elbo_l1_penalty", max_elbo_l1_penalty),
        ):
            if weight < 0:
                raise ValueError(f"{name} must be >= 0, got {weight!r}.")
        self.transport = TransportOperators(
            feature_dim, dictionary_size, block_dim, real_range, imag_range, operator_init
        )
        self.posterior = CoefficientPosterior(
            feature_dim, dictionary_size, hidden_dim, scale_prior, shift_prior
        )
        self.prior = CoefficientPrior(
            feature_dim, dictionary_size, hidden_dim, scale_prior, shift_prior, prior_warmup_steps
        )
        self.threshold = threshold
        self.max_elbo_samples = max_elbo_samples
        self.max_elbo_start_step = max_elbo_start_step
        self.max_elbo_l1_penalty = max_elbo_l1_penalty
        self.temperature = temperature
        self.mse_weight = mse_weight
        self.kl_weight = kl_weight
        self.shift_l2_weight = shift_l2_weight
        self.normalize_transport = normalize_transport
        self.transport_grad_start_step = transport_grad_start_step
        self.use_operators = bool(use_operators)
        if not self.use_operators:
            for module in (self.transport, self.posterior, self.prior):
                module.requires_grad_(False)

    def forward(
        self,
        z0: torch.Tensor,
        z1: torch.Tensor,
        project: Callable[[torch.Tensor], torch.Tensor],
        step: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The ManifoldCLR loss of a batch of pairs.

        Args:
            z0, z1: ``[B, d]`` backbone features of the two views.
            project: the projector (``[n, d] → [n, D]``).
            step: the training step (prior warm-up and max-ELBO start).

        Returns:
            ``(loss, stats)``: stats hold the detached terms named in ``STAT_NAMES``.
        """
        if z0.dim() != 2 or z0.shape != z1.shape:
            raise ValueError(
                f"z0 and z1 must be 2-D tensors of the same shape [B, d], got "
                f"{tuple(z0.shape)} and {tuple(z1.shape)}."
            )
        if not self.use_operators:
            return self._without_operators(z0, z1, project)
        pair = (z0.detach(), z1.detach())
        posterior = self.posterior(*pair)
        prior = self.prior(pair[0], step)

        start = self.transport_grad_start_step
        source = z0 if start is not None and step >= start else pair[0]
        target = pair[1].float()
        if self.normalize_transport:
            source, target = F.normalize(source.float(), dim=-1), F.normalize(target, dim=-1)
        noise = None
        if self.max_elbo_samples > 1 and step >= self.max_elbo_start_step:
            noise = max_elbo_noise(
                posterior,
                self.transport,
                source.detach(),
                target,
                self.max_elbo_samples,
                self.threshold,
                self.max_elbo_l1_penalty,
            )
        c = laplace_sample(posterior, noise, self.threshold)
        moved = self.transport(source, c)
        transport_mse = F.mse_loss(moved, target)

        c0 = laplace_sample(prior, threshold=self.threshold)
        augmented = self.transport(z0, c0)
        # As the official code, z1 is projected in one batch with z0 (BatchNorm statistics of
        # both views) and the augmented z0 on its own.
        p1 = project(torch.cat([z0, z1]))[len(z1) :]
        ntxent = nt_xent_loss(project(augmented.to(z0.dtype)), p1, self.temperature)

        kl = laplace_kl(posterior, prior).mean()
        shift_l2 = posterior.shift.pow(2).sum(dim=-1).mean()
        loss = (
            ntxent
            + self.mse_weight * transport_mse
            + self.kl_weight * kl
            + self.shift_l2_weight * shift_l2
        )
        stats = {
            "ntxent": ntxent.detach(),
            "transport_mse": transport_mse.detach(),
            "transport_ratio": transport_ratio(moved, source, target),
            "kl": kl.detach(),
            "shift_l2": shift_l2.detach(),
            "active_coefficients": (c.detach() != 0).float().mean(),
        }
        return loss, stats

    def _without_operators(
        self, z0: torch.Tensor, z1: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The ``c ≡ 0`` ablation: the forward pass above with ``T(c0) = I`` (``z1`` projected in
        one batch with ``z0``, ``z0`` on its own) and no transport, KL or shift term."""
        p1 = project(torch.cat([z0, z1]))[len(z1) :]
        ntxent = nt_xent_loss(project(z0), p1, self.temperature)
        source, target = z0.detach().float(), z1.detach().float()
        if self.normalize_transport:
            source, target = F.normalize(source, dim=-1), F.normalize(target, dim=-1)
        zero = ntxent.detach().new_zeros(())
        stats = {
            "ntxent": ntxent.detach(),
            "transport_mse": F.mse_loss(source, target),
            "transport_ratio": torch.ones_like(zero),
            "kl": zero,
            "shift_l2": zero,
            "active_coefficients": zero,
        }
        return ntxent, stats
