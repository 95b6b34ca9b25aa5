"""float32 loss and gradients against float64 for close centroids (the Gram form cancels there).

Pairs of images are placed at centroid separations from 1e-3 to 1e-1, including pairs just
below and just above ``min_margin`` = 1e-3. The float64 computation runs on exactly the same
(float32-representable) inputs, so every difference is float32 arithmetic in the loss.
"""

from __future__ import annotations

import pytest
import torch

from solo_clamp.losses.clamp import clamp_loss_func, submanifold_geometry
from solo_clamp.losses.pair_distances import CLOSE_SQ_DISTANCE

VIEWS, IMAGES, DIM, RS = 4, 24, 64, 7.0
SEPARATIONS = (0.9e-3, 1.1e-3, 2e-3, 5e-3, 1e-2, 3e-2, 1e-1)
"""Target centroid separations of the pairs (2k, 2k+1), k = 0 .. 6."""


def _separations(views: torch.Tensor) -> torch.Tensor:
    centroids, _ = submanifold_geometry(views.double(), RS)
    return (centroids[0::2][: len(SEPARATIONS)] - centroids[1::2][: len(SEPARATIONS)]).norm(dim=1)


def close_pairs_input(seed: int = 0) -> torch.Tensor:
    """``[V * N, D]`` float32-representable embeddings whose pairs (2k, 2k+1) have the centroid
    separations of ``SEPARATIONS`` (within 1 %) after the loss's centring and normalisation."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.normalize(
        torch.randn(IMAGES, DIM, generator=gen, dtype=torch.float64), dim=1
    )
    noise = 0.05 * torch.randn(VIEWS, IMAGES, DIM, generator=gen, dtype=torch.float64)
    direction = torch.nn.functional.normalize(
        torch.randn(len(SEPARATIONS), DIM, generator=gen, dtype=torch.float64), dim=1
    )
    target = torch.tensor(SEPARATIONS, dtype=torch.float64)
    step = target.clone()
    for _ in range(4):  # the map from shift to separation is nearly linear: a few rescalings
        views = base[None] + noise
        partners = views[:, 0 : 2 * len(SEPARATIONS) : 2] + step[None, :, None] * direction[None]
        views[:, 1 : 2 * len(SEPARATIONS) : 2] = partners
        views = views.float().double()
        step = step * target / _separations(views)
    return views.reshape(VIEWS * IMAGES, DIM).float()


def loss_and_grad(z: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = z.detach().clone().requires_grad_(True)
    loss = clamp_loss_func(leaf, VIEWS, rs=RS, **kwargs)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def test_the_input_places_pairs_on_both_sides_of_min_margin():
    z = close_pairs_input()
    measured = _separations(z.view(VIEWS, IMAGES, DIM))
    assert torch.allclose(measured, torch.tensor(SEPARATIONS, dtype=torch.float64), rtol=0.01)
    assert (measured < 1e-3).any() and (measured > 1e-3).any()
    assert (measured**2 < CLOSE_SQ_DISTANCE).all()  # every pair takes the exact path


@pytest.mark.parametrize("tile_size", [None, 5], ids=["gram", "tiled"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_matches_float64_for_close_centroids(tile_size, seed):
    z = close_pairs_input(seed)
    loss32, grad32 = loss_and_grad(z, tile_size=tile_size)
    loss64, grad64 = loss_and_grad(z.double(), tile_size=tile_size)
    assert abs(loss32.double() - loss64) / abs(loss64) <= 1e-5
    assert (grad32.double() - grad64).norm() / grad64.norm() <= 1e-3
    # Per image, too: the images of the closest pairs carry the largest forces.
    per_image32 = grad32.double().view(VIEWS, IMAGES, DIM).transpose(0, 1).reshape(IMAGES, -1)
    per_image64 = grad64.view(VIEWS, IMAGES, DIM).transpose(0, 1).reshape(IMAGES, -1)
    errors = (per_image32 - per_image64).norm(dim=1) / per_image64.norm(dim=1).clamp_min(1e-30)
    assert errors[per_image64.norm(dim=1) > 1e-6 * per_image64.norm(dim=1).max()].max() <= 1e-3


def test_pairs_on_each_side_of_min_margin_are_masked_as_in_float64():
    """The pair at 0.9e-3 does not interact and the one at 1.1e-3 does, in float32 too: its
    image's gradient is far from zero exactly when float64 says so."""
    z = close_pairs_input()
    _, grad32 = loss_and_grad(z, max_range=1e-2 + 1e-3)
    _, grad64 = loss_and_grad(z.double(), max_range=1e-2 + 1e-3)
    # With max_range just above 1e-2 only the pairs closer than ~1e-2 can interact.
    for image in range(2 * len(SEPARATIONS)):
        g32 = grad32.view(VIEWS, IMAGES, DIM)[:, image].double()
        g64 = grad64.view(VIEWS, IMAGES, DIM)[:, image]
        assert torch.allclose(g32, g64, rtol=1e-3, atol=1e-3 * grad64.abs().max())


def test_many_close_pairs_are_processed_in_chunks(monkeypatch):
    """A near-collapsed batch (every pair close) goes through the chunked exact path and still
    matches float64."""
    import solo_clamp.losses.pair_distances as pair_distances

    monkeypatch.setattr(pair_distances, "_CHUNK_ELEMENTS", 7 * DIM)  # 7 pairs per chunk
    gen = torch.Generator().manual_seed(3)
    centre = torch.randn(1, 1, DIM, generator=gen, dtype=torch.float64)
    z = centre + 1e-3 * torch.randn(VIEWS, 10, DIM, generator=gen, dtype=torch.float64)
    z = z.reshape(VIEWS * 10, DIM).float()
    for tile_size in (None, 3):
        loss32, grad32 = loss_and_grad(z, tile_size=tile_size)
        loss64, grad64 = loss_and_grad(z.double(), tile_size=tile_size)
        assert abs(loss32.double() - loss64) / abs(loss64) <= 1e-5
        assert (grad32.double() - grad64).norm() / grad64.norm() <= 1e-3
