"""Few-label probing: ManifoldCLR's prior feature augmentation against known answers, the
command's field checks and refusals, and the per-draw aggregation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from solo_clamp.evaluation import probe_draws, summarise
from solo_clamp.losses.transport import TransportOperators
from solo_clamp.losses.variational import CoefficientPrior, prior_augment
from solo_clamp.training.few_label_settings import check_few_label_cfg, format_table


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def prior_with(
    dictionary_size: int,
    feature_dim: int,
    shift: float,
    logscale_bias: float,
    warmup_steps: int = 10000,
) -> CoefficientPrior:
    """A prior whose network outputs the constant ``Laplace(shift, exp(logscale_bias) ·
    scale_prior)`` (heads with zero weights), warmed up over ``warmup_steps``."""
    prior = CoefficientPrior(
        feature_dim, dictionary_size, hidden_dim=4, scale_prior=0.01, warmup_steps=warmup_steps
    )
    with torch.no_grad():
        for head, bias in ((prior.shift_head, shift), (prior.logscale_head, logscale_bias)):
            head.weight.zero_()
            head.bias.fill_(bias)
    return prior


def rotation_operators(omega: float = 1.0) -> TransportOperators:
    """One generator on 2-d features: the rotation by ``c · omega``."""
    transport = TransportOperators(feature_dim=2, dictionary_size=1, block_dim=2)
    with torch.no_grad():
        transport.psi.copy_(torch.tensor([[[[0.0, -omega], [omega, 0.0]]]]))
    return transport


# -- prior_augment ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_augmented_features_have_n_rows_per_feature_in_float32(dtype):
    transport = TransportOperators(feature_dim=16, dictionary_size=3, block_dim=4)
    prior = CoefficientPrior(16, 3, hidden_dim=4)
    features = torch.randn(5, 16).to(dtype)
    out = prior_augment(features, transport, prior, samples=3, threshold=0.01)
    assert out.shape == (15, 16) and out.dtype == torch.float32 and not out.requires_grad


def test_zero_generators_return_the_features():
    transport = TransportOperators(feature_dim=16, dictionary_size=3, block_dim=4)
    with torch.no_grad():
        transport.psi.zero_()
    features = torch.randn(5, 16)
    out = prior_augment(features, transport, CoefficientPrior(16, 3, hidden_dim=4), samples=4)
    torch.testing.assert_close(out, features.repeat_interleave(4, dim=0))


def test_a_vanishing_prior_scale_returns_the_features():
    transport = TransportOperators(feature_dim=16, dictionary_size=3, block_dim=4)
    prior = prior_with(3, 16, shift=0.0, logscale_bias=-100.0)  # scale 0.01·e^-100
    features = torch.randn(6, 16)
    out = prior_augment(features, transport, prior, samples=2)
    torch.testing.assert_close(out, features.repeat_interleave(2, dim=0))


def test_the_soft_threshold_zeroes_draws_below_it():
    # Scale 0.01: |ε| > 10 has probability e^-1000, so every coefficient is exactly 0.
    transport = TransportOperators(feature_dim=16, dictionary_size=3, block_dim=4)
    features = torch.randn(6, 16)
    out = prior_augment(
        features,
        transport,
        prior_with(3, 16, shift=0.3, logscale_bias=0.0),
        samples=2,
        threshold=10.0,
    )
    torch.testing.assert_close(out, features.repeat_interleave(2, dim=0))


def test_samples_come_from_the_prior_after_its_warm_up():
    # The network's shift is π/2 (the fixed prior of warm-up step 0 would be Laplace(0, .01)):
    # with a vanishing scale every draw is the rotation by 90°, [x, y] -> [-y, x].
    prior = prior_with(1, 2, shift=math.pi / 2, logscale_bias=-100.0, warmup_steps=10000)
    features = torch.tensor([[1.0, 0.0], [2.0, 3.0]])
    out = prior_augment(features, rotation_operators(), prior, samples=3)
    expected = torch.tensor([[0.0, 1.0]] * 3 + [[-3.0, 2.0]] * 3)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_draws_differ_and_repeat_with_a_seeded_generator():
    transport = TransportOperators(feature_dim=16, dictionary_size=3, block_dim=4)
    prior = prior_with(3, 16, shift=0.0, logscale_bias=3.0)  # scale 0.2
    features = torch.randn(4, 16)

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return prior_augment(features, transport, prior, 2, generator=generator)

    torch.testing.assert_close(draw(1), draw(1))
    first = draw(1).reshape(4, 2, 16)
    assert not torch.allclose(first[:, 0], first[:, 1])
    assert not torch.allclose(draw(1), draw(2))


@pytest.mark.parametrize("samples", [0, -1, 1.5, True])
def test_bad_sample_counts_are_refused(samples):
    transport = TransportOperators(feature_dim=16, dictionary_size=3, block_dim=4)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        prior_augment(torch.randn(2, 16), transport, CoefficientPrior(16, 3, 4), samples)


# -- the command's fields ---------------------------------------------------------------------


def shipped_cfg(repo_root, **fields):
    cfg = OmegaConf.load(repo_root / "scripts/linear/mnist/few_label.yaml")
    for key, value in fields.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, force_add=True)
    return cfg


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_the_shipped_configs_are_5_labels_per_class_and_5_draws(repo_root, dataset):
    cfg = OmegaConf.load(repo_root / f"scripts/linear/{dataset}/few_label.yaml")
    settings = check_few_label_cfg(cfg)
    assert (settings.per_class, settings.draws, settings.seeds) == (5, 5, (0, 1, 2, 3, 4))
    assert settings.samples == 0 and settings.floors == ("raw_pixels", "untrained")
    assert cfg.prepare_data.name == dataset and cfg.data.augmentations.crop_size == 32


def test_the_seeds_start_at_labels_seed(repo_root):
    settings = check_few_label_cfg(shipped_cfg(repo_root, labels__seed=3, draws=2))
    assert settings.seeds == (3, 4)


@pytest.mark.parametrize(
    "field, value",
    [
        ("labels.per_class", 0),
        ("labels.per_class", 2.5),
        ("draws", 0),
        ("draws", "3"),
        ("feature_augment.samples", -1),
        ("feature_augment.samples", 1.5),
        ("feature_augment.samples", True),
        ("probe.epochs", 0),
    ],
)
def test_bad_counts_name_their_field(repo_root, field, value):
    cfg = shipped_cfg(repo_root)
    OmegaConf.update(cfg, field, value)
    with pytest.raises(ValueError, match=rf"^{field} must be (a positive integer|an integer)"):
        check_few_label_cfg(cfg)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("floors", ["pixels"], r"floors\[0\] must be 'raw_pixels' or 'untrained', got 'pixels'"),
        ("probe.lr", 0, "probe.lr must be > 0, got 0."),
        ("probe.weight_decay", -1.0, "probe.weight_decay must be >= 0, got -1.0."),
    ],
)
def test_bad_probe_and_floor_fields_are_refused(repo_root, field, value, message):
    cfg = shipped_cfg(repo_root)
    OmegaConf.update(cfg, field, value)
    with pytest.raises(ValueError, match=message):
        check_few_label_cfg(cfg)


def test_each_draw_is_probed_with_and_without_its_prior_samples(repo_root):
    # Two well-separated classes in 16-d: every probe scores 100 %; with 3 samples the
    # augmented probe of each draw trains on 4x the labelled features.
    settings = check_few_label_cfg(shipped_cfg(repo_root, draws=2, feature_augment__samples=3))
    centres = torch.randn(2, 16) * 5
    test_y = torch.arange(2).repeat(10)
    test_z = centres[test_y] + 0.1 * torch.randn(20, 16)
    train_y = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])
    train_z = centres[train_y] + 0.1 * torch.randn(2, 4, 16)
    transport = TransportOperators(feature_dim=16, dictionary_size=3, block_dim=4)
    prior = prior_with(3, 16, shift=0.0, logscale_bias=-100.0)
    augmenter = SimpleNamespace(
        augment=lambda z, samples, generator: prior_augment(
            z, transport, prior, samples, threshold=0.01, generator=generator
        )
    )
    plain, augmented = probe_draws(train_z, train_y, test_z, test_y, settings, augmenter)
    assert plain == [100.0, 100.0] and augmented == [100.0, 100.0]
    assert probe_draws(train_z, train_y, test_z, test_y, settings) == ([100.0, 100.0], [])


# -- aggregation ------------------------------------------------------------------------------


def test_per_draw_values_give_the_mean_and_sample_std():
    # mean 80; squared deviations 100 + 25 + 0 + 25 + 100 = 250 over n - 1 = 4: std √62.5
    summary = summarise([70.0, 75.0, 80.0, 85.0, 90.0])
    assert summary["per_draw"] == [70.0, 75.0, 80.0, 85.0, 90.0]
    assert summary["mean"] == pytest.approx(80.0)
    assert summary["std"] == pytest.approx(math.sqrt(62.5))
    assert summarise([91.5]) == {"per_draw": [91.5], "mean": 91.5, "std": None}


def test_the_table_prints_one_line_per_feature_set():
    results = {
        "backbone": {"description": "run.ckpt", **summarise([90.0, 92.0, 94.0])},
        "raw_pixels": {"description": "raw pixels", **summarise([60.0])},
    }
    lines = format_table(results).splitlines()
    assert len(lines) == 3 and "mean ± std" in lines[0]
    assert lines[1].startswith("run.ckpt  ") and "92.00 ±  2.00  90.00, 92.00, 94.00" in lines[1]
    assert "60.00 ±   n/a  60.00" in lines[2]
