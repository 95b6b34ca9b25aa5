"""ManifoldCLR as a solo-learn method (``method: manifoldclr``)."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Union

import omegaconf
import torch
import torch.nn as nn
from solo.methods.base import BaseMethod

from solo_clamp.checkpoints import backbone_state
from solo_clamp.geometry.transport import LearnedTransport
from solo_clamp.losses.manifoldclr import STAT_NAMES, ManifoldCLRLoss
from solo_clamp.losses.variational import prior_augment
from solo_clamp.methods.facts import MethodFacts, ViewRule
from solo_clamp.methods.manifoldclr_kwargs import ManifoldCLRKwargs
from solo_clamp.methods.online import online_evaluation
from solo_clamp.methods.registry import register_method


class PriorAugmenter:
    """Few-label feature augmentation: samples ``T(c) z``, ``c ~ p(c | z)``, of a trained
    ManifoldCLR's prior (its ``manifold`` module, in eval mode)."""

    def __init__(self, manifold: ManifoldCLRLoss):
        self.manifold = manifold.eval()
        self.threshold = manifold.threshold

    def augment(self, z: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
        """``[B * samples, d]``: ``samples`` prior samples of each row of ``z``, row-major."""
        manifold = self.manifold
        return prior_augment(
            z, manifold.transport, manifold.prior, samples, self.threshold, generator
        )


def _operators_on(kwargs: Mapping[str, Any]) -> bool:
    """False for a run of the ``c ≡ 0`` ablation (``use_operators: false``); runs older than
    the field had their operators on."""
    return bool(kwargs.get("use_operators", True))


def _prior_augmenter(
    cfg: omegaconf.DictConfig, checkpoint: Mapping[str, Any]
) -> Optional[PriorAugmenter]:
    """The augmenter of a ManifoldCLR run: its cfg and its checkpoint (or ``state_dict``);
    None for the ``c ≡ 0`` ablation (its prior was never trained)."""
    if not _operators_on(cfg.method_kwargs):
        return None
    manifold = ManifoldCLR(cfg).manifold
    manifold.load_state_dict(backbone_state(checkpoint, prefix="manifold"))
    return PriorAugmenter(manifold)


def _learned_transport(model: nn.Module, checkpoint: Mapping[str, Any]) -> LearnedTransport | None:
    """The operators, posterior and prior of a built ManifoldCLR ``model``, loaded from its
    run's ``checkpoint`` and put in eval mode, for the geometry report's held-out transport
    check; None for a run of the ``c ≡ 0`` ablation."""
    if not _operators_on(model.cfg.method_kwargs):
        return None
    manifold = model.manifold
    manifold.load_state_dict(backbone_state(checkpoint, prefix="manifold"))
    manifold.eval()
    prior = manifold.prior
    return LearnedTransport(
        transport=lambda z, c: manifold.transport(z, c, detach_operators=True),
        psi=manifold.transport.psi.detach(),
        posterior=manifold.posterior,
        prior=lambda z: prior(z, step=prior.warmup_steps),
        threshold=manifold.threshold,
        normalize=manifold.normalize_transport,
    )


KL_BOUND = 100.0
"""Posterior divergence: KL(q ‖ p) above this many nats per coefficient (epoch mean). With
both scales near ``scale_prior`` (0.01), a location gap of 1 costs about 100 nats."""
SHIFT_BOUND = 1.0
"""Posterior divergence: mean squared location of q above this per coefficient (the shift
prior is 0.05, and a shift of 1 turns the initial operators' blocks by radians)."""


def _diagnose(metrics: Mapping[str, float], kwargs: omegaconf.DictConfig) -> list[str]:
    """The posterior's divergence from the final epoch's KL and shift (see the bounds)."""
    problems = []
    for name, bound, what in (
        ("kl", KL_BOUND, "KL(q || p)"),
        ("shift_l2", SHIFT_BOUND, "squared posterior shift"),
    ):
        total = metrics.get(f"{ManifoldCLR.facts.stat_keys[name]}_epoch")
        if total is None:  # no finished epoch logged
            continue
        value = total / kwargs.dictionary_size
        if not value <= bound:  # NaN counts as past the bound
            problems.append(
                f"ManifoldCLR's posterior DIVERGED: {what} is {value:.3g} per coefficient in the "
                f"last epoch (bound {bound:g}); its operators and prior are not usable for "
                "feature augmentation. Lower method_kwargs.vi_lr or raise kl_weight."
            )
    return problems


@register_method
class ManifoldCLR(BaseMethod):
    facts: ClassVar[MethodFacts] = MethodFacts(
        name="manifoldclr",
        loss_key="train_manifoldclr_loss",
        views=ViewRule(minimum=2, maximum=2, why="the method's pair z0, z1"),
        kwargs_schema=ManifoldCLRKwargs,
        stat_keys={name: f"train_manifoldclr_{name}" for name in STAT_NAMES},
        shape_fields=(
            "proj_hidden_dim",
            "proj_output_dim",
            "dictionary_size",
            "block_dim",
            "vi_hidden_dim",
        ),
        # block_dim (operator blocks on the backbone's features) and vi_hidden_dim (the
        # coefficient networks) are not projector widths
        projector_width_fields=("proj_hidden_dim", "proj_output_dim"),
        feature_augmenter=_prior_augmenter,
        learned_transport=_learned_transport,
        diagnose=_diagnose,
    )

    def __init__(self, cfg: omegaconf.DictConfig):
        """Implements ManifoldCLR, Manifold Contrastive Learning with Variational Lie Group
        Operators (Fallah, Helbling, Johnsen, Rozell, TMLR 2024).

        Learned transport operators model the manifold of a sample's augmentations in the
        backbone's feature space; samples from a learned prior over their coefficients
        augment ``z0`` for the contrastive loss (see ``solo_clamp.losses.manifoldclr``).

        ``method_kwargs``: :class:`ManifoldCLRKwargs`.
        """
        super().__init__(cfg)
        kwargs = cfg.method_kwargs
        self.projector = nn.Sequential(
            nn.Linear(self.features_dim, kwargs.proj_hidden_dim),
            nn.BatchNorm1d(kwargs.proj_hidden_dim),
            nn.ReLU(),
            nn.Linear(kwargs.proj_hidden_dim, kwargs.proj_output_dim),
        )
        if self.features_dim % kwargs.block_dim:
            raise ValueError(
                f"method_kwargs.block_dim={kwargs.block_dim} must divide the backbone's feature "
                f"dimension ({self.features_dim} for {cfg.backbone.name})."
            )
        self.manifold = ManifoldCLRLoss(
            self.features_dim,
            kwargs.dictionary_size,
            block_dim=kwargs.block_dim,
            hidden_dim=kwargs.vi_hidden_dim,
            real_range=kwargs.init_real_range,
            imag_range=kwargs.init_imag_range,
            scale_prior=kwargs.scale_prior,
            shift_prior=kwargs.shift_prior,
            threshold=kwargs.threshold,
            prior_warmup_steps=kwargs.prior_warmup_steps,
            max_elbo_samples=kwargs.max_elbo_samples,
            max_elbo_start_step=kwargs.max_elbo_start_step,
            max_elbo_l1_penalty=kwargs.max_elbo_l1_penalty,
            temperature=kwargs.temperature,
            mse_weight=kwargs.mse_weight,
            kl_weight=kwargs.kl_weight,
            shift_l2_weight=kwargs.shift_l2_weight,
            normalize_transport=kwargs.normalize_transport,
            transport_grad_start_step=kwargs.transport_grad_start_step,
            operator_init=kwargs.operator_init,
            use_operators=_operators_on(kwargs),
        )
        self.transop_grad_clip: Optional[float] = kwargs.transop_grad_clip
        self.vi_grad_clip: Optional[float] = kwargs.vi_grad_clip
        self.backbone_grad_clip: Optional[float] = kwargs.backbone_grad_clip
        self.transop_lr: float = kwargs.transop_lr
        self.transop_weight_decay: float = kwargs.transop_weight_decay
        self.vi_lr: float = kwargs.vi_lr
        self.vi_weight_decay: float = kwargs.vi_weight_decay

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """Adds ManifoldCLR's defaults and checks its settings, with errors naming the field."""
        cfg = super(ManifoldCLR, ManifoldCLR).add_and_assert_specific_cfg(cfg)
        return ManifoldCLR.facts.check(cfg)

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        """Backbone, classifier and projector at ``optimizer.lr`` / ``weight_decay``; the
        operators and the coefficient networks at their own lr (per 256 images, scaled here as
        solo-learn's ``parse_cfg`` scales ``optimizer.lr``) and weight decay."""
        scale = self.batch_size * self._processes() / 256
        return super().learnable_params + [
            {"name": "projector", "params": self.projector.parameters()},
            {
                "name": "transport_operators",
                "params": self.manifold.transport.parameters(),
                "lr": self.transop_lr * scale,
                "weight_decay": self.transop_weight_decay,
            },
            {
                "name": "coefficient_networks",
                "params": self._coefficient_parameters(),
                "lr": self.vi_lr * scale,
                "weight_decay": self.vi_weight_decay,
            },
        ]

    def configure_optimizers(self):
        """solo-learn's optimizer and scheduler. Without warm-up, solo-learn's
        ``warmup_cosine`` starts every group at ``optimizer.lr`` and its chained cosine then
        keeps that for the whole run (measured: the coefficient networks trained at 30x their
        lr and diverged in 3 steps); each group is reset to its own learning rate here."""
        result = super().configure_optimizers()
        if self.scheduler == "warmup_cosine" and self.warmup_epochs == 0:
            (optimizer,), (scheduler,) = result
            for group, base_lr in zip(optimizer.param_groups, scheduler["scheduler"].base_lrs):
                group["lr"] = base_lr
        return result

    def _processes(self) -> int:
        """The training processes (devices x nodes) of the attached trainer; 1 without one."""
        try:
            return self.trainer.world_size
        except RuntimeError:  # not attached to a Trainer (a model built on its own)
            return 1

    def _coefficient_parameters(self) -> List[nn.Parameter]:
        return [*self.manifold.posterior.parameters(), *self.manifold.prior.parameters()]

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: Optional[Union[int, float]] = None,
        gradient_clip_algorithm: Optional[str] = None,
    ) -> None:
        """Clips the gradient norm of each group on its own, as the official code, then
        applies the trainer's ``gradient_clip_val`` (if any) to everything."""
        groups = (
            (self.transop_grad_clip, list(self.manifold.transport.parameters())),
            (self.vi_grad_clip, self._coefficient_parameters()),
            (
                self.backbone_grad_clip,
                [*self.backbone.parameters(), *self.projector.parameters()],
            ),
        )
        for max_norm, params in groups:
            if max_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_norm)
        if gradient_clip_val:
            super().configure_gradient_clipping(
                optimizer,
                gradient_clip_val=gradient_clip_val,
                gradient_clip_algorithm=gradient_clip_algorithm,
            )

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        out = super().forward(X)
        out["z"] = self.projector(out["feats"])
        return out

    def _pair_features(self, batch: Sequence[Any]) -> tuple[torch.Tensor, List[torch.Tensor]]:
        """Backbone features of each view, forwarded separately (BatchNorm per view, as the
        official code), and the online classifier's loss on both (logged as solo-learn does)."""
        _, X, targets = batch
        X = [X] if isinstance(X, torch.Tensor) else list(X)
        if len(X) != 2:
            raise ValueError(
                f"the batch has {len(X)} crops per image but ManifoldCLR uses exactly 2 "
                "(augmentations[*].num_crops must sum to 2)."
            )
        if not self.no_channel_last:
            X = [x.to(memory_format=torch.channels_last) for x in X]
        feats = [self.backbone(x) for x in X]
        return online_evaluation(self, feats, targets), feats

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """ManifoldCLR's loss on the pair of views plus the online classifier's loss."""
        class_loss, (z0, z1) = self._pair_features(batch)
        loss, stats = self.manifold(z0, z1, self.projector, step=self.global_step)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite ManifoldCLR loss at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}): training diverged. Lower "
                "optimizer.lr or the operators' method_kwargs.transop_lr, or clip gradients."
            )
        self.log(self.facts.loss_key, loss, on_epoch=True, sync_dist=True, prog_bar=True)
        self.log_dict(
            {key: stats[name] for name, key in self.facts.stat_keys.items()},
            on_epoch=True,
            sync_dist=True,
        )
        return loss + class_loss
