"""CLAMP as a solo-learn method (``method: clamp``)."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import omegaconf
import torch
import torch.nn as nn
import torch.nn.functional as F
from solo.methods.base import BaseMethod
from solo.utils.metrics import accuracy_at_k

from solo_clamp.config import check_clamp_kwargs
from solo_clamp.losses.clamp import STAT_NAMES, NonFiniteEmbeddingsError, clamp_loss_and_stats
from solo_clamp.views import count_views, forward_by_resolution, large_crop_indices, view_major


def build_projector(in_dim: int, hidden_dim: int, output_dim: int, hidden_layers: int) -> nn.Module:
    """Linear-ReLU hidden layers and a final Linear, without BatchNorm (as in the paper)."""
    layers: List[nn.Module] = []
    width = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_dim), nn.ReLU(inplace=True)]
        width = hidden_dim
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


class CLAMP(BaseMethod):
    def __init__(self, cfg: omegaconf.DictConfig):
        """Implements CLAMP, Contrastive Learning As Manifold Packing (Zhang, Heeger,
        Martiniani, NeurIPS 2025).

        Every crop of an image is one view of its sub-manifold (see ``solo_clamp.views``).

        Extra cfg settings:
            method_kwargs:
                proj_hidden_dim (int): width of the projector's hidden layers.
                proj_output_dim (int): embedding dimension D.
                proj_hidden_layers (int): number of Linear-ReLU hidden layers. Defaults to 1.
                rs (float): radius scale of the sub-manifolds.
                pot_pow (float): exponent of the repulsive potential. Defaults to 2.0.
                lw0 (float): weight of the sub-manifold size term. Defaults to 0.0.
                lw1 (float): weight of the repulsion term. Defaults to 1.0.
                min_margin (float): ignore pairs of centroids closer than this. Defaults to 1e-3.
                max_range (float): cap on the interaction range. Defaults to 1.5.
                joint_forward (bool): forward all crops of one resolution as one batch
                    (BatchNorm over all views, as the paper). Defaults to True.
                tile_size (int | None): rows per block of the tiled loss; None = automatic.
                ddp_gradient (str): "full" (gradients of all ranks summed: results do not
                    depend on the GPU count) or "local" (other ranks' embeddings detached, as
                    the official code). Defaults to "full".
        """
        super().__init__(cfg)
        kwargs = cfg.method_kwargs
        self.num_views: int = count_views(cfg)
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
        cfg.method_kwargs = check_clamp_kwargs(cfg.method_kwargs, count_views(cfg))
        return cfg

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
                f"{self.num_crops} (augmentations[*].num_crops)."
            )
        outs = forward_by_resolution(self._views_forward, X)
        large = large_crop_indices(X)
        feats = torch.cat([outs[i]["feats"] for i in large])
        all_targets = targets.repeat(len(large))
        logits = self.classifier(feats.detach())
        class_loss = F.cross_entropy(logits, all_targets, ignore_index=-1)
        acc1, acc5 = accuracy_at_k(logits, all_targets, top_k=(1, min(5, logits.size(1))))
        self.log_dict(
            {"train_class_loss": class_loss, "train_acc1": acc1, "train_acc5": acc5},
            on_epoch=True,
            sync_dist=True,
        )
        if self.knn_eval:
            labelled = all_targets != -1
            self.knn(train_features=feats[labelled].detach(), train_targets=all_targets[labelled])
        return class_loss, [out["z"] for out in outs]

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
        self.log("train_clamp_loss", clamp_loss, on_epoch=True, sync_dist=True, prog_bar=True)
        self.log_dict(
            {f"train_clamp_{name}": stats[name] for name in STAT_NAMES},
            on_epoch=True,
            sync_dist=True,
            prog_bar=True,
        )
        return clamp_loss + class_loss
