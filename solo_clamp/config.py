"""CLAMP's ``method_kwargs``: defaults and checks (OmegaConf only, no solo-learn import)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from solo_clamp.losses.gather import DDP_GRADIENTS

DEFAULTS: dict[str, Any] = {
    "proj_hidden_layers": 1,
    "pot_pow": 2.0,
    "lw0": 0.0,
    "lw1": 1.0,
    "min_margin": 1e-3,
    "max_range": 1.5,
    "joint_forward": True,
    "tile_size": None,
    "ddp_gradient": "full",
}
REQUIRED = ("proj_hidden_dim", "proj_output_dim", "rs")


def _field(name: str) -> str:
    return f"method_kwargs.{name}"


def _positive_int(kwargs: DictConfig, name: str, minimum: int = 1) -> None:
    value = kwargs[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{_field(name)} must be an integer >= {minimum}, got {value!r}.")


def _number(kwargs: DictConfig, name: str, *, strictly_positive: bool) -> float:
    value = kwargs[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{_field(name)} must be a number, got {value!r}.")
    if strictly_positive and not value > 0:
        raise ValueError(f"{_field(name)} must be > 0, got {value!r}.")
    if not strictly_positive and value < 0:
        raise ValueError(f"{_field(name)} must be >= 0, got {value!r}.")
    return float(value)


def check_clamp_kwargs(kwargs: DictConfig | dict | None, num_views: int) -> DictConfig:
    """Fills CLAMP's defaults into ``method_kwargs`` and validates every field.

    Args:
        kwargs: the ``method_kwargs`` node.
        num_views: large + small crops per image (views of each sub-manifold).

    Returns:
        The completed node.

    Raises:
        ValueError: naming the offending field and the allowed values.
    """
    kwargs = OmegaConf.create({} if kwargs is None else kwargs)
    OmegaConf.set_struct(kwargs, False)
    for name in REQUIRED:
        if name not in kwargs or OmegaConf.is_missing(kwargs, name):
            raise ValueError(f"{_field(name)} is required for method=clamp.")
    for name, default in DEFAULTS.items():
        if name not in kwargs or OmegaConf.is_missing(kwargs, name):
            kwargs[name] = default

    if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 2:
        raise ValueError(
            "CLAMP needs at least 2 views per image: the sum of augmentations[*].num_crops "
            f"must be >= 2, got {num_views!r}."
        )
    _positive_int(kwargs, "proj_hidden_dim")
    _positive_int(kwargs, "proj_output_dim")
    _positive_int(kwargs, "proj_hidden_layers", minimum=0)
    _number(kwargs, "rs", strictly_positive=True)
    _number(kwargs, "pot_pow", strictly_positive=True)
    lw0 = _number(kwargs, "lw0", strictly_positive=False)
    lw1 = _number(kwargs, "lw1", strictly_positive=False)
    if lw0 == 0 and lw1 == 0:
        raise ValueError(f"{_field('lw0')} and {_field('lw1')} cannot both be 0.")
    min_margin = _number(kwargs, "min_margin", strictly_positive=False)
    max_range = _number(kwargs, "max_range", strictly_positive=True)
    if not max_range > min_margin:
        raise ValueError(
            f"{_field('max_range')} must be > {_field('min_margin')}, got "
            f"max_range={max_range!r}, min_margin={min_margin!r}."
        )
    if not isinstance(kwargs.joint_forward, bool):
        raise ValueError(
            f"{_field('joint_forward')} must be true or false, got {kwargs.joint_forward!r}."
        )
    if kwargs.tile_size is not None:
        _positive_int(kwargs, "tile_size")
    if kwargs.ddp_gradient not in DDP_GRADIENTS:
        raise ValueError(
            f"{_field('ddp_gradient')} must be one of {list(DDP_GRADIENTS)}, got "
            f"{kwargs.ddp_gradient!r}."
        )
    return kwargs
