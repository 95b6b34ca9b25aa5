"""ManifoldCLR as a solo-learn method (``method: manifoldclr``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Union

import omegaconf
import torch
import torch.nn as nn
from solo.methods.base import BaseMethod

from solo_clamp.checkpoints import backbone_state
from solo_clamp.geometry.transport import LearnedTransport
from solo_clamp.losses.manifoldclr import STAT_NAMES, ManifoldCLRLoss
from solo_clamp.losses.transport import OPERATOR_INITS
from solo_clamp.losses.variational import prior_augment
from solo_clamp.methods.facts import MethodFacts, ViewRule, field_error, require
from solo_clamp.methods.online import online_evaluation
from solo_clamp.methods.registry import register_method


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
        for name in (
            "proj_hidden_dim",
            "proj_output_dim",
            "dictionary_size",
            "vi_hidden_dim",
            "max_elbo_samples",
        ):
            value = getattr(self, name)
            require(value >= 1, name, "an integer >= 1", value)
        require(self.block_dim >= 2, "block_dim", "an integer >= 2", self.block_dim)
        if self.block_dim % 2:
            raise field_error(
                "block_dim",
                f"must be even (the operators start as 2x2 rotations), got {self.block_dim!r}.",
            )
        for name in ("prior_warmup_steps", "max_elbo_start_step"):
            value = getattr(self, name)
            require(value >= 0, name, "an integer >= 0", value)
        for name in ("scale_prior", "temperature", "transop_lr", "vi_lr"):
            value = getattr(self, name)
            require(value > 0, name, "> 0", value)
        for name in (
            "init_real_range",
            "init_imag_range",
            "threshold",
            "max_elbo_l1_penalty",
            "mse_weight",
            "kl_weight",
            "shift_l2_weight",
            "transop_weight_decay",
            "vi_weight_decay",
        ):
            value = getattr(self, name)
            require(value >= 0, name, ">= 0", value)
        require(math.isfinite(self.shift_prior), "shift_prior", "a finite number", self.shift_prior)
        for name in ("transop_grad_clip", "vi_grad_clip", "backbone_grad_clip"):
            value = getattr(self, name)
            require(value is None or value > 0, name, "> 0 or null", value)
        start = self.transport_grad_start_step
        require(
            start is None or start >= 0,
            "transport_grad_start_step",
            "an integer >= 0 or null",
            start,
        )
        require(
            self.operator_init in OPERATOR_INITS,
            "operator_init",
            f"one of {list(OPERATOR_INITS)}",
            self.operator_init,
        )


class PriorAugmenter:
    """Few-label feature augmentation: samples ``T(c) z``, ``c ~ p(c | z)``, of a trained
    ManifoldCLR's prior (its ``manifold`` module, in eval mode)."""

    def __init__(self, manifold: ManifoldCLRLoss):
        self.manifold = manifold.eval()
        self.threshold = manifold.threshold

    def augment(self, z: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
        """``[B * samples, d]``: ``samples`` prior samples of each row of ``z``, row-major."""
        return prior_augment(
            z,
            self.manifold.transport,
            self.manifold.prior,
            samples,
            threshold=self.threshold,
            generator=generator,
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
