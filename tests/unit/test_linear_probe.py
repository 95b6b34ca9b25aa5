"""The linear probe's standardisation (solo_clamp.evaluation.linear_probe_accuracy)."""

from __future__ import annotations

import pytest
import torch

from solo_clamp.evaluation import linear_probe_accuracy


def test_a_feature_constant_in_training_does_not_blow_up_test_images():
    """With few labels, a border pixel (or a dead ReLU unit) is constant on the training set
    but not on test images: it keeps its scale (StandardScaler's rule) instead of being divided
    by ~0, so the class signal in the other feature still decides."""
    generator = torch.Generator().manual_seed(0)
    train_labels = torch.arange(10) % 2
    signal = train_labels.float() * 2 - 1
    train = torch.stack(
        [signal + 0.1 * torch.randn(10, generator=generator), torch.zeros(10)], dim=1
    )
    test_labels = torch.arange(200) % 2
    test = torch.stack([test_labels.float() * 2 - 1, torch.rand(200, generator=generator)], 1)
    assert linear_probe_accuracy(train, train_labels, test, test_labels) == 100.0


def test_standardisation_matches_a_float64_reference_on_ordinary_features():
    """On features with spread, the probe sees (x - mean) / std of the training set: a probe on
    features shifted and scaled per dimension scores the same."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(60) % 3
    feats = torch.randn(60, 5, generator=generator) + labels[:, None].float()
    test_labels = torch.arange(90) % 3
    test = torch.randn(90, 5, generator=generator) + test_labels[:, None].float()
    scale, shift = torch.tensor([1.0, 10.0, 0.1, 3.0, 7.0]), torch.arange(5.0) * 4
    plain = linear_probe_accuracy(feats, labels, test, test_labels)
    moved = linear_probe_accuracy(feats * scale + shift, labels, test * scale + shift, test_labels)
    assert abs(plain - moved) < 1e-9 + 100 / 90 + 1e-6  # at most one test image may flip


# -- how spread out features are: the collapse check of the pretrain report --------------------


def test_feature_spread_matches_the_pairwise_definition():
    from solo_clamp.geometry.features import feature_spread

    torch.manual_seed(0)
    features = torch.randn(40, 6) + 2.0
    spread = feature_spread(features)
    unit = torch.nn.functional.normalize(features.double(), dim=-1)
    cosines = unit @ unit.T
    naive = (cosines.sum() - cosines.diagonal().sum()) / (40 * 39)
    assert spread["mean_cosine"] == pytest.approx(naive.item(), rel=1e-12)
    singular = torch.linalg.svdvals(features.double() - features.double().mean(0))
    p = singular / singular.sum()
    assert spread["effective_rank"] == pytest.approx(torch.exp(-(p * p.log()).sum()).item())
    # by hand: two orthogonal directions of equal spread have effective rank 2
    square = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert feature_spread(square)["effective_rank"] == pytest.approx(2.0)
    assert feature_spread(square)["mean_cosine"] == pytest.approx(-2 / 6)


def test_collapse_is_a_low_effective_rank_also_against_the_untrained_backbone():
    from solo_clamp.geometry.features import collapsed, feature_spread

    torch.manual_seed(0)
    untrained = feature_spread(torch.randn(200, 64))
    assert not collapsed(feature_spread(torch.randn(200, 64)), untrained)
    one_direction = torch.randn(200, 1) * torch.randn(1, 64) + 0.01 * torch.randn(200, 64)
    assert feature_spread(one_direction)["effective_rank"] < 2
    assert collapsed(feature_spread(one_direction), untrained)
    # a backbone whose features were never spread (a tiny set of images) is not "collapsed"
    assert not collapsed(feature_spread(one_direction), feature_spread(one_direction))
    # all alike but spread in rank: not a collapse by this test (mean cosine is reported only)
    alike = torch.ones(200, 64) + 0.05 * torch.randn(200, 64)
    assert feature_spread(alike)["mean_cosine"] > 0.95
    assert not collapsed(feature_spread(alike), untrained)
