"""The loss's computation paths agree: default (Gram) vs tiled, vs the reference formula of
``clamp_testing``, and under mixed precision. Torch only: nothing here imports solo-learn."""

from __future__ import annotations

import pytest
import torch
from clamp_testing import reference_clamp_loss

import solo_clamp.losses.clamp as clamp_module
import solo_clamp.losses.pair_energy as pair_energy
from solo_clamp.losses.clamp import clamp_loss_and_stats, clamp_loss_func

RS = 5.0
MAX_RANGE = 1.4
"""With these and `make_z`, ~40-50% of the pairs interact, most ranges hit max_range and
about half of the pairs lie beyond their range (checked in `test_inputs_cover_every_regime`)."""


def make_z(
    num_images: int, num_views: int, dim: int, dtype=torch.float64, seed: int = 0
) -> torch.Tensor:
    """View-major embeddings with per-image spreads over a decade; images 0 and 1 share their
    views, so their centroids coincide (distance below min_margin)."""
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(num_images, dim, generator=gen, dtype=torch.float64)
    spread = torch.empty(num_images, 1, dtype=torch.float64).uniform_(-2.5, 0.0, generator=gen)
    noise = torch.randn(num_views, num_images, dim, generator=gen, dtype=torch.float64)
    views = mean[None] + spread.exp()[None] * noise
    views[:, 1] = views[:, 0]
    return views.reshape(num_views * num_images, dim).to(dtype)


def loss_stats_grad(z: torch.Tensor, num_views: int, **kwargs):
    """Loss, stats and d loss / d z of a fresh leaf copy of z."""
    leaf = z.detach().clone().requires_grad_(True)
    loss, stats = clamp_loss_and_stats(leaf, num_views, **kwargs)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), stats, grad


def graph_node_names(tensor: torch.Tensor) -> set[str]:
    """Names of every autograd node reachable from tensor.grad_fn."""
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


CASES = [
    # (num_images, num_views, dim, tile_size)
    (13, 2, 5, 1),  # one row per tile
    (40, 4, 16, 7),  # tile does not divide N
    (40, 4, 16, 40),  # tile == N
    (40, 4, 16, 64),  # tile > N
    (64, 3, 8, 16),
    (33, 16, 4, 5),
]
POT_POWS = [2.0, 2.5, 0.5]


def test_inputs_cover_every_regime():
    """The fixtures exercise overlapping, out-of-range, clamped-range and coincident pairs."""
    num_images, num_views, dim = 40, 4, 16
    z = make_z(num_images, num_views, dim)
    centroids, radii = clamp_module.submanifold_geometry(z.reshape(num_views, -1, dim), RS)
    dist = torch.cdist(centroids, centroids)
    reach = radii[:, None] + radii[None, :]
    off_diag = ~torch.eye(num_images, dtype=torch.bool)
    interacting = off_diag & (dist > 1e-3) & (dist < reach.clamp(max=MAX_RANGE))
    assert dist[0, 1] < 1e-3
    assert 0.2 < interacting.double().mean() < 0.8
    assert (off_diag & (dist > reach.clamp(max=MAX_RANGE))).any()
    assert (reach > MAX_RANGE).any() and (reach[interacting] < MAX_RANGE).any()


@pytest.mark.parametrize("pot_pow", POT_POWS)
@pytest.mark.parametrize("num_images,num_views,dim,tile", CASES)
@pytest.mark.parametrize("lw0", [0.0, 0.3])
def test_tiled_matches_default_float64(num_images, num_views, dim, tile, pot_pow, lw0):
    z = make_z(num_images, num_views, dim)
    kwargs = dict(rs=RS, pot_pow=pot_pow, lw0=lw0, max_range=MAX_RANGE)
    loss, stats, grad = loss_stats_grad(z, num_views, **kwargs)
    loss_t, stats_t, grad_t = loss_stats_grad(z, num_views, tile_size=tile, **kwargs)

    assert loss.dtype == torch.float64 and grad.dtype == torch.float64
    torch.testing.assert_close(loss_t, loss, rtol=1e-12, atol=1e-12)
    for name in clamp_module.STAT_NAMES:
        torch.testing.assert_close(stats_t[name], stats[name], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_t, grad, rtol=1e-9, atol=1e-12)
    assert grad.abs().max() > 0


@pytest.mark.parametrize("pot_pow", POT_POWS)
@pytest.mark.parametrize("num_images,num_views,dim,tile", CASES)
def test_tiled_matches_default_float32(num_images, num_views, dim, tile, pot_pow):
    z = make_z(num_images, num_views, dim, dtype=torch.float32, seed=1)
    kwargs = dict(rs=RS, pot_pow=pot_pow, lw0=0.1, max_range=MAX_RANGE)
    loss, stats, grad = loss_stats_grad(z, num_views, **kwargs)
    loss_t, stats_t, grad_t = loss_stats_grad(z, num_views, tile_size=tile, **kwargs)

    assert loss.dtype == torch.float32 and grad.dtype == torch.float32
    torch.testing.assert_close(loss_t, loss, rtol=1e-5, atol=1e-5)
    for name in clamp_module.STAT_NAMES:
        torch.testing.assert_close(stats_t[name], stats[name], rtol=1e-5, atol=1e-5)
    scale = grad.abs().max().item()
    torch.testing.assert_close(grad_t, grad, rtol=1e-3, atol=1e-4 * scale)


def test_tiled_gradcheck_float64():
    """The tiled path's hand-written backward against finite differences."""
    z = make_z(6, 2, 3, seed=3).requires_grad_(True)

    def loss(x):
        return clamp_loss_func(x, 2, rs=RS, pot_pow=2.5, lw0=0.2, max_range=MAX_RANGE, tile_size=4)

    assert torch.autograd.gradcheck(loss, (z,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("pot_pow", POT_POWS)
@pytest.mark.parametrize("lw0", [0.0, 0.3])
@pytest.mark.parametrize("num_images,num_views,dim", [(13, 2, 5), (40, 4, 16), (33, 16, 4)])
def test_default_and_tiled_match_the_reference(num_images, num_views, dim, pot_pow, lw0):
    z = make_z(num_images, num_views, dim, seed=2)
    kwargs = dict(rs=RS, pot_pow=pot_pow, lw0=lw0, max_range=MAX_RANGE)
    leaf = z.clone().requires_grad_(True)
    expected = reference_clamp_loss(leaf, num_views, **kwargs).loss
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    for tile in (None, 7):
        loss, _, grad = loss_stats_grad(z, num_views, tile_size=tile, **kwargs)
        torch.testing.assert_close(loss, expected.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10)


def test_reference_float32_close():
    z = make_z(50, 4, 32, dtype=torch.float32, seed=4)
    expected = reference_clamp_loss(z, 4, rs=RS, max_range=MAX_RANGE).loss
    loss = clamp_loss_func(z, 4, rs=RS, max_range=MAX_RANGE)
    assert expected.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)


def test_automatic_selection_uses_tiled_function(monkeypatch):
    z = make_z(20, 4, 8, seed=5).requires_grad_(True)
    dense_loss = clamp_loss_func(z, 4, rs=RS, max_range=MAX_RANGE)
    assert "_TiledPairEnergyBackward" not in graph_node_names(dense_loss)

    monkeypatch.setattr(clamp_module, "AUTO_TILE_MIN_IMAGES", 8)
    monkeypatch.setattr(clamp_module, "_TILE_ELEMENTS", 20 * 6)  # 6 rows per tile
    calls = []
    original_apply = pair_energy._TiledPairEnergy.apply

    def spy_apply(*args):
        calls.append(args[2])  # the tile size
        return original_apply(*args)

    monkeypatch.setattr(pair_energy._TiledPairEnergy, "apply", spy_apply)
    tiled_loss = clamp_loss_func(z, 4, rs=RS, max_range=MAX_RANGE)
    assert calls == [6]
    assert "_TiledPairEnergyBackward" in graph_node_names(tiled_loss)
    torch.testing.assert_close(tiled_loss, dense_loss, rtol=1e-12, atol=1e-12)

    # at or below the threshold the default path stays dense
    small = make_z(8, 4, 8, seed=6)
    assert "_TiledPairEnergyBackward" not in graph_node_names(
        clamp_loss_func(small.requires_grad_(True), 4, rs=RS)
    )
    assert calls == [6]


def test_explicit_tile_size_is_validated():
    z = make_z(8, 2, 4)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="tile_size"):
            clamp_loss_func(z, 2, rs=RS, tile_size=bad)


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("tile", [None, 6])
def test_autocast_half_input_gives_float32_loss(half, tile):
    z32 = make_z(24, 4, 16, dtype=torch.float32, seed=7)
    reference = clamp_loss_func(z32, 4, rs=RS, max_range=MAX_RANGE, tile_size=tile)
    z_half = z32.to(half).requires_grad_(True)
    upcast_reference = clamp_loss_func(
        z_half.detach().float(), 4, rs=RS, max_range=MAX_RANGE, tile_size=tile
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = clamp_loss_func(z_half, 4, rs=RS, max_range=MAX_RANGE, tile_size=tile)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    # inside, the loss runs in float32 on the rounded inputs ...
    torch.testing.assert_close(loss.detach(), upcast_reference, rtol=1e-5, atol=1e-5)
    # ... and the rounding of the inputs barely moves it
    torch.testing.assert_close(loss.detach(), reference, rtol=2e-2, atol=2e-2)
    loss.backward()
    assert z_half.grad.dtype == half and torch.isfinite(z_half.grad.float()).all()


def test_autocast_projector_output():
    """A projector run under autocast hands bf16 embeddings to the loss."""
    torch.manual_seed(0)
    projector = torch.nn.Linear(16, 8)
    x = make_z(24, 4, 16, dtype=torch.float32, seed=8)
    reference = clamp_loss_func(projector(x), 4, rs=RS, max_range=MAX_RANGE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = projector(x)
        loss = clamp_loss_func(z, 4, rs=RS, max_range=MAX_RANGE)
    assert z.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss.detach(), reference.detach(), rtol=2e-2, atol=2e-2)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in projector.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("tile", [None, 5])
def test_input_is_not_modified(dtype, tile):
    z = make_z(16, 4, 8, dtype=dtype, seed=9).requires_grad_(True)
    before, version = z.detach().clone(), z._version
    loss, _ = clamp_loss_and_stats(z, 4, rs=RS, lw0=0.2, max_range=MAX_RANGE, tile_size=tile)
    loss.backward()
    assert z._version == version
    assert torch.equal(z.detach(), before)
