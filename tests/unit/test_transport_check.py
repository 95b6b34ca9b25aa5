"""The held-out transport check's measures (solo_clamp.geometry.transport and .operators) on
hand-built cases with known answers: each control, the error and angular ratios, the
generators' spectrum and norms, coefficient usage and the nearest-neighbour check against noise
of equal norm."""

from __future__ import annotations

import math

import pytest
import torch

from solo_clamp.geometry.operators import (
    equal_norm_noise,
    generator_eigenvalue_real_parts,
    generator_norms,
    neighbour_label_accuracy,
    prior_neighbour_check,
    spectrum_summary,
)
from solo_clamp.geometry.transport import (
    CONTROLS,
    LearnedTransport,
    angular_ratio,
    best_scalar,
    best_scalars,
    coefficient_usage,
    control_maps,
    control_table,
    derangement,
    error_ratio,
    held_out_transport,
)
from solo_clamp.losses.transport import TransportOperators
from solo_clamp.losses.variational import Laplace


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def rotation(omega: float = 1.0) -> TransportOperators:
    """One generator on 2-d features: the rotation by ``c · omega``."""
    transport = TransportOperators(feature_dim=2, dictionary_size=1, block_dim=2)
    with torch.no_grad():
        transport.psi.copy_(torch.tensor([[[[0.0, -omega], [omega, 0.0]]]]))
    return transport


def rotated_pairs(angles: torch.Tensor, radii: torch.Tensor | None = None):
    """``z0`` on the unit circle at random angles, ``z1`` the same turned by ``angles``
    (scaled by ``radii``)."""
    start = torch.rand(len(angles)) * 2 * math.pi
    z0 = torch.stack([start.cos(), start.sin()], dim=-1)
    end = start + angles
    z1 = torch.stack([end.cos(), end.sin()], dim=-1)
    return z0, z1 if radii is None else z1 * radii[:, None]


# -- the ratios --------------------------------------------------------------------------------


def test_a_pure_scaling_has_an_angular_ratio_of_exactly_one():
    z0, z1 = torch.randn(20, 6, dtype=torch.float64), torch.randn(20, 6, dtype=torch.float64)
    for scale in (0.1, 1.0, 3.7):
        assert angular_ratio(scale * z0, z0, z1) == pytest.approx(1.0, abs=1e-12)
    per_pair = torch.rand(20, 1, dtype=torch.float64) + 0.1
    assert angular_ratio(per_pair * z0, z0, z1) == pytest.approx(1.0, abs=1e-12)
    assert error_ratio(z0, z0, z1) == pytest.approx(1.0)  # the identity's own error


def test_an_operator_that_maps_z0_onto_z1_gives_zero():
    angles = torch.rand(16) * 2 - 1
    z0, z1 = rotated_pairs(angles)
    moved = rotation()(z0, angles[:, None])
    assert error_ratio(moved, z0, z1) == pytest.approx(0.0, abs=1e-10)
    assert angular_ratio(moved, z0, z1) == pytest.approx(0.0, abs=1e-5)


def test_the_best_scalar_matches_the_least_squares_closed_form():
    z0, z1 = torch.randn(30, 5, dtype=torch.float64), torch.randn(30, 5, dtype=torch.float64)
    a = best_scalar(z0, z1)
    solution = torch.linalg.lstsq(z0.reshape(-1, 1), z1.reshape(-1, 1)).solution
    assert a.item() == pytest.approx(solution.item(), rel=1e-10)
    # and no other scalar does better
    error = lambda s: ((s * z0 - z1) ** 2).sum()  # noqa: E731
    assert error(a) <= min(error(a + 1e-3), error(a - 1e-3))


def test_the_best_scalar_per_pair_is_each_pairs_projection():
    z0 = torch.randn(8, 4, dtype=torch.float64)
    scales = torch.linspace(-2, 3, 8, dtype=torch.float64)
    z1 = scales[:, None] * z0  # each pair a scaling: recovered exactly
    torch.testing.assert_close(best_scalars(z0, z1), scales)
    z1 = torch.randn(8, 4, dtype=torch.float64)
    for i in range(8):
        solution = torch.linalg.lstsq(z0[i][:, None], z1[i][:, None]).solution
        assert best_scalars(z0, z1)[i].item() == pytest.approx(solution.item(), rel=1e-10)
    zero = torch.zeros(2, 4, dtype=torch.float64)
    assert best_scalars(zero, z1[:2]).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("n", [2, 3, 10, 101])
def test_a_derangement_moves_every_index(n):
    for seed in range(5):
        permutation = derangement(n, torch.Generator().manual_seed(seed))
        assert sorted(permutation.tolist()) == list(range(n))
        assert (permutation != torch.arange(n)).all()


def test_a_derangement_needs_two_indices():
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        derangement(1)


# -- the controls ------------------------------------------------------------------------------


class SpyTransport:
    """A transport that records the coefficients of each call and returns ``z`` unchanged."""

    def __init__(self):
        self.calls: list[torch.Tensor] = []

    def __call__(self, z, c):
        self.calls.append(c.clone())
        return z.clone()


def test_the_shuffled_control_uses_another_pairs_coefficients():
    z0, z1 = torch.randn(12, 4), torch.randn(12, 4)
    c = torch.arange(12, dtype=torch.float32)[:, None].repeat(1, 3)  # row i is all i
    spy = SpyTransport()
    _, permutation = control_maps(
        spy, z0, z1, c, torch.zeros(12, 3), generator=torch.Generator().manual_seed(3)
    )
    posterior, shuffled, mean_c, prior = spy.calls  # no location given: no such row
    torch.testing.assert_close(posterior, c)
    torch.testing.assert_close(shuffled, c[permutation])
    assert (shuffled[:, 0] != torch.arange(12)).all()  # never the pair's own c
    assert sorted(shuffled[:, 0].tolist()) == list(range(12))  # each pair's c used once
    torch.testing.assert_close(mean_c, torch.full((12, 3), 5.5))
    torch.testing.assert_close(prior, torch.zeros(12, 3))


def test_each_control_on_rotations_with_known_angles():
    """Pairs turned by their own angle: the posterior's c (the angle) maps z0 onto z1; another
    pair's angle, the mean angle and the scalars do not; the identity is the reference."""
    angles = torch.linspace(-1.2, 1.2, 24)
    angles = angles[torch.randperm(24)]
    z0, z1 = rotated_pairs(angles, radii=torch.full((24,), 2.0))
    moved, _ = control_maps(
        rotation(),
        z0,
        z1,
        angles[:, None],
        torch.zeros(24, 1),
        location=angles[:, None],
        generator=torch.Generator().manual_seed(0),
    )
    assert list(moved) == list(CONTROLS)
    table = control_table(moved, z0, z1)
    assert table["identity"]["error_ratio"] == pytest.approx(1.0)
    assert table["identity"]["angular_ratio"] == pytest.approx(1.0)
    # the posterior turns z0 onto z1's direction: no angular error; the norm (2) is not fitted
    assert table["posterior"]["angular_ratio"] == pytest.approx(0.0, abs=1e-5)
    assert table["posterior_location"]["angular_ratio"] == pytest.approx(0.0, abs=1e-5)
    expected = 0.5 / torch.mean((z0 - z1) ** 2).item()  # |moved - z1| = 1 per pair, d = 2
    assert table["posterior"]["error_ratio"] == pytest.approx(expected, rel=1e-4)
    # scalars rescale only: angular ratio 1 (a positive scale)
    for name in ("scalar_global", "scalar_per_pair"):
        assert table[name]["angular_ratio"] == pytest.approx(1.0, abs=1e-9)
        assert table[name]["error_ratio"] < 1.0
    # the prior (c = 0 here) is the identity
    assert table["prior"]["error_ratio"] == pytest.approx(1.0, abs=1e-6)
    # another pair's angle and the mean angle do worse than the pair's own
    for name in ("shuffled", "mean_c"):
        assert table[name]["angular_ratio"] > 0.1


def test_the_global_scalar_is_no_better_than_the_per_pair_scalar():
    z0, z1 = torch.randn(40, 8), torch.randn(40, 8) + 0.5
    moved, _ = control_maps(SpyTransport(), z0, z1, torch.zeros(40, 2), torch.zeros(40, 2))
    table = control_table(moved, z0, z1)
    assert table["scalar_per_pair"]["error_ratio"] <= table["scalar_global"]["error_ratio"]
    assert table["scalar_global"]["error_ratio"] <= 1.0 + 1e-12


def fixed_learned(c_posterior: torch.Tensor, c_prior: torch.Tensor, normalize=False):
    """A learned transport whose posterior and prior are point masses at given coefficients
    (scale 0: every draw is the location), with a rotation operator."""

    def point(c):
        return Laplace(c, torch.full_like(c, -math.inf))

    return LearnedTransport(
        transport=rotation(),
        psi=rotation().psi.detach(),
        posterior=lambda z0, z1: point(c_posterior),
        prior=lambda z0: point(c_prior[: len(z0)]),
        threshold=0.0,
        normalize=normalize,
    )


@pytest.mark.parametrize("normalize", [False, True])
def test_the_held_out_check_reports_every_row(normalize):
    angles = torch.linspace(-1.0, 1.0, 10)
    z0, z1 = rotated_pairs(angles, radii=torch.full((10,), 3.0))
    learned = fixed_learned(angles[:, None], torch.zeros(10, 1), normalize)
    result = held_out_transport(learned, z0, z1, torch.Generator().manual_seed(0))
    assert result["pairs"] == 10 and result["normalized"] is normalize
    assert list(result["rows"]) == list(CONTROLS)
    rows = result["rows"]
    assert rows["posterior"]["angular_ratio"] == pytest.approx(0.0, abs=1e-5)
    if normalize:  # unit views: the rotation explains everything
        assert rows["posterior"]["error_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert rows["prior"]["error_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert result["coefficients"]["posterior_usage"] == [1.0]  # no zero angle among ten
    assert result["coefficients"]["prior_usage"] == [0.0]


# -- the official code's diagnostics -----------------------------------------------------------


def test_eigenvalue_real_parts_and_norms_of_known_generators():
    psi = torch.zeros(3, 2, 2, 2)
    psi[0, :] = torch.tensor([[0.0, -2.0], [2.0, 0.0]])  # rotation: real parts 0
    psi[1, 0] = torch.diag(torch.tensor([0.5, -0.25]))  # growth and decay
    psi[2, 1] = torch.tensor([[0.1, -1.0], [1.0, 0.1]])  # a growing spiral: 0.1 ± i
    real = generator_eigenvalue_real_parts(psi)
    assert real.shape == (3, 4)
    torch.testing.assert_close(real[0], torch.zeros(4, dtype=torch.float64))
    assert sorted(real[1].tolist()) == pytest.approx([-0.25, 0.0, 0.0, 0.5])
    assert sorted(real[2].tolist()) == pytest.approx([0.0, 0.0, 0.1, 0.1])
    norms = generator_norms(psi)
    torch.testing.assert_close(
        norms, torch.tensor([4.0, math.sqrt(0.3125), math.sqrt(2.02)], dtype=torch.float64)
    )
    summary = spectrum_summary(psi)
    assert summary["eigenvalue_real_max"] == pytest.approx(0.5)
    assert summary["eigenvalue_real_min"] == pytest.approx(-0.25)
    assert summary["eigenvalue_positive_fraction"] == pytest.approx(3 / 12)
    assert summary["eigenvalue_real_max_per_generator"] == pytest.approx([0.0, 0.5, 0.1])
    assert summary["norm_per_generator"] == pytest.approx(norms.tolist())


def test_coefficient_usage_counts_non_zero_coefficients():
    c = torch.tensor([[0.0, 0.2, 0.0], [0.0, -0.1, 0.3], [0.0, 0.05, 0.0], [0.0, 1.0, 0.0]])
    assert coefficient_usage(c).tolist() == [0.0, 1.0, 0.25]
    assert coefficient_usage(c, tolerance=0.1).tolist() == [0.0, 0.5, 0.25]


def test_equal_norm_noise_moves_each_row_by_its_augmentations_distance():
    features = torch.randn(50, 7)
    augmented = features + torch.randn(50, 7) * torch.rand(50, 1)
    noisy = equal_norm_noise(features, augmented, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        (noisy - features.double()).norm(dim=-1), (augmented - features).double().norm(dim=-1)
    )


def test_neighbour_accuracy_leaves_the_source_out():
    bank = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    labels = torch.tensor([0, 0, 1, 0])  # image 3's nearest other image (2) has another label
    queries, sources = bank.clone(), torch.arange(4)
    assert neighbour_label_accuracy(bank, labels, queries, sources) == pytest.approx(0.5)
    # a query next to image 0 but labelled as image 2's augmentation: wrong
    wrong = neighbour_label_accuracy(bank, labels, torch.tensor([[0.0, 0.05]]), torch.tensor([2]))
    assert wrong == 0.0


def test_the_prior_neighbour_check_against_noise_of_equal_norm():
    # two classes on two far circles; a prior that rotates (keeps the class) vs random noise
    # of the same norm: both small moves, so both keep their class here
    start = torch.rand(40) * 2 * math.pi
    circle = torch.stack([start.cos(), start.sin()], dim=-1)
    labels = torch.arange(40) % 2
    features = circle + labels[:, None] * 10.0
    learned = fixed_learned(torch.zeros(40, 1), torch.full((40, 1), 0.1))
    result = prior_neighbour_check(learned, features, labels, 3, torch.Generator().manual_seed(0))
    assert result["images"] == 40 and result["samples"] == 3
    assert result["unaugmented"] == 1.0
    assert result["prior"] == 1.0 and result["equal_norm_noise"] == 1.0
    assert result["displacement_over_norm"] > 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="z0 must be a 2-D tensor"):
        best_scalar(torch.randn(3), torch.randn(3))
    with pytest.raises(ValueError, match="z1 must have the shape of z0"):
        angular_ratio(torch.randn(3, 2), torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        error_ratio(torch.randn(1, 2), torch.randn(1, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="psi must be a 4-D tensor"):
        generator_norms(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match="c must be a 2-D tensor"):
        coefficient_usage(torch.randn(3))
    with pytest.raises(ValueError, match="prior_c must be a 2-D tensor"):
        control_maps(SpyTransport(), torch.randn(4, 2), torch.randn(4, 2), torch.zeros(4, 1), None)
