"""Encoder against projector (``solo_clamp.geometry.projection``) on hand-built features whose
answers are known: the within-image share, the effective rank and the tangent share."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from solo_clamp.geometry import (
    effective_rank,
    encoder_projector_geometry,
    participation_ratio,
    tangent_share,
    within_image_share,
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_features_of_the_image_alone_have_no_within_image_share():
    images = torch.randn(30, 16, generator=_generator())
    views = images.expand(8, 30, 16)  # every view of an image: the same features
    assert within_image_share(views).item() == 0.0


def test_noise_independent_of_the_image_is_all_within_image():
    noise = torch.randn(8, 300, 16, generator=_generator(1))
    assert within_image_share(noise).item() == pytest.approx(1.0, abs=0.01)
    # the raw ratio of sums of squares would say (V - 1) / V; the estimate does not depend on V
    assert within_image_share(noise[:2]).item() == pytest.approx(1.0, abs=0.02)


def test_the_within_image_share_is_the_variance_component():
    """Image part of variance 1, view part of variance 3 (per dimension): share 3 / 4."""
    g = _generator(2)
    images = torch.randn(1, 4000, 8, generator=g)
    views = images + math.sqrt(3.0) * torch.randn(4, 4000, 8, generator=g)
    assert within_image_share(views).item() == pytest.approx(0.75, abs=0.02)
    assert within_image_share(10 * views).item() == pytest.approx(within_image_share(views).item())


def test_effective_rank_of_k_orthogonal_directions_of_equal_spread_is_k():
    for k in (1, 3, 5):
        basis = torch.zeros(k, 12)
        basis[:, :k] = torch.eye(k)
        feats = torch.cat([basis, -basis]) @ torch.linalg.qr(torch.randn(12, 12))[0]
        assert effective_rank(feats).item() == pytest.approx(k)
        assert participation_ratio(feats).item() == pytest.approx(k, rel=1e-5)


def test_effective_rank_of_unequal_spreads_is_the_exponential_of_the_entropy():
    feats = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    p = torch.tensor([3.0, 1.0]) / 4  # singular values 3 sqrt(2) and sqrt(2)
    assert effective_rank(feats).item() == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert effective_rank(torch.ones(5, 3)).item() == 0.0
    with pytest.raises(ValueError, match=r"feats must be a 2-D tensor \[N, F\] with N >= 2"):
        effective_rank(torch.ones(1, 3))


def _views_along(directions: torch.Tensor, images: int = 20, views: int = 5, seed: int = 3):
    """Views that move each image only along ``directions`` ``[k, F]``."""
    g = _generator(seed)
    centres = 5 * torch.randn(1, images, directions.shape[1], generator=g)
    steps = torch.randn(views, images, directions.shape[0], generator=g)
    return centres + steps @ directions


def _linear(weight: torch.Tensor) -> nn.Module:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer.eval()


def test_tangent_share_of_linear_projectors_with_known_answers():
    eye = torch.eye(6)
    views = _views_along(eye[:1])  # the augmentations move along e_0 only: T_i = span(e_0)
    reads_tangent = tangent_share(views, _linear(eye[:1]))
    assert reads_tangent["tangent_share"] == pytest.approx(1.0)
    assert reads_tangent["tangent_chance"] == pytest.approx(1 / 6)
    assert tangent_share(views, _linear(eye[1:4]))["tangent_share"] == pytest.approx(0.0)
    assert tangent_share(views, _linear(eye))["tangent_share"] == pytest.approx(1 / 6)  # chance
    # gains count: e_0 read with gain 2, e_1 with gain 1 -> 4 / (4 + 1)
    weighted = _linear(torch.stack([2 * eye[0], eye[1]]))
    assert tangent_share(views, weighted)["tangent_share"] == pytest.approx(0.8)
    # two augmentation directions, a projector reading one of them and one normal direction
    plane = _views_along(eye[:2])
    result = tangent_share(plane, _linear(torch.stack([eye[1], eye[4]])), chunk_size=7)
    assert result == pytest.approx({"tangent_share": 0.5, "tangent_chance": 2 / 6})


def test_tangent_share_uses_the_jacobian_at_each_centroid():
    """A ReLU projector: at centroids where the unit is off, its Jacobian there is 0 (left out);
    the share is 1 on the images where it is on and reads the tangent direction."""
    eye = torch.eye(4)
    views = _views_along(eye[:1], images=40)
    projector = nn.Sequential(_linear(eye[:1] + 0.0), nn.ReLU(inplace=True)).eval()
    assert tangent_share(views, projector)["tangent_share"] == pytest.approx(1.0)
    still = views[:1].expand(3, -1, -1)  # views that coincide: no tangent estimate at all
    assert math.isnan(tangent_share(still, _linear(eye))["tangent_share"])


def test_encoder_projector_geometry_on_a_projector_that_discards_the_augmentations():
    """Views move along e_0 and e_1; the images differ along all 8 dimensions. A projector
    that keeps only e_2..e_4 is invariant and 3-dimensional; the encoder is neither."""
    eye = torch.eye(8)
    g = _generator(4)
    views = torch.randn(1, 200, 8, generator=g) + torch.randn(6, 200, 2, generator=g) @ eye[:2]
    result = encoder_projector_geometry(views, _linear(eye[2:5]))
    assert set(result) == {
        f"{space}_{measure}"
        for space in ("encoder", "projector")
        for measure in ("invariance", "effective_rank", "participation_ratio")
    } | {"tangent_share", "tangent_chance"}
    assert result["projector_invariance"] == pytest.approx(1.0)
    assert 0.2 < result["encoder_invariance"] < 0.9
    assert result["projector_effective_rank"] == pytest.approx(3.0, abs=0.3)
    assert result["encoder_effective_rank"] > 6.0
    assert result["projector_participation_ratio"] < result["encoder_participation_ratio"]
    assert result["tangent_share"] == pytest.approx(0.0, abs=1e-9)
    assert result["tangent_chance"] == pytest.approx(2 / 8)


def test_encoder_projector_geometry_runs_a_real_projector_and_names_bad_input():
    projector = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8))
    result = encoder_projector_geometry(torch.randn(4, 10, 16), projector.eval(), chunk_size=3)
    assert 0.0 <= result["tangent_share"] <= 1.0
    assert 0.0 <= result["projector_invariance"] <= 1.0
    with pytest.raises(ValueError, match=r"z must be a 3-D tensor \[V, B, D\]"):
        encoder_projector_geometry(torch.randn(10, 16), projector)
    with pytest.raises(ValueError, match="at least 2 image"):
        encoder_projector_geometry(torch.randn(4, 1, 16), projector)
