"""The paper's semi-supervised protocol on frozen features (solo_clamp.training.semi_supervised):
it learns a tiny separable problem from 5 labels per class, its consistency term sees only
unlabelled features, and its settings are checked with the field named."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from solo_clamp.errors import ConfigError
from solo_clamp.training import semi_supervised
from solo_clamp.training.few_label_settings import check_semi_supervised_cfg
from solo_clamp.training.semi_supervised import (
    SemiSupervisedSettings,
    consistency_loss,
    ema_update,
    make_head,
    semi_supervised_trial,
    semi_supervised_trials,
)

SMALL = dict(iterations=150, hidden_dim=32, labelled_batch=8, unlabelled_batch=32, trials=2)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def blobs(per_class: int, classes: int = 3, dim: int = 8, seed: int = 0):
    """Gaussian blobs around ``classes`` well-separated centres: a separable problem."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:classes] * 6.0
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = centres[labels] + torch.randn(len(labels), dim, generator=generator)
    return features, labels


def draws_of(labels: torch.Tensor, per_class: int, seeds) -> list[list[int]]:
    out = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        draw = []
        for k in labels.unique():
            rows = (labels == k).nonzero().flatten()
            draw += rows[torch.randperm(len(rows), generator=generator)[:per_class]].tolist()
        out.append(sorted(draw))
    return out


def test_the_protocol_learns_a_tiny_separable_problem():
    features, labels = blobs(per_class=60)
    test, test_labels = blobs(per_class=40, seed=1)
    settings = SemiSupervisedSettings(per_class=5, **SMALL)
    draws = draws_of(labels, 5, settings.seeds)
    accuracies = semi_supervised_trials(features, labels, draws, test, test_labels, settings)
    assert len(accuracies) == 2
    assert min(accuracies) > 90.0  # chance is 33.3 %
    # with an augmentation of the unlabelled features too (a small shift)
    noisy = semi_supervised_trials(
        features,
        labels,
        draws,
        test,
        test_labels,
        settings,
        augment=lambda z, g: z + 0.1 * torch.randn(z.shape, generator=g),
    )
    assert min(noisy) > 90.0


def test_the_consistency_term_receives_only_unlabelled_features(monkeypatch):
    features, labels = blobs(per_class=20)
    test, test_labels = blobs(per_class=5, seed=1)
    settings = SemiSupervisedSettings(per_class=5, **{**SMALL, "iterations": 12, "trials": 1})
    (draw,) = draws_of(labels, 5, settings.seeds)
    labelled_rows = {tuple(features[i].tolist()) for i in draw}
    seen: list[torch.Tensor] = []
    augmented_seen: list[torch.Tensor] = []
    real = semi_supervised.consistency_loss

    def spy(head, unlabelled, augmented, confidence):
        seen.append(unlabelled.clone())
        augmented_seen.append(augmented.clone())
        return real(head, unlabelled, augmented, confidence)

    monkeypatch.setattr(semi_supervised, "consistency_loss", spy)
    augment_inputs: list[torch.Tensor] = []

    def augment(z, generator):
        augment_inputs.append(z.clone())
        return z * 1.01

    semi_supervised_trials(features, labels, [draw], test, test_labels, settings, augment)
    assert len(seen) == 12  # once per iteration
    unlabelled_rows = {
        tuple(features[i].tolist()) for i in range(len(features)) if i not in set(draw)
    }
    for batch, augmented, inputs in zip(seen, augmented_seen, augment_inputs):
        assert len(batch) == settings.unlabelled_batch
        rows = {tuple(row.tolist()) for row in batch}
        assert rows <= unlabelled_rows and not rows & labelled_rows
        torch.testing.assert_close(inputs, batch)  # the augmentation acts on them alone
        torch.testing.assert_close(augmented, batch * 1.01)


def test_the_consistency_loss_keeps_only_confident_pseudo_labels():
    head = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0]]))
    unlabelled = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # the last is 50/50
    augmented = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    loss = consistency_loss(head, unlabelled, augmented, confidence=0.95)
    logits = head(augmented)
    expected = (
        torch.nn.functional.cross_entropy(logits[:1], torch.tensor([0]))
        + torch.nn.functional.cross_entropy(logits[1:2], torch.tensor([1]))
    ) / 3
    torch.testing.assert_close(loss, expected)
    loss.backward()  # the gradient flows through the augmented branch only
    assert head.weight.grad is not None


def test_the_ema_follows_the_head_with_its_momentum():
    head, ema = make_head(3, 4, 2, seed=0), make_head(3, 4, 2, seed=1)
    before = [p.clone() for p in ema.parameters()]
    ema_update(head, ema, 0.9)
    for new, old, param in zip(ema.parameters(), before, head.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * param)


def test_the_ema_momentum_keeps_a_tenth_of_the_run():
    assert SemiSupervisedSettings(iterations=10000).ema_momentum == pytest.approx(0.999)
    assert SemiSupervisedSettings(iterations=300).ema_momentum == pytest.approx(1 - 1 / 30)
    assert SemiSupervisedSettings(iterations=300, ema=0.5).ema_momentum == 0.5


def test_a_trial_repeats_with_its_seed():
    features, labels = blobs(per_class=10)
    settings = SemiSupervisedSettings(**{**SMALL, "iterations": 5})
    args = (features[:6], labels[:6], features[6:], features, labels, settings, 3, 3)
    assert semi_supervised_trial(*args) == semi_supervised_trial(*args)


def cfg_with(**fields):
    return OmegaConf.create({"labels": {"per_class": 5, "seed": 2}, "semi_supervised": fields})


def test_the_shipped_configs_settings(repo_root):
    for dataset in ("mnist", "fashion_mnist"):
        cfg = OmegaConf.load(repo_root / "scripts" / "linear" / dataset / "few_label.yaml")
        assert cfg.protocol == "linear_probe"  # today's probe stays the default
        settings = check_semi_supervised_cfg(cfg)
        assert settings.per_class == 5 and settings.trials >= 10
        assert settings.hidden_dim == 2048 and settings.unlabelled_batch == 480
        assert settings.iterations == 300 and settings.augmentations is None


def test_settings_seeds_and_defaults():
    settings = check_semi_supervised_cfg(cfg_with(trials=3, augmentations=["none"]))
    assert settings.seeds == (2, 3, 4) and settings.augmentations == ("none",)
    assert settings.lr == 5e-4 and settings.iterations == 10000  # the official defaults


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"trials": 0}, "semi_supervised.trials must be a positive integer, got 0."),
        ({"iterations": 1.5}, "semi_supervised.iterations must be a positive integer, got 1.5."),
        ({"lr": 0}, "semi_supervised.lr must be > 0, got 0."),
        ({"confidence": 1.5}, "semi_supervised.confidence must be <= 1, got 1.5."),
        ({"ema": -0.1}, "semi_supervised.ema must be >= 0 or null, got -0.1."),
        ({"soft_threshold": "yes"}, "semi_supervised.soft_threshold must be true or false"),
        (
            {"augmentations": ["mixup"]},
            r"augmentations\[0\] must be 'none' or 'prior', got 'mixup'",
        ),
        ({"augmentations": []}, "semi_supervised.augmentations must be null"),
        (
            {"iterationz": 3},
            r"semi_supervised.iterationz is not a field; fields: \['per_class', 'trials',",
        ),
    ],
)
def test_bad_settings_name_their_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        check_semi_supervised_cfg(cfg_with(**fields))
