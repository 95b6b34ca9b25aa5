"""Known-answer tests of solo_clamp.geometry (torch only: no solo-learn import)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch

from solo_clamp.geometry import (
    centroid_distances,
    centroid_similarity,
    class_centroids,
    class_radii,
    mean_class_separation,
    neighbour_counts,
    orientation_similarity,
    own_centroid_fraction,
    pairs,
    participation_ratio,
    prepare_views,
    principal_axes,
    submanifold_centroids,
    submanifold_radii,
    submanifold_traces,
    upper_pairs,
    within_image_variance_fraction,
)
from solo_clamp.losses.clamp import clamp_loss_and_stats, submanifold_geometry


def axis_views(centres: torch.Tensor, spreads: torch.Tensor, axes: int) -> torch.Tensor:
    """Views at ``c_i +- a_i e_k`` for ``k < axes``: ``[2 * axes, B, D]``, view-major."""
    num_images, dim = centres.shape
    eye = torch.eye(dim, dtype=centres.dtype)[:axes]  # [K, D]
    offsets = torch.cat([eye, -eye])  # [V, D]
    return centres[None] + spreads[None, :, None] * offsets[:, None, :]


def line_views(centres: torch.Tensor, directions: torch.Tensor, steps: list[float]):
    """Views at ``c_i + t * u_i`` for ``t`` in ``steps``: ``[len(steps), B, D]``."""
    t = torch.tensor(steps, dtype=centres.dtype)
    return centres[None] + t[:, None, None] * directions[None]


# --------------------------------------------------------------------------- radii


def test_radii_of_points_on_spheres_of_known_radius():
    dim, axes = 10, 3  # V = 6 views at c +- a e_k, k < 3
    centres = torch.randn(4, dim, dtype=torch.float64)
    spreads = torch.tensor([0.5, 1.0, 2.0, 0.0], dtype=torch.float64)
    z = axis_views(centres, spreads, axes)
    num_views = 2 * axes
    # trace C = sum_v ||x_v - c||^2 / (V - 1) = V a^2 / (V - 1)
    expected_trace = num_views * spreads**2 / (num_views - 1)
    torch.testing.assert_close(submanifold_traces(z, normalize=False), expected_trace)
    torch.testing.assert_close(submanifold_centroids(z, normalize=False), centres)
    expected = 2.0 * torch.sqrt(expected_trace / min(dim, num_views))
    torch.testing.assert_close(submanifold_radii(z, rs=2.0, normalize=False), expected)


def test_radius_divides_by_the_dimension_when_it_is_below_the_view_count():
    z = axis_views(torch.zeros(1, 2, dtype=torch.float64), torch.tensor([1.0]).double(), 2)
    z = torch.cat([z, z])  # V = 8 > D = 2: trace = 8 / 7, divided by min(D, V) = 2
    torch.testing.assert_close(
        submanifold_radii(z, normalize=False), torch.tensor([math.sqrt(8 / 7 / 2)]).double()
    )


def test_traces_use_the_unbiased_covariance():
    z = torch.randn(5, 3, 7, dtype=torch.float64)
    expected = torch.stack([torch.cov(z[:, i].T).trace() for i in range(3)])
    torch.testing.assert_close(submanifold_traces(z, normalize=False), expected)


def test_normalized_geometry_matches_the_loss_module():
    torch.manual_seed(0)
    z = torch.randn(4, 16, 8) * 3 + 1
    centroids, radii = submanifold_geometry(z, rs=7.0)
    torch.testing.assert_close(submanifold_centroids(z), centroids)
    torch.testing.assert_close(submanifold_radii(z, rs=7.0), radii, rtol=1e-5, atol=1e-5)
    views = prepare_views(z)
    torch.testing.assert_close(views.norm(dim=-1), torch.ones(4, 16))
    assert not torch.allclose(submanifold_radii(z, 7.0, normalize=False), radii)


# --------------------------------------------------------------------------- neighbours


def test_neighbour_counts_match_the_loss_statistic():
    torch.manual_seed(1)
    num_views, num_images, dim, rs = 4, 24, 16, 0.7
    z = torch.randn(num_views, num_images, dim)
    counts = neighbour_counts(z, rs, max_range=1.5, factor=1.0)
    _, stats = clamp_loss_and_stats(
        z.reshape(num_views * num_images, dim), num_views, rs, max_range=1.5, gather=False
    )
    mean = counts.double().mean().item()
    assert 0 < mean < num_images - 1  # a non-trivial packing
    assert mean == pytest.approx(stats["neighbours"].item(), abs=1e-6)


def test_neighbour_threshold_is_0_99_rs_times_the_sum_of_unscaled_radii():
    # Two views at c +- a e_1 give the unscaled radius r = sqrt(2 a^2 / min(D, 2)) = a.
    def pair(distance: float) -> torch.Tensor:
        centres = torch.tensor([[0.0, 0.0, 0.0], [distance, 0.0, 0.0]], dtype=torch.float64)
        offsets = torch.tensor([[0.0, 0.25, 0.0], [0.0, -0.25, 0.0]], dtype=torch.float64)
        return centres[None] + offsets[:, None, :]  # [V=2, B=2, D=3]

    z = pair(0.0)
    radii = submanifold_radii(z, normalize=False)
    torch.testing.assert_close(radii, torch.full((2,), 0.25, dtype=torch.float64))
    rs = 2.0  # contact distance rs * (r_i + r_j) = 1.0; neighbours below 0.99
    assert neighbour_counts(pair(0.985), rs, normalize=False).tolist() == [1, 1]
    assert neighbour_counts(pair(0.995), rs, normalize=False).tolist() == [0, 0]
    assert neighbour_counts(pair(0.995), rs, normalize=False, factor=1.0).tolist() == [1, 1]
    capped = neighbour_counts(pair(0.985), rs, max_range=0.5, normalize=False)
    assert capped.tolist() == [0, 0]
    assert neighbour_counts(pair(0.985), rs, normalize=False).dtype == torch.int64


@pytest.mark.parametrize("normalize", [False, True])
def test_neighbour_counts_separated_vs_overlapping(normalize: bool):
    torch.manual_seed(2)
    num_images, dim = 6, 16
    separated = axis_views(5.0 * torch.eye(num_images, dim), torch.full((num_images,), 0.01), 3)
    assert neighbour_counts(separated, rs=1.0, normalize=normalize).tolist() == [0] * 6
    overlapping = 0.01 * torch.eye(num_images, dim)[None] + torch.randn(8, num_images, dim)
    counts = neighbour_counts(overlapping, rs=5.0, normalize=normalize)
    assert counts.tolist() == [num_images - 1] * num_images


def test_blockwise_paths_match_the_dense_ones(monkeypatch):
    torch.manual_seed(3)
    z = torch.randn(3, 20, 5)
    counts = neighbour_counts(z, rs=1.0)
    fraction = own_centroid_fraction(z)
    monkeypatch.setattr(pairs, "_PAIR_BLOCK_ELEMENTS", 7)
    assert torch.equal(neighbour_counts(z, rs=1.0), counts)
    assert own_centroid_fraction(z) == fraction


# --------------------------------------------------------------------------- pairs


def test_centroid_distances_are_the_euclidean_matrix():
    torch.manual_seed(4)
    z = torch.randn(3, 7, 5, dtype=torch.float64)
    dist = centroid_distances(z, normalize=False)
    centroids = z.mean(dim=0)
    torch.testing.assert_close(dist, torch.cdist(centroids, centroids), atol=1e-6, rtol=1e-6)
    assert torch.equal(dist, dist.T)
    assert torch.all(dist.diagonal() == 0)
    assert upper_pairs(dist).shape == (21,)
    torch.testing.assert_close(
        centroid_distances(z), torch.cdist(*[submanifold_centroids(z)] * 2), atol=1e-6, rtol=1e-6
    )


def test_upper_pairs_order_and_errors():
    matrix = torch.arange(9.0).reshape(3, 3)
    assert upper_pairs(matrix).tolist() == [1.0, 2.0, 5.0]
    with pytest.raises(ValueError, match="matrix must be a square"):
        upper_pairs(torch.zeros(2, 3))


def test_centroid_similarity_of_orthogonal_parallel_and_opposite_centres():
    centres = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [3.0, 0, 0], [-1.0, 0, 0]])
    z = axis_views(centres, torch.full((4,), 0.1), 1)
    sims = centroid_similarity(z, normalize=False)
    # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    torch.testing.assert_close(sims, torch.tensor([0.0, 1.0, -1.0, 0.0, 0.0, -1.0]))


@pytest.mark.parametrize("normalize", [False, True])
def test_orientation_similarity_orthogonal_axes_is_0_and_identical_axes_is_1(normalize: bool):
    eye = torch.eye(6, dtype=torch.float64)
    steps = [-0.3, -0.1, 0.1, 0.3]  # symmetric, so normalisation keeps the axis direction
    orthogonal = line_views(eye[[0, 1]], eye[[2, 3]], steps)
    assert orientation_similarity(orthogonal, normalize=normalize).item() == pytest.approx(
        0.0, abs=1e-10
    )
    identical = line_views(eye[[0, 1]], torch.stack([eye[4], -eye[4]]), steps)
    assert orientation_similarity(identical, normalize=normalize).item() == pytest.approx(1.0)
    axes = principal_axes(orthogonal, normalize=normalize)
    torch.testing.assert_close(axes.abs(), eye[[2, 3]])


def test_orientation_similarity_of_an_anisotropic_cloud_uses_the_top_axis():
    torch.manual_seed(5)
    dim = 4
    scales = torch.tensor([3.0, 0.5, 0.2, 0.1], dtype=torch.float64)
    noise = torch.randn(64, 2, dim, dtype=torch.float64)
    noise = noise - noise.mean(dim=0)
    z = noise * scales  # both images stretched along e_0
    sims = orientation_similarity(z, normalize=False)
    assert sims.item() > 0.95
    assert torch.equal(principal_axes(torch.zeros(3, 2, 4)), torch.zeros(2, 4))


# --------------------------------------------------------------------------- own centroid


def test_own_centroid_fraction_separated_is_1_and_overlapping_is_below_1():
    torch.manual_seed(6)
    separated = axis_views(5.0 * torch.eye(8, 16), torch.full((8,), 0.1), 4)
    assert own_centroid_fraction(separated).item() == 1.0
    assert own_centroid_fraction(separated, normalize=False).item() == 1.0
    overlapping = torch.randn(6, 8, 16)
    fraction = own_centroid_fraction(overlapping).item()
    assert 0.0 < fraction < 1.0


# --------------------------------------------------------------------------- variance


def test_within_image_variance_fraction_limits_and_known_value():
    centres = torch.randn(5, 3, dtype=torch.float64)
    same = centres[None].expand(4, 5, 3)
    assert within_image_variance_fraction(same).item() == 0.0
    coincident = axis_views(torch.zeros(5, 3, dtype=torch.float64), torch.ones(5).double(), 2)
    assert within_image_variance_fraction(coincident).item() == pytest.approx(1.0)
    # two images at +-1 e_0, views +-1 e_1: within 4 * 1, total 4 * 2
    z = axis_views(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).double(), torch.ones(2).double(), 2)
    z = z[[1, 3]]  # the views along e_1
    assert within_image_variance_fraction(z).item() == pytest.approx(0.5)
    assert within_image_variance_fraction(torch.zeros(2, 3, 4)).item() == 0.0


# --------------------------------------------------------------------------- features


def test_participation_ratio_of_isotropic_gaussian_and_of_a_line():
    torch.manual_seed(7)
    k, features = 5, 20
    basis, _ = torch.linalg.qr(torch.randn(features, k, dtype=torch.float64))
    feats = torch.randn(20000, k, dtype=torch.float64) @ basis.T
    assert participation_ratio(feats).item() == pytest.approx(k, abs=0.1)
    line = torch.linspace(-1, 1, 50)[:, None] * torch.randn(1, features) + torch.randn(features)
    assert participation_ratio(line).item() == pytest.approx(1.0, abs=1e-5)
    assert participation_ratio(torch.ones(4, 3)).item() == 0.0


def test_class_statistics_of_known_classes():
    # class 7: two points c +- 0.5 e_1 (radius 0.5); class 2: four points c +- 1 e_k, k < 2
    c7 = torch.tensor([3.0, 0.0, 0.0])
    c2 = torch.tensor([0.0, 0.0, 4.0])
    e = torch.eye(3)
    feats = torch.stack(
        [
            c7 + 0.5 * e[1],
            c2 + e[0],
            c2 - e[0],
            c7 - 0.5 * e[1],
            c2 + e[1],
            c2 - e[1],
            torch.tensor([0.0, 0.0, -4.0]),
        ]
    )
    labels = torch.tensor([7, 2, 2, 7, 2, 2, 9])
    classes, centroids = class_centroids(feats, labels)
    assert classes.tolist() == [2, 7, 9]
    torch.testing.assert_close(centroids, torch.stack([c2, c7, torch.tensor([0.0, 0.0, -4.0])]))
    classes, radii = class_radii(feats, labels)
    # class 2: trace = 4 / 3, min(F, n) = 3; class 7: trace = 0.5, min(F, n) = 2
    torch.testing.assert_close(radii[:2], torch.tensor([math.sqrt(4 / 9), 0.5]))
    assert math.isnan(radii[2].item())  # a single member has no spread
    expected = (5.0 + 8.0 + 5.0) / 3  # |c2 - c7|, |c2 - c9|, |c7 - c9|
    assert mean_class_separation(feats, labels).item() == pytest.approx(expected)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: submanifold_radii(torch.zeros(8, 4)), "z must be a 3-D tensor"),
        (lambda: neighbour_counts(torch.zeros(1, 4, 3), rs=1.0), "at least 2 views"),
        (lambda: submanifold_radii(torch.zeros(2, 4, 3), rs=0.0), "rs must be"),
        (lambda: neighbour_counts(torch.zeros(2, 4, 3), 1.0, max_range=-1), "max_range must"),
        (lambda: neighbour_counts(torch.zeros(2, 4, 3), 1.0, factor=0), "factor must"),
        (lambda: centroid_similarity(torch.zeros(2, 1, 3)), "at least 2 image"),
        (lambda: orientation_similarity(torch.zeros(2, 1, 3)), "at least 2 image"),
        (lambda: submanifold_traces(torch.full((2, 2, 2), math.nan)), "non-finite"),
        (lambda: participation_ratio(torch.zeros(5)), "feats must be a 2-D tensor"),
        (lambda: participation_ratio(torch.zeros(1, 5)), "at least 2 rows"),
        (
            lambda: class_radii(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long)),
            "one entry per row",
        ),
        (lambda: class_centroids(torch.zeros(4, 2), torch.zeros(4)), "integer class ids"),
        (
            lambda: class_radii(torch.zeros(4, 2), torch.zeros(4, 1, dtype=torch.long)),
            "labels must be a 1-D tensor",
        ),
        (
            lambda: mean_class_separation(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)),
            "at least 2 distinct classes",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_geometry_works_without_solo_learn():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["solo"] = None  # any `import solo` now fails
        import torch
        from solo_clamp import geometry
        z = torch.randn(3, 5, 4)
        geometry.neighbour_counts(z, rs=1.0)
        geometry.orientation_similarity(z)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
