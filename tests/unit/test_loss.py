"""The packing loss against the naive reference formula of ``clamp_testing``."""

from __future__ import annotations

import math

import pytest
import torch
from clamp_testing import reference_clamp_loss

from solo_clamp.losses.clamp import clamp_loss_and_stats, clamp_loss_func

CASES = [
    # (V, B, D, rs, pot_pow, lw0, max_range)
    (2, 5, 3, 7.0, 2.0, 0.0, 1.5),
    (4, 8, 16, 7.0, 2.0, 0.0, 1.5),
    (4, 8, 16, 1.0, 2.5, 0.0, 1.5),  # small radii: some pairs do not overlap
    (16, 6, 8, 3.0, 2.0, 0.3, 1.5),  # lw0 > 0
    (3, 7, 32, 9.0, 1.5, 0.0, 0.4),  # max_range caps S for every pair
    (5, 4, 2, 2.0, 2.0, 0.1, 1.5),  # D < V
]


@pytest.mark.parametrize("num_views,batch,dim,rs,pot_pow,lw0,max_range", CASES)
def test_value_and_gradient_match_the_reference(num_views, batch, dim, rs, pot_pow, lw0, max_range):
    torch.manual_seed(batch * dim + num_views)
    z = torch.randn(num_views * batch, dim, dtype=torch.float64, requires_grad=True)
    loss, stats = clamp_loss_and_stats(z, num_views, rs, pot_pow, lw0=lw0, max_range=max_range)
    expected, pairs, mean_radius = reference_clamp_loss(
        z, num_views, rs, pot_pow, lw0=lw0, max_range=max_range
    )
    assert loss.dtype == torch.float64  # float64 input is kept; half precision goes to float32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-9)
    assert stats["neighbours"].item() == pytest.approx(pairs / batch)
    assert stats["overlap_fraction"].item() == pytest.approx(pairs / (batch * (batch - 1)))
    assert stats["mean_radius"].item() == pytest.approx(mean_radius.item(), rel=1e-5)

    (grad,) = torch.autograd.grad(loss, z)
    (expected_grad,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-9)


def test_max_range_excludes_far_pairs_and_caps_reach():
    torch.manual_seed(0)
    z = torch.randn(4 * 10, 8)
    _, wide = clamp_loss_and_stats(z, 4, rs=20.0, max_range=1.5)
    _, narrow = clamp_loss_and_stats(z, 4, rs=20.0, max_range=0.2)
    # with huge radii every pair overlaps unless the range cap cuts it
    assert wide["overlap_fraction"].item() == 1.0
    assert narrow["overlap_fraction"].item() < wide["overlap_fraction"].item()
    expected, pairs, _ = reference_clamp_loss(z, 4, 20.0, max_range=0.2)
    assert narrow["neighbours"].item() == pytest.approx(pairs / 10)


def test_coincident_centroids_below_min_margin_do_not_interact():
    torch.manual_seed(1)
    base = torch.randn(4, 3, 6, dtype=torch.float64)
    # images 0 and 1 are the same image: identical views, identical centroids
    views = torch.cat([base, base[:, :1]], dim=1)  # [V, 4 images, D]
    z = views.reshape(-1, 6).clone().requires_grad_(True)
    loss, stats = clamp_loss_and_stats(z, 4, rs=50.0)
    expected, pairs, _ = reference_clamp_loss(z, 4, 50.0)
    assert pairs == 4 * 3 - 2  # every pair overlaps except the coincident (0, 3) both ways
    assert stats["neighbours"].item() == pytest.approx(pairs / 4)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    (grad,) = torch.autograd.grad(loss, z)
    (expected_grad,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-9)


def test_no_overlap_gives_the_floor_and_zero_gradient():
    # two images far apart with tiny sub-manifolds: no pair interacts, E = 0
    centres = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    offsets = torch.tensor([[0.0, 1e-3], [0.0, -1e-3]])
    views = centres[None] + offsets[:, None]  # [V=2, B=2, D=2]
    z = views.reshape(-1, 2).clone().requires_grad_(True)
    loss = clamp_loss_func(z, 2, rs=1.0)
    assert loss.item() == pytest.approx(math.log(1e-6), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.count_nonzero(grad) == 0


def test_permutation_of_images_leaves_loss_unchanged():
    torch.manual_seed(2)
    num_views, batch = 4, 12
    z = torch.randn(num_views * batch, 32)
    perm = torch.randperm(batch)
    z_perm = z.reshape(num_views, batch, 32)[:, perm].reshape(-1, 32)
    a, stats_a = clamp_loss_and_stats(z, num_views, rs=7.0)
    b, stats_b = clamp_loss_and_stats(z_perm, num_views, rs=7.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    for name in stats_a:
        assert stats_a[name].item() == pytest.approx(stats_b[name].item(), rel=1e-5)


def test_views_are_grouped_view_major():
    # swapping two views of the same image changes nothing; swapping rows across images does
    torch.manual_seed(3)
    z = torch.randn(3 * 5, 8)
    same = z.reshape(3, 5, 8)[[1, 0, 2]].reshape(-1, 8)
    mixed = z.clone()
    mixed[[0, 1]] = mixed[[1, 0]]  # view 0 of image 0 <-> view 0 of image 1
    base = clamp_loss_func(z, 3, rs=5.0).item()
    assert clamp_loss_func(same, 3, rs=5.0).item() == pytest.approx(base, rel=1e-6)
    assert clamp_loss_func(mixed, 3, rs=5.0).item() != pytest.approx(base, rel=1e-4)


def test_input_is_not_modified():
    torch.manual_seed(4)
    z = torch.randn(4 * 6, 10, requires_grad=True)
    before = z.detach().clone()
    clamp_loss_func(z, 4, rs=7.0).backward()
    assert torch.equal(z.detach(), before)


@pytest.mark.parametrize(
    "z,num_views,kwargs,message",
    [
        (torch.randn(8, 4), 1, {}, "num_views must be an integer >= 2"),
        (torch.randn(9, 4), 2, {}, "not divisible by num_views=2"),
        (torch.randn(4, 4), 4, {}, "at least 2 images"),
        (torch.randn(8), 2, {}, "2-D tensor"),
        (torch.full((8, 4), float("nan")), 2, {}, "non-finite"),
        (torch.randn(8, 4), 2, {"rs": 0.0}, "rs must be > 0"),
        (torch.randn(8, 4), 2, {"max_range": 1e-4}, "max_range must be > min_margin"),
        (torch.randn(8, 4), 2, {"tile_size": 0}, "tile_size must be a positive integer"),
        (torch.randn(8, 4), 2, {"ddp_gradient": "mean"}, "ddp_gradient must be one of"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(z, num_views, kwargs, message):
    kwargs = {"rs": 7.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        clamp_loss_func(z, num_views, **kwargs)


def test_non_finite_embeddings_are_a_floating_point_error_too():
    """The method turns it into a message with the training step; direct callers can catch
    either ValueError or FloatingPointError."""
    with pytest.raises(FloatingPointError, match="non-finite"):
        clamp_loss_func(torch.full((8, 4), float("inf")), 2, rs=7.0)


def test_gram_path_never_builds_an_n_by_n_by_d_tensor():
    """Every tensor the default path creates has at most max(N*N, V*N*D) elements."""
    from torch.overrides import TorchFunctionMode

    num_views, batch, dim = 4, 64, 256
    largest = 0

    class RecordSizes(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            nonlocal largest
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                largest = max(largest, out.numel())
            return out

    z = torch.randn(num_views * batch, dim, requires_grad=True)
    with RecordSizes():
        loss = clamp_loss_func(z, num_views, rs=7.0)
    assert torch.isfinite(loss)
    assert 0 < largest <= max(batch * batch, num_views * batch * dim)
