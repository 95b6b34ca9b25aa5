"""ManifoldCLR's ``method_kwargs``: :class:`ManifoldCLRKwargs`, the fields with their defaults
and range checks (errors name ``method_kwargs.<field>``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from solo_clamp.losses.transport import OPERATOR_INITS
from solo_clamp.methods.facts import field_error, require, require_each


@dataclass
class ManifoldCLRKwargs:
    """ManifoldCLR's ``method_kwargs``. The defaults are the official CIFAR-10 soft-threshold
    config (``transop_vi-thresh_proj_cifar10.yaml`` of github.com/kfallah/manifold-contrastive).

    Attributes:
        proj_hidden_dim, proj_output_dim: projector Linear-BN-ReLU-Linear.
        dictionary_size, block_dim: ``M`` generators with blocks of size ``k``.
        vi_hidden_dim: width parameter of the posterior and prior MLPs.
        init_real_range, init_imag_range: initialisation of the generators.
        scale_prior, shift_prior: the fixed Laplace of the coefficient networks.
        threshold: soft threshold of the coefficient samples.
        prior_warmup_steps: steps from the fixed prior to the learned one.
        max_elbo_samples, max_elbo_start_step, max_elbo_l1_penalty: best-of-J posterior
            sampling from a given step.
        temperature, mse_weight, kl_weight, shift_l2_weight: the loss.
        transop_lr, transop_weight_decay, transop_grad_clip: the operators' group; the lr is
            per 256 images, scaled as solo-learn scales ``optimizer.lr`` (x batch size x
            processes / 256), so that its rate per sample is the configured one at any batch.
        vi_lr, vi_weight_decay, vi_grad_clip: the posterior and prior networks' group (lr per
            256 images, likewise).
        backbone_grad_clip: gradient-norm clip of backbone + projector (null = none).
        normalize_transport: the transport MSE on L2-normalised features (official: false).
        transport_grad_start_step: first step at which the transport MSE's gradient reaches the
            backbone (official: 0); null: never.
        operator_init: "rotation" (official paper configs) or "random" (the official code's
            other initialisation).
        use_operators: false: the ``c ≡ 0`` ablation (operators off: ``T = I``, the loss is
            NT-Xent between ``proj(z0)`` and ``proj(z1)``, i.e. SimCLR with this recipe's
            projector, optimiser and temperature; the operators and coefficient networks are
            frozen). Default true: the method.
    """

    proj_hidden_dim: int = 1024
    proj_output_dim: int = 128
    dictionary_size: int = 32
    block_dim: int = 64
    vi_hidden_dim: int = 512
    init_real_range: float = 1e-4
    init_imag_range: float = 6.0
    scale_prior: float = 0.01
    shift_prior: float = 0.05
    threshold: float = 0.01
    prior_warmup_steps: int = 10000
    max_elbo_samples: int = 20
    max_elbo_start_step: int = 5000
    max_elbo_l1_penalty: float = 0.0
    temperature: float = 0.5
    mse_weight: float = 10.0
    kl_weight: float = 1e-3
    shift_l2_weight: float = 1e-2
    transop_lr: float = 5e-4  # per 256 images: 1e-3 at the official batch of 512
    transop_weight_decay: float = 1e-3
    transop_grad_clip: Optional[float] = 0.1
    vi_lr: float = 5e-5  # per 256 images: 1e-4 at batch 512
    vi_weight_decay: float = 1e-5
    vi_grad_clip: Optional[float] = 1.0
    backbone_grad_clip: Optional[float] = None
    normalize_transport: bool = False
    transport_grad_start_step: Optional[int] = 0
    operator_init: str = "rotation"
    use_operators: bool = True

    def __post_init__(self) -> None:
        sizes = ("proj_hidden_dim", "proj_output_dim", "dictionary_size", "vi_hidden_dim")
        require_each(self, (*sizes, "max_elbo_samples"), "an integer >= 1")
        require(self.block_dim >= 2, "block_dim", "an integer >= 2", self.block_dim)
        if self.block_dim % 2:
            raise field_error(
                "block_dim",
                f"must be even (the operators start as 2x2 rotations), got {self.block_dim!r}.",
            )
        require_each(self, ("prior_warmup_steps", "max_elbo_start_step"), "an integer >= 0")
        require_each(self, ("scale_prior", "temperature", "transop_lr", "vi_lr"), "> 0")
        initialisation = ("init_real_range", "init_imag_range", "threshold")
        weights = ("max_elbo_l1_penalty", "mse_weight", "kl_weight", "shift_l2_weight")
        decays = ("transop_weight_decay", "vi_weight_decay")
        require_each(self, (*initialisation, *weights, *decays), ">= 0")
        require(math.isfinite(self.shift_prior), "shift_prior", "a finite number", self.shift_prior)
        clips = ("transop_grad_clip", "vi_grad_clip", "backbone_grad_clip")
        require_each(self, clips, "> 0 or null")
        start = self.transport_grad_start_step
        rule = "an integer >= 0 or null"
        require(start is None or start >= 0, "transport_grad_start_step", rule, start)
        rule = f"one of {list(OPERATOR_INITS)}"
        require(self.operator_init in OPERATOR_INITS, "operator_init", rule, self.operator_init)
