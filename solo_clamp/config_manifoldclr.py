"""ManifoldCLR's ``method_kwargs``: defaults and checks (OmegaConf only, no solo-learn import).

The defaults are the official CIFAR-10 soft-threshold config
(``transop_vi-thresh_proj_cifar10.yaml`` of github.com/kfallah/manifold-contrastive).
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from solo_clamp.config import _field, _number, _positive_int

MANIFOLDCLR_DEFAULTS: dict[str, Any] = {
    "proj_hidden_dim": 1024,
    "proj_output_dim": 128,
    "dictionary_size": 32,
    "block_dim": 64,
    "vi_hidden_dim": 512,
    "init_real_range": 1e-4,
    "init_imag_range": 6.0,
    "scale_prior": 0.01,
    "shift_prior": 0.05,
    "threshold": 0.01,
    "prior_warmup_steps": 10000,
    "max_elbo_samples": 20,
    "max_elbo_start_step": 5000,
    "max_elbo_l1_penalty": 0.0,
    "temperature": 0.5,
    "mse_weight": 10.0,
    "kl_weight": 1e-3,
    "shift_l2_weight": 1e-2,
    "transop_lr": 1e-3,
    "transop_weight_decay": 1e-3,
    "transop_grad_clip": 0.1,
    "vi_lr": 1e-4,
    "vi_weight_decay": 1e-5,
    "vi_grad_clip": 1.0,
    "backbone_grad_clip": None,
}

_POSITIVE_INTS = ("proj_hidden_dim", "proj_output_dim", "dictionary_size", "vi_hidden_dim")
_COUNTS = ("prior_warmup_steps", "max_elbo_start_step")
_STRICTLY_POSITIVE = ("scale_prior", "temperature", "transop_lr", "vi_lr")
_NON_NEGATIVE = (
    "init_real_range",
    "init_imag_range",
    "threshold",
    "max_elbo_l1_penalty",
    "mse_weight",
    "kl_weight",
    "shift_l2_weight",
    "transop_weight_decay",
    "vi_weight_decay",
)
_CLIPS = ("transop_grad_clip", "vi_grad_clip", "backbone_grad_clip")


def check_manifoldclr_kwargs(kwargs: DictConfig | dict | None, num_views: int) -> DictConfig:
    """Fills ManifoldCLR's defaults into ``method_kwargs`` and validates every field.

    Args:
        kwargs: the ``method_kwargs`` node.
        num_views: large + small crops per image; ManifoldCLR uses exactly one pair.

    Returns:
        The completed node.

    Raises:
        ValueError: naming the offending field and the allowed values.
    """
    kwargs = OmegaConf.create({} if kwargs is None else kwargs)
    OmegaConf.set_struct(kwargs, False)
    for name, default in MANIFOLDCLR_DEFAULTS.items():
        if name not in kwargs or OmegaConf.is_missing(kwargs, name):
            kwargs[name] = default
    unknown = sorted(set(kwargs) - set(MANIFOLDCLR_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown method_kwargs for method=manifoldclr: {unknown}; the fields are "
            f"{sorted(MANIFOLDCLR_DEFAULTS)}."
        )

    if num_views != 2:
        raise ValueError(
            "ManifoldCLR uses exactly 2 views per image (the pair z0, z1): the sum of "
            f"augmentations[*].num_crops must be 2, got {num_views!r}."
        )
    for name in _POSITIVE_INTS:
        _positive_int(kwargs, name)
    _positive_int(kwargs, "block_dim", minimum=2)
    if kwargs.block_dim % 2:
        raise ValueError(
            f"{_field('block_dim')} must be even (the operators start as 2x2 rotations), got "
            f"{kwargs.block_dim!r}."
        )
    _positive_int(kwargs, "max_elbo_samples")
    for name in _COUNTS:
        _positive_int(kwargs, name, minimum=0)
    for name in _STRICTLY_POSITIVE:
        _number(kwargs, name, strictly_positive=True)
    for name in _NON_NEGATIVE:
        _number(kwargs, name, strictly_positive=False)
    shift_prior = kwargs.shift_prior
    if (
        isinstance(shift_prior, bool)
        or not isinstance(shift_prior, (int, float))
        or not (math.isfinite(shift_prior))
    ):
        raise ValueError(f"{_field('shift_prior')} must be a finite number, got {shift_prior!r}.")
    for name in _CLIPS:
        if kwargs[name] is not None:
            _number(kwargs, name, strictly_positive=True)
    return kwargs
