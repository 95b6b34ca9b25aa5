"""A backbone's learned feature augmentation in few-label evaluation: its method's
``facts.feature_augmenter`` (ManifoldCLR's operators and prior: samples ``T(c) z``,
``c ~ p(c | z)``), refused with the reason for a backbone that has none, loaded from the run's
checkpoint, and the semi-supervised protocol's ``prior`` arm built on it.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Optional

from omegaconf import OmegaConf

from solo_clamp.backbones import PretrainedBackbone
from solo_clamp.checkpoints import load_run
from solo_clamp.errors import CheckpointError, ConfigError
from solo_clamp.methods import facts_of, known
from solo_clamp.training.semi_supervised import Augment, SemiSupervisedSettings


def check_feature_augment(
    samples: int,
    method: Optional[str],
    origin: str,
    asked: Optional[str] = None,
    fix: str = "set feature_augment.samples=0",
) -> None:
    """Refuses feature augmentation for a backbone whose method has no feature augmenter.

    Args:
        samples: ``feature_augment.samples`` (0: nothing to check).
        method: the pretraining method of the backbone (None: the untrained backbone).
        origin: where the backbone comes from (a checkpoint path, ``zoo:<name>``).
        asked, fix: the field that asks for the augmentation (default
            ``feature_augment.samples=<samples>``) and how to turn it off, for the message.
    """
    if samples == 0:
        return
    asked = asked or f"feature_augment.samples={samples}"
    why = None
    if method is None:
        why = (
            "pretrained_feature_extractor is null: the untrained backbone has no transport "
            "operators"
        )
    elif method not in known() or facts_of(method).feature_augmenter is None:
        why = (
            f"{origin} was pretrained with method {method!r}, which has no transport "
            "operators (nor a coefficient prior)"
        )
    elif origin.startswith("zoo:"):
        why = (
            f"{origin} holds the backbone's weights only, not the transport operators: "
            "give the ManifoldCLR run's .ckpt or run directory"
        )
    if why:
        raise ConfigError(
            f"{asked} draws features from the method's learned prior, but {why}; {fix}."
        )


def load_feature_augmenter(source: PretrainedBackbone) -> Any:
    """The feature augmenter of the run of a checked ``source`` (one whose method has one):
    for ManifoldCLR, its operators, prior and threshold in eval mode."""
    run = load_run(source.origin)
    run_cfg = OmegaConf.create(run.cfg)
    OmegaConf.set_struct(run_cfg, False)
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # solo-learn's warnings about training-only settings
    try:
        augmenter = facts_of(run_cfg.method).feature_augmenter(run_cfg, run.checkpoint)
    finally:
        root_logger.setLevel(level)
    if augmenter is None:
        raise CheckpointError(
            f"feature_augment.samples: {source.origin} has no trained feature augmentation "
            "(an ablation whose method_kwargs turn it off)."
        )
    return augmenter


def semi_supervised_arms(
    settings: SemiSupervisedSettings, source: Optional[PretrainedBackbone]
) -> tuple[list[str], Optional[Augment], Optional[str]]:
    """The arms of the semi-supervised protocol, the augmentation of its ``prior`` arm (None
    without it) and a note when the ``prior`` arm was dropped from the default arms."""
    asked = "semi_supervised.augmentations with prior"
    fix = "set semi_supervised.augmentations=[none]"
    method, origin = (source.method, source.origin) if source else (None, "null")
    if settings.augmentations is not None:
        arms = list(settings.augmentations)
        if "prior" not in arms:
            return arms, None, None
        check_feature_augment(1, method, origin, asked, fix)
        augmenter = load_feature_augmenter(source)
    else:
        try:  # the default: both arms when the backbone's method has a learned augmentation
            check_feature_augment(1, method, origin, asked, fix)
            augmenter = load_feature_augmenter(source)
        except (ConfigError, CheckpointError) as err:
            return ["none"], None, f"no prior arm: {err}"
        arms = ["none", "prior"]
    return arms, _prior_draws(augmenter, settings.soft_threshold), None


def _prior_draws(augmenter: Any, soft_threshold: bool) -> Augment:
    """``(z, generator) -> T(c) z``, one prior draw per row; without ``soft_threshold`` the
    draws are not thresholded (the official ``eval_ssl.py`` sets the prior's λ to 0)."""
    if not soft_threshold and hasattr(augmenter, "threshold"):
        augmenter = copy.copy(augmenter)
        augmenter.threshold = 0.0
    return lambda z, generator: augmenter.augment(z, 1, generator)
