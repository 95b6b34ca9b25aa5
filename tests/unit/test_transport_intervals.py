"""The held-out transport check's bootstrap intervals (solo_clamp.geometry.transport_intervals):
per-pair errors against a direct computation, point values equal to the check's ratios,
intervals on cases whose answer is known (an exact operator, a pure rescaling, a map identical to
a control) and one built by resampling by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from solo_clamp.geometry.transport import control_table
from solo_clamp.geometry.transport_intervals import per_pair_errors, ratio_intervals


def pairs(n: int = 60, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    z1 = z0 + 0.5 * torch.randn(n, 4, generator=generator, dtype=torch.float64)
    return z0, z1


def test_per_pair_errors_are_each_pairs_squared_and_angular_error():
    z0, z1 = pairs(5)
    errors = per_pair_errors({"identity": z0}, z0, z1)["identity"]
    for i in range(5):
        assert errors["error"][i] == pytest.approx(float(((z0[i] - z1[i]) ** 2).sum()))
        cosine = float(z0[i] @ z1[i] / (z0[i].norm() * z1[i].norm()))
        assert errors["angular"][i] == pytest.approx(1 - cosine)


def test_the_point_values_are_the_checks_ratios_and_lie_in_their_intervals():
    z0, z1 = pairs()
    moved = {"identity": z0, "posterior": 0.5 * (z0 + z1), "shuffled": z0.flip(0)}
    table = control_table(moved, z0, z1)
    intervals = ratio_intervals(moved, z0, z1, resamples=500)
    assert intervals["confidence"] == 0.95 and intervals["resamples"] == 500
    assert set(intervals["rows"]) == {"posterior", "shuffled"}  # the identity is the reference
    for name, row in intervals["rows"].items():
        for kind in ("error_ratio", "angular_ratio"):
            value, low, high = row[kind]
            assert value == pytest.approx(table[name][kind])
            assert low <= value <= high


def test_an_exact_operator_beats_every_control_and_a_rescaling_keeps_the_angle():
    z0, z1 = pairs()
    scale = (z0 * z1).sum() / z0.pow(2).sum()
    moved = {"identity": z0, "scalar_global": scale * z0, "posterior": z1.clone()}
    intervals = ratio_intervals(moved, z0, z1, resamples=500)
    assert intervals["rows"]["posterior"]["error_ratio"] == pytest.approx([0, 0, 0], abs=1e-12)
    assert intervals["rows"]["scalar_global"]["angular_ratio"] == pytest.approx([1, 1, 1])
    difference = intervals["differences"]["posterior - scalar_global"]
    assert difference["error_ratio"][2] < 0  # the whole interval below 0: beats it
    assert difference["angular_ratio"] == pytest.approx([-1, -1, -1], abs=1e-9)
    assert set(intervals["differences"]) == {"posterior - identity", "posterior - scalar_global"}


def test_a_map_identical_to_a_control_is_not_distinguishable_from_it():
    z0, z1 = pairs()
    same = 0.9 * z0 + 0.1 * z1
    moved = {"identity": z0, "mean_c": same, "posterior_location": same.clone()}
    difference = ratio_intervals(moved, z0, z1)["differences"]["posterior_location - mean_c"]
    for kind in ("error_ratio", "angular_ratio"):
        value, low, high = difference[kind]
        assert value == pytest.approx(0.0, abs=1e-12) and low <= 0 <= high


def test_the_interval_matches_a_bootstrap_by_hand():
    """The percentile interval of the ratio of means, resampling pairs with numpy: the same
    distribution as scipy's, so the bounds agree to the Monte Carlo error."""
    z0, z1 = pairs(200, seed=1)
    weights = torch.rand(200, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    moved = {"identity": z0, "posterior": z0 + weights * (z1 - z0)}  # a share of each pair
    errors = per_pair_errors(moved, z0, z1)
    a, identity = errors["posterior"]["error"], errors["identity"]["error"]
    rng = np.random.default_rng(0)
    index = rng.integers(0, len(a), size=(20000, len(a)))
    by_hand = np.percentile(a[index].mean(1) / identity[index].mean(1), [2.5, 97.5])
    _, low, high = ratio_intervals(moved, z0, z1, resamples=20000)["rows"]["posterior"][
        "error_ratio"
    ]
    width = by_hand[1] - by_hand[0]
    assert low == pytest.approx(by_hand[0], abs=0.05 * width)
    assert high == pytest.approx(by_hand[1], abs=0.05 * width)
    assert not math.isclose(low, high)
