"""Input validation shared by the geometry measures: every error is a ``ValueError`` that
names the argument."""

from __future__ import annotations

import torch


def shape_of(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    return type(value).__name__


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Upcasts integer and half-precision tensors to float32; float64 stays float64."""
    if x.dtype == torch.float64:
        return x
    return x.float()


def check_views(z: torch.Tensor, min_images: int = 1) -> torch.Tensor:
    """Validates ``z [V, B, D]`` and returns it as a floating tensor (float32 or float64)."""
    if not isinstance(z, torch.Tensor) or z.dim() != 3:
        raise ValueError(
            f"z must be a 3-D tensor [V, B, D] (views, images, dim), got {shape_of(z)}; "
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
    z = as_float(z)
    if not torch.isfinite(z).all():
        raise ValueError("z contains non-finite values (NaN or Inf).")
    return z


def check_positive(value: float, name: str, hint: str = "") -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0{hint}, got {value!r}.")
    return float(value)


def check_feats(feats: torch.Tensor, min_rows: int = 1) -> torch.Tensor:
    """Validates ``feats [N, F]`` and returns it as a floating tensor."""
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
        raise ValueError(f"feats must be a 2-D tensor [N, F], got {shape_of(feats)}.")
    if feats.shape[0] < min_rows:
        raise ValueError(f"feats must hold at least {min_rows} rows, got {feats.shape[0]}.")
    if feats.shape[1] < 1:
        raise ValueError(f"feats must have at least 1 feature column, got {feats.shape[1]}.")
    feats = as_float(feats)
    if not torch.isfinite(feats).all():
        raise ValueError("feats contains non-finite values (NaN or Inf).")
    return feats


def check_labels(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Validates ``labels [N]`` (integers, one per row of ``feats``)."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor [N], got {shape_of(labels)}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integer class ids, got dtype {labels.dtype}.")
    if labels.shape[0] != feats.shape[0]:
        raise ValueError(
            f"labels must have one entry per row of feats: got {labels.shape[0]} labels "
            f"for {feats.shape[0]} rows."
        )
    return labels.to(feats.device)
