"""The ManifoldCLR paper's semi-supervised protocol on frozen features (the official
``eval_ssl.py``, "Transop" augmentation, and ``semi_sup_probe.py``): ``solo-clamp few-label
protocol=semi_supervised``.

For each trial, ``per_class`` labelled features per class are drawn (class-stratified; trial
``t`` uses seed ``labels.seed + t``) and every other feature of the pool is unlabelled. A head
``Linear(d, 2048) – LeakyReLU – Linear(2048, C)`` with an EMA copy is trained for
``iterations`` steps of Adam (lr 5e-4, weight decay 5e-4); each step draws 32 labelled and 480
unlabelled features and minimises

    CE(head(z_l), y_l) + w · Σ_{u: max p(u) > 0.95} CE(head(aug(z_u)), argmax p(u)) / 480,

with ``p(u) = softmax(head(z_u))`` (no gradient): FixMatch's consistency term on the
UNLABELLED features only. ``aug`` is the learned augmentation ``T(c) z_u``, ``c ~ p(c | z_u)``
(a fresh prior draw each step; the official script turns the soft threshold off) or, without
augmentation, ``aug(z) = z``. The EMA head (``ema_new = m · ema + (1 − m) · head``) is scored on
the evaluation features. Pure torch: the program that extracts the features and writes the
report is :mod:`solo_clamp.training.few_label`, its fields are checked by
:mod:`solo_clamp.training.few_label_settings`.

The official run takes 10,000 iterations; on a CPU a step with prior samples costs ~0.4 s at the
MNIST recipe's operators (480 features × 32 matrix exponentials of 16 × 16 each), so the
shipped configs take ``iterations: 300``, and the EMA momentum defaults to
``1 − 10 / iterations`` (0.999 at 10,000, as the official script), which keeps the EMA's
horizon a tenth of the run.
"""

from __future__ import annotations

import copy
from typing import Annotated, Callable, Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import AfterValidator, Field, StrictBool
from pydantic.dataclasses import dataclass
from tqdm.auto import tqdm

from solo_clamp.validation import CLOSED, Count, Index, Number

ARMS = ("none", "prior")
"""The unlabelled features' augmentation: ``none`` (``aug(z) = z``) or ``prior`` (the learned
``T(c) z``, ``c ~ p(c | z)``, of the backbone's method)."""

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""``(z_u [B, d], generator) -> [B, d]``: one augmentation of each unlabelled feature."""


def _distinct_arms(arms: Optional[tuple[str, ...]]) -> Optional[tuple[str, ...]]:
    if arms is not None and (not arms or len(set(arms)) < len(arms)):
        raise ValueError(
            "must be null (both arms when the backbone's method has a learned augmentation) or "
            f"a list of distinct {list(ARMS)}, got {list(arms)!r}"
        )
    return arms


@dataclass(frozen=True, config=CLOSED)
class SemiSupervisedSettings:
    """The protocol's settings (the ``semi_supervised`` node, with ``labels.per_class`` and
    ``labels.seed``), a schema of :mod:`solo_clamp.validation`. Defaults are the official
    ``eval_ssl.py``'s, but ``iterations``."""

    per_class: Count = 5
    trials: Count = 10
    first_seed: Index = 0
    iterations: Count = 10000
    hidden_dim: Count = 2048
    lr: Number = Field(5e-4, gt=0)
    weight_decay: Number = Field(5e-4, ge=0)
    labelled_batch: Count = 32
    unlabelled_batch: Count = 480
    confidence: Number = Field(0.95, ge=0, le=1)
    consistency_weight: Number = Field(1.0, ge=0)
    ema: Optional[Number] = Field(None, ge=0, le=1)
    soft_threshold: StrictBool = False
    augmentations: Annotated[
        Optional[tuple[Literal[ARMS], ...]],  # type: ignore[valid-type]
        AfterValidator(_distinct_arms),
    ] = None

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seed of each trial: its label draw, head initialisation, batches and draws."""
        return tuple(range(self.first_seed, self.first_seed + self.trials))

    @property
    def ema_momentum(self) -> float:
        """``ema``, or ``1 − 10 / iterations`` (the official 0.999 at 10,000 iterations)."""
        if self.ema is not None:
            return self.ema
        return max(0.0, 1.0 - 10.0 / self.iterations)


def make_head(feature_dim: int, hidden_dim: int, num_classes: int, seed: int) -> nn.Sequential:
    """The official head ``Linear(d, h) – LeakyReLU – Linear(h, C)``, initialised from
    ``seed`` (PyTorch's default initialisation)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.LeakyReLU(), nn.Linear(hidden_dim, num_classes)
        )


def consistency_loss(
    head: nn.Module, unlabelled: torch.Tensor, augmented: torch.Tensor, confidence: float
) -> torch.Tensor:
    """FixMatch's consistency term as the official code: pseudo-labels ``argmax p`` of
    ``p = softmax(head(unlabelled))`` (no gradient), kept where ``max p > confidence``;
    ``Σ_kept CE(head(augmented), pseudo-label) / B``.

    Args:
        head: the classifier.
        unlabelled: ``[B, d]`` unlabelled features (never labelled ones).
        augmented: ``[B, d]`` their augmentations (row by row).
        confidence: the pseudo-labels' threshold (official 0.95).
    """
    with torch.no_grad():
        probabilities = torch.softmax(head(unlabelled), dim=-1)
        top, pseudo = probabilities.max(dim=-1)
        kept = top > confidence
    losses = F.cross_entropy(head(augmented), pseudo, reduction="none")
    return losses[kept].sum() / len(unlabelled)


@torch.no_grad()
def ema_update(head: nn.Module, ema_head: nn.Module, momentum: float) -> None:
    """``ema ← momentum · ema + (1 − momentum) · head``, parameter by parameter (lightly's
    ``update_momentum``, as the official script)."""
    for ema_param, param in zip(ema_head.parameters(), head.parameters()):
        ema_param.mul_(momentum).add_(param.detach(), alpha=1.0 - momentum)


def semi_supervised_trial(
    labelled: torch.Tensor,
    labels: torch.Tensor,
    unlabelled: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    settings: SemiSupervisedSettings,
    seed: int,
    num_classes: int,
    augment: Optional[Augment] = None,
    progress: bool = False,
) -> float:
    """One trial of the protocol (module docstring): top-1 % of the EMA head on ``test``.

    Args:
        labelled, labels: ``[n, d]`` labelled features and ``[n]`` labels.
        unlabelled: ``[N_u, d]`` the other features of the pool (no label is read).
        test, test_labels: ``[N, d]`` and ``[N]`` evaluation features.
        settings: the protocol's settings.
        seed: the head's initialisation, the batches and the augmentation draws.
        num_classes: ``C``, the head's outputs.
        augment: the unlabelled features' augmentation; None: ``aug(z) = z``.
    """
    if len(labelled) < 1 or len(unlabelled) < 1:
        raise ValueError(
            f"a trial needs labelled and unlabelled features, got {len(labelled)} and "
            f"{len(unlabelled)}."
        )
    generator = torch.Generator().manual_seed(seed)
    labelled, unlabelled = labelled.float(), unlabelled.float()
    head = make_head(labelled.shape[1], settings.hidden_dim, num_classes, seed)
    ema_head = copy.deepcopy(head).requires_grad_(False)
    optimizer = torch.optim.Adam(
        head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    momentum = settings.ema_momentum
    steps = range(settings.iterations)
    for _ in tqdm(steps, desc=f"trial (seed {seed})", leave=False, disable=not progress):
        rows = torch.randperm(len(labelled), generator=generator)[: settings.labelled_batch]
        others = torch.randperm(len(unlabelled), generator=generator)[: settings.unlabelled_batch]
        z_u = unlabelled[others]
        with torch.no_grad():
            augmented = z_u if augment is None else augment(z_u, generator).float()
        loss = F.cross_entropy(head(labelled[rows]), labels[rows])
        if settings.consistency_weight:
            consistency = consistency_loss(head, z_u, augmented, settings.confidence)
            loss = loss + settings.consistency_weight * consistency
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema_update(head, ema_head, momentum)
    with torch.no_grad():
        predictions = ema_head(test.float()).argmax(dim=-1)
    return float((predictions == test_labels).float().mean() * 100)


def semi_supervised_trials(
    features: torch.Tensor,
    labels: torch.Tensor,
    draws: list[list[int]],
    test: torch.Tensor,
    test_labels: torch.Tensor,
    settings: SemiSupervisedSettings,
    augment: Optional[Augment] = None,
    progress: bool = False,
) -> list[float]:
    """Every trial: the rows ``draws[t]`` of ``features`` labelled, the other rows
    unlabelled, seed ``settings.seeds[t]``; returns top-1 % per trial."""
    num_classes = int(max(labels.max(), test_labels.max())) + 1
    accuracies = []
    for seed, draw in zip(settings.seeds, draws):
        chosen = torch.zeros(len(features), dtype=torch.bool)
        chosen[torch.as_tensor(draw, dtype=torch.long)] = True
        accuracies.append(
            semi_supervised_trial(
                features[chosen],
                labels[chosen],
                features[~chosen],
                test,
                test_labels,
                settings,
                seed,
                num_classes,
                augment,
                progress,
            )
        )
    return accuracies
