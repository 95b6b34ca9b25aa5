"""ManifoldCLR's ``method_kwargs``: :class:`ManifoldCLRKwargs`, the fields with their defaults,
types and ranges (errors name ``method_kwargs.<field>``)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, StrictBool, StrictInt
from pydantic.dataclasses import dataclass

from solo_clamp.losses.transport import OPERATOR_INITS
from solo_clamp.validation import CLOSED, Count, Index, Number


def _even(block_dim: int) -> int:
    if block_dim % 2:
        raise ValueError(f"must be even (the operators start as 2x2 rotations), got {block_dim}")
    return block_dim


@dataclass(config=CLOSED)
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

    proj_hidden_dim: Count = 1024
    proj_output_dim: Count = 128
    dictionary_size: Count = 32
    block_dim: Annotated[StrictInt, Field(ge=2), AfterValidator(_even)] = 64
    vi_hidden_dim: Count = 512
    init_real_range: Number = Field(1e-4, ge=0)
    init_imag_range: Number = Field(6.0, ge=0)
    scale_prior: Number = Field(0.01, gt=0)
    shift_prior: Number = Field(0.05, allow_inf_nan=False)
    threshold: Number = Field(0.01, ge=0)
    prior_warmup_steps: Index = 10000
    max_elbo_samples: Count = 20
    max_elbo_start_step: Index = 5000
    max_elbo_l1_penalty: Number = Field(0.0, ge=0)
    temperature: Number = Field(0.5, gt=0)
    mse_weight: Number = Field(10.0, ge=0)
    kl_weight: Number = Field(1e-3, ge=0)
    shift_l2_weight: Number = Field(1e-2, ge=0)
    transop_lr: Number = Field(5e-4, gt=0)  # per 256 images: 1e-3 at the official batch of 512
    transop_weight_decay: Number = Field(1e-3, ge=0)
    transop_grad_clip: Optional[Number] = Field(0.1, gt=0)
    vi_lr: Number = Field(5e-5, gt=0)  # per 256 images: 1e-4 at batch 512
    vi_weight_decay: Number = Field(1e-5, ge=0)
    vi_grad_clip: Optional[Number] = Field(1.0, gt=0)
    backbone_grad_clip: Optional[Number] = Field(None, gt=0)
    normalize_transport: StrictBool = False
    transport_grad_start_step: Optional[Index] = 0
    operator_init: Literal[OPERATOR_INITS] = "rotation"  # type: ignore[valid-type]
    use_operators: StrictBool = True
