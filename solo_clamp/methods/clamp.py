"""CLAMP as a solo-learn method (``method: clamp``)."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Literal, Optional, Sequence

import omegaconf
import torch
import torch.nn as nn
from pydantic import Field, StrictBool
from pydantic.dataclasses import dataclass
from solo.methods.base import BaseMethod

from solo_clamp.losses.clamp import STAT_NAMES, NonFiniteEmbeddingsError, clamp_loss_and_stats
from solo_clamp.losses.gather import DDP_GRADIENTS
from solo_clamp.methods.facts import MethodFacts, ViewRule
from solo_clamp.methods.online import online_evaluation
from solo_clamp.methods.registry import register_method
from solo_clamp.validation import CLOSED, Count, Index, Number
from solo_clamp.views import forward_by_resolution, large_crop_indices, view_major


@dataclass(config=CLOSED)
class ClampKwargs:
    """CLAMP's ``method_kwargs``: defaults, types and ranges (cross-field rules in
    ``__post_init__``).

    Attributes:
        proj_hidden_dim: width of the projector's hidden layers.
        proj_output_dim: embedding dimension D.
        rs: radius scale of the sub-manifolds.
        proj_hidden_layers: number of Linear-ReLU hidden layers.
        pot_pow: exponent of the repulsive potential.
        lw0: weight of the sub-manifold size term.
        lw1: weight of the repulsion term.
        min_margin: pairs of centroids closer than this are ignored.
        max_range: cap on the interaction range.
        joint_forward: forward all crops of one resolution as one batch (BatchNorm over all
            views, as the paper).
        tile_size: rows per block of the tiled loss; None = automatic.
        ddp_gradient: "full" (gradients of all ranks summed: results do not depend on the GPU
            count) or "local" (other ranks' embeddings detached, as the official code).
    """

    proj_hidden_dim: Count
    proj_output_dim: Count
    rs: Number = Field(gt=0)
    proj_hidden_layers: Index = 1
    pot_pow: Number = Field(2.0, gt=0)
    lw0: Number = Field(0.0, ge=0)
    lw1: Number = Field(1.0, ge=0)
    min_margin: Number = Field(1e-3, ge=0)
    max_range: Number = Field(1.5, gt=0)
    joint_forward: StrictBool = True
    tile_size: Optional[Count] = None
    ddp_gradient: Literal[DDP_GRADIENTS] = "full"  # type: ignore[valid-type]

    def __post_init__(self) -> None:
        if self.lw0 == 0 and self.lw1 == 0:
            raise ValueError("lw0 and lw1 cannot both be 0")
        if not self.max_range > self.min_margin:
            raise ValueError(
                f"max_range must be > min_margin, got max_range={self.max_range!r}, "
                f"min_margin={self.min_margin!r}"
            )


def build_projector(in_dim: int, hidden_dim: int, output_dim: int, hidden_layers: int) -> nn.Module:
    """Linear-ReLU hidden layers and a final Linear, without BatchNorm (as in the paper)."""
    layers: List[nn.Module] = []
    width = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_dim), nn.ReLU(inplace=True)]
        width = hidden_dim
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


@register_method
class CLAMP(BaseMethod):
    facts: ClassVar[MethodFacts] = MethodFacts(
        name="clamp",
        loss_key="train_clamp_loss",
        views=ViewRule(minimum=2, why="each image is a sub-manifold of its views"),
        kwargs_schema=ClampKwargs,
        stat_keys={name: f"train_clamp_{name}" for name in STAT_NAMES},
        curve_stats=("neighbours", "mean_radius"),
        shape_fields=(
            "proj_hidden_dim",
            "proj_output_dim",
            "proj_hidden_layers",
            "rs",
            "pot_pow",
            "lw0",
            "lw1",
            "min_margin",
            "max_range",
        ),
        projector_width_fields=("proj_hidden_dim", "proj_output_dim"),
        radius_scale=lambda kwargs: (float(kwargs.rs), float(kwargs.max_range)),
    )

    def __init__(self, cfg: omegaconf.DictConfig):
        """Implements CLAMP, Contrastive Learning As Manifold Packing (Zhang, Heeger,
        Martiniani, NeurIPS 2025).

        Every crop of an image is one view of its sub-manifold (see ``solo_clamp.views``).

        ``method_kwargs``: :class:`ClampKwargs`.
        """
        super().__init__(cfg)
        kwargs = cfg.method_kwargs
        self.num_views: int = self.num_crops
        self.rs: float = kwargs.rs
        self.pot_pow: float = kwargs.pot_pow
        self.lw0: float = kwargs.lw0
        self.lw1: float = kwargs.lw1
        self.min_margin: float = kwargs.min_margin
        self.max_range: float = kwargs.max_range
        self.joint_forward: bool = kwargs.joint_forward
        self.tile_size = kwargs.tile_size
        self.ddp_gradient: str = kwargs.ddp_gradient
        self.projector = build_projector(
            self.features_dim,
            kwargs.proj_hidden_dim,
            kwargs.proj_output_dim,
            kwargs.proj_hidden_layers,
        )

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """Adds CLAMP's defaults and checks its settings, with errors that name the field."""
        cfg = super(CLAMP, CLAMP).add_and_assert_specific_cfg(cfg)
        return CLAMP.facts.check(cfg)

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        """Adds the projector's parameters to the backbone's and the classifier's."""
        return super().learnable_params + [
            {"name": "projector", "params": self.projector.parameters()}
        ]

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        out = super().forward(X)
        out["z"] = self.projector(out["feats"])
        return out

    def multicrop_forward(self, X: torch.Tensor) -> Dict[str, Any]:
        out = super().multicrop_forward(X)
        out["z"] = self.projector(out["feats"])
        return out

    def _views_forward(self, X: torch.Tensor) -> Dict[str, torch.Tensor]:
        if not self.no_channel_last:
            X = X.to(memory_format=torch.channels_last)
        feats = self.backbone(X)
        return {"feats": feats, "z": self.projector(feats)}

    def _joint_training_step(self, batch: Sequence[Any]) -> tuple[torch.Tensor, List[torch.Tensor]]:
        """Forwards all crops of one resolution as one batch, then trains the online
        classifier and kNN on every large view, as solo-learn's per-crop step does."""
        _, X, targets = batch
        X = [X] if isinstance(X, torch.Tensor) else list(X)
        if len(X) != self.num_crops:
            raise ValueError(
                f"the batch has {len(X)} crops per image but the config asks for "
                f"{self.num_crops} (data.num_large_crops + data.num_small_crops)."
            )
        outs = forward_by_resolution(self._views_forward, X)
        large = [outs[i]["feats"] for i in large_crop_indices(X)]
        return online_evaluation(self, large, targets), [out["z"] for out in outs]

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """Training step: CLAMP loss over all views plus the online classifier's loss."""
        if self.joint_forward:
            class_loss, per_view_z = self._joint_training_step(batch)
        else:
            out = super().training_step(batch, batch_idx)
            class_loss, per_view_z = out["loss"], out["z"]

        try:
            clamp_loss, stats = clamp_loss_and_stats(
                view_major(per_view_z),
                num_views=self.num_views,
                rs=self.rs,
                pot_pow=self.pot_pow,
                lw0=self.lw0,
                lw1=self.lw1,
                min_margin=self.min_margin,
                max_range=self.max_range,
                tile_size=self.tile_size,
                ddp_gradient=self.ddp_gradient,
            )
        except NonFiniteEmbeddingsError as err:
            raise FloatingPointError(
                f"non-finite embeddings at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}): training diverged. Lower "
                "optimizer.lr or enable gradient clipping (gradient_clip_val)."
            ) from err
        self.log(self.facts.loss_key, clamp_loss, on_epoch=True, sync_dist=True, prog_bar=True)
        self.log_dict(
            {key: stats[name] for name, key in self.facts.stat_keys.items()},
            on_epoch=True,
            sync_dist=True,
            prog_bar=True,
        )
        return clamp_loss + class_loss
