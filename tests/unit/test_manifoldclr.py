"""ManifoldCLR's pure-torch parts against known answers: transport operators, Laplace
sampling and KL, the prior's warm-up, max-ELBO selection, NT-Xent and the combined loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from solo_clamp.losses.manifoldclr import ManifoldCLRLoss, nt_xent_loss, transport_ratio
from solo_clamp.losses.transport import (
    TransportOperators,
    random_generators,
    rotation_generators,
)
from solo_clamp.losses.variational import (
    CoefficientPrior,
    Laplace,
    laplace_kl,
    laplace_noise,
    laplace_sample,
    max_elbo_noise,
)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def operators(feature_dim=16, dictionary_size=3, block_dim=4, **kwargs) -> TransportOperators:
    return TransportOperators(feature_dim, dictionary_size, block_dim, **kwargs)


# -- transport operators -------------------------------------------------------------------


def test_zero_coefficients_give_the_identity():
    transport = operators()
    eye = torch.eye(4).expand(5, 4, 4, 4)
    torch.testing.assert_close(transport.matrices(torch.zeros(5, 3)), eye)
    z = torch.randn(5, 16)
    torch.testing.assert_close(transport(z, torch.zeros(5, 3)), z)


@pytest.mark.parametrize("theta", [0.0, 0.3, -1.7, 4.0])
def test_a_rotation_generator_rotates_by_theta_times_omega(theta):
    omega = 2.5
    transport = operators(feature_dim=2, dictionary_size=1, block_dim=2)
    with torch.no_grad():
        transport.psi.copy_(torch.tensor([[[[0.0, -omega], [omega, 0.0]]]]))
    angle = torch.tensor(theta * omega)
    expected = torch.stack(
        [torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])]
    )
    got = transport.matrices(torch.tensor([[theta]]))[0, 0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    z = torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(transport(z, torch.tensor([[theta]]))[0], expected[:, 0])


def test_official_initialisation_is_2x2_rotation_blocks():
    psi = rotation_generators(5, 3, 6, real_range=1e-4, imag_range=6.0)
    assert psi.shape == (5, 3, 6, 6)
    for m in range(5):
        for s in range(3):
            block = psi[m, s]
            r, omega = block[0, 0], block[1, 0]
            expected = torch.block_diag(
                *[torch.stack([torch.stack([r, -omega]), torch.stack([omega, r])])] * 3
            )
            torch.testing.assert_close(block, expected)
            assert abs(r) <= 0.5e-4 and abs(omega) <= 3.0
    omegas = psi[:, :, 1, 0].flatten()
    assert omegas.std() > 0.5  # U(-3, 3) has std sqrt(3): the frequencies differ
    big = rotation_generators(200, 8, 2, real_range=1e-4, imag_range=6.0)
    assert big[..., 0, 0].abs().max() > 0.4e-4 and big[..., 1, 0].abs().max() > 2.9


def test_blocks_act_on_their_own_coordinates_with_their_own_generators():
    transport = operators(feature_dim=12, dictionary_size=2, block_dim=4)
    c = torch.randn(1, 2)
    matrices = transport.matrices(c)[0]
    z = torch.randn(1, 12)
    moved = transport(z, c)[0]
    for s in range(3):
        block = slice(4 * s, 4 * s + 4)
        torch.testing.assert_close(moved[block], matrices[s] @ z[0, block])
        generator = c[0, 0] * transport.psi[0, s] + c[0, 1] * transport.psi[1, s]
        torch.testing.assert_close(matrices[s], torch.linalg.matrix_exp(generator))
    bumped = z.clone()
    bumped[0, 4:8] += 1.0
    change = transport(bumped, c)[0] - moved
    assert change[:4].abs().max() == 0 and change[8:].abs().max() == 0
    assert change[4:8].abs().max() > 0


def test_opposite_coefficients_invert_the_transport():
    transport = operators(feature_dim=64, dictionary_size=8, block_dim=16)
    c = 0.1 * torch.randn(6, 8)
    product = transport.matrices(c) @ transport.matrices(-c)
    torch.testing.assert_close(product, torch.eye(16).expand_as(product), atol=1e-4, rtol=0)
    z = torch.randn(6, 64)
    torch.testing.assert_close(transport(transport(z, c), -c), z, atol=1e-4, rtol=1e-4)


def test_coefficients_broadcast_over_samples():
    transport = operators()
    z, c = torch.randn(5, 16), torch.randn(7, 5, 3)
    moved = transport(z, c)
    assert moved.shape == (7, 5, 16)
    torch.testing.assert_close(moved[2], transport(z, c[2]))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"block_dim": 5, "feature_dim": 15}, "block_dim must be even"),
        ({"block_dim": 6}, "block_dim=6 must divide feature_dim=16"),
        ({"dictionary_size": 0}, "dictionary_size must be a positive integer"),
        ({"imag_range": -1.0}, "imag_range must be a finite number >= 0"),
    ],
)
def test_bad_operator_sizes_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        operators(**kwargs)


def test_wrong_shapes_are_named():
    transport = operators()
    with pytest.raises(ValueError, match="c must have dictionary_size=3"):
        transport(torch.randn(2, 16), torch.randn(2, 4))
    with pytest.raises(ValueError, match="z must have feature_dim=16"):
        transport(torch.randn(2, 12), torch.randn(2, 3))


# -- Laplace sampling and KL ---------------------------------------------------------------


def test_samples_have_the_distributions_location_and_scale():
    n = 400_000
    shift, scale = torch.tensor([0.05, -0.3]), torch.tensor([0.01, 0.2])
    q = Laplace(shift.expand(n, 2), scale.log().expand(n, 2))
    c = laplace_sample(q)
    torch.testing.assert_close(c.median(dim=0).values, shift, atol=3 * scale.max() / 100, rtol=0)
    torch.testing.assert_close(c.mean(dim=0), shift, atol=0.01 * scale.max(), rtol=0)
    # For Laplace(mu, b): E|c - mu| = b and Var c = 2 b^2.
    torch.testing.assert_close((c - shift).abs().mean(dim=0), scale, rtol=0.01, atol=0)
    torch.testing.assert_close(c.var(dim=0), 2 * scale**2, rtol=0.02, atol=0)


def test_soft_threshold_zeroes_small_draws_with_a_straight_through_gradient():
    n, threshold, scale = 200_000, 0.01, 0.01
    shift = torch.full((n, 1), 0.05, requires_grad=True)
    logscale = torch.full((n, 1), math.log(scale), requires_grad=True)
    noise = laplace_noise((n, 1))
    c = laplace_sample(Laplace(shift, logscale), noise, threshold)
    plain = laplace_sample(Laplace(shift, logscale), noise).detach()
    zero = c == 0
    # P(|eps| <= lambda) = 1 - exp(-lambda / b)
    assert zero.float().mean().item() == pytest.approx(1 - math.exp(-threshold / scale), abs=0.01)
    eps = plain - 0.05
    kept = ~zero.squeeze(1)
    shrunk = 0.05 + torch.sign(eps) * (eps.abs() - threshold)
    torch.testing.assert_close(c.detach()[kept], shrunk[kept])
    c.sum().backward()
    torch.testing.assert_close(shift.grad, torch.ones_like(shift))  # d(shift + eps)/d shift
    torch.testing.assert_close(logscale.grad, eps)  # d eps / d logscale = eps


def test_kl_of_a_distribution_with_itself_is_zero():
    q = Laplace(torch.randn(4, 6), torch.randn(4, 6))
    torch.testing.assert_close(laplace_kl(q, q), torch.zeros(4), atol=1e-6, rtol=0)


def test_closed_form_kl_agrees_with_monte_carlo():
    q = Laplace(torch.tensor([0.1, -0.2, 0.0]), torch.tensor([0.05, 0.3, 0.01]).log())
    p = Laplace(torch.tensor([0.0, 0.1, 0.05]), torch.tensor([0.1, 0.2, 0.01]).log())
    n = 400_000
    samples = laplace_sample(Laplace(q.shift.expand(n, 3), q.logscale.expand(n, 3)))
    log_q = torch.distributions.Laplace(q.shift, q.logscale.exp()).log_prob(samples)
    log_p = torch.distributions.Laplace(p.shift, p.logscale.exp()).log_prob(samples)
    monte_carlo = (log_q - log_p).mean(dim=0)
    closed = torch.stack(
        [
            laplace_kl(
                Laplace(q.shift[m : m + 1], q.logscale[m : m + 1]),
                Laplace(p.shift[m : m + 1], p.logscale[m : m + 1]),
            )
            for m in range(3)
        ]
    )
    torch.testing.assert_close(closed, monte_carlo, rtol=0.02, atol=0.01)
    torch.testing.assert_close(laplace_kl(q, p), closed.sum())


# -- prior warm-up and max-ELBO ------------------------------------------------------------


def test_the_prior_warms_up_from_the_fixed_laplace():
    prior = CoefficientPrior(
        8, 4, hidden_dim=4, scale_prior=0.01, shift_prior=0.05, warmup_steps=100
    )
    z0 = torch.randn(3, 8)
    learned = prior(z0, step=100)
    assert prior.warmup_weight(0) == 0 and prior.warmup_weight(25) == 0.25
    assert prior.warmup_weight(100) == prior.warmup_weight(10**6) == 1.0
    start = prior(z0, step=0)
    torch.testing.assert_close(start.logscale, torch.full((3, 4), math.log(0.01)))
    torch.testing.assert_close(start.shift, torch.zeros(3, 4))  # sign(0 * shift) = 0
    quarter = prior(z0, step=25)
    torch.testing.assert_close(quarter.logscale, 0.25 * learned.logscale + 0.75 * math.log(0.01))
    torch.testing.assert_close(
        quarter.shift, 0.25 * learned.shift + 0.75 * 0.05 * torch.sign(learned.shift)
    )
    torch.testing.assert_close(prior(z0, step=500).shift, learned.shift)
    no_warmup = CoefficientPrior(8, 4, hidden_dim=4, warmup_steps=0)
    assert no_warmup.warmup_weight(0) == 1.0


def test_max_elbo_keeps_the_best_of_the_draws():
    transport = operators()
    z0, z1 = torch.randn(5, 16), torch.randn(5, 16)
    q = Laplace(0.1 * torch.randn(5, 3), torch.full((5, 3), math.log(0.5)))
    torch.manual_seed(3)
    chosen = max_elbo_noise(q, transport, z0, z1, num_samples=6, threshold=0.01, l1_penalty=0.1)
    torch.manual_seed(3)
    draws = torch.stack([laplace_noise((5, 3)) for _ in range(6)])
    c = laplace_sample(q, draws, threshold=0.01)
    cost = (transport(z0, c) - z1).pow(2).mean(-1) + 0.1 * c.abs().sum(-1)
    torch.testing.assert_close(chosen, draws[cost.argmin(dim=0), torch.arange(5)])


# -- NT-Xent and the combined loss ---------------------------------------------------------


def test_nt_xent_matches_the_simclr_formula():
    p0, p1 = torch.randn(6, 8), torch.randn(6, 8)
    x = F.normalize(torch.cat([p0, p1]), dim=1)
    logits = x @ x.T / 0.5 - torch.eye(12) * 1e9
    targets = torch.cat([torch.arange(6) + 6, torch.arange(6)])
    torch.testing.assert_close(nt_xent_loss(p0, p1, 0.5), F.cross_entropy(logits, targets))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        nt_xent_loss(p0, p1, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent_loss(p0, p1[:3])


def small_loss(**kwargs) -> ManifoldCLRLoss:
    return ManifoldCLRLoss(16, 4, block_dim=4, hidden_dim=8, **kwargs)


def test_loss_terms_add_up_and_reach_every_part():
    criterion = small_loss(max_elbo_samples=3, max_elbo_start_step=0, prior_warmup_steps=2)
    projector = nn.Sequential(nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 8))
    z0 = torch.randn(10, 16, requires_grad=True)
    z1 = torch.randn(10, 16, requires_grad=True)
    loss, stats = criterion(z0, z1, projector, step=1)
    total = stats["ntxent"] + 10 * stats["transport_mse"] + 1e-3 * stats["kl"]
    torch.testing.assert_close(loss.detach(), total + 1e-2 * stats["shift_l2"])
    assert 0 < stats["active_coefficients"] <= 1
    loss.backward()
    for name, param in [*criterion.named_parameters(), *projector.named_parameters()]:
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert criterion.transport.psi.grad.abs().sum() > 0
    assert z0.grad.abs().sum() > 0 and z1.grad.abs().sum() > 0


def test_gradients_are_finite_under_bf16_autocast_on_cpu():
    criterion = small_loss(max_elbo_samples=2, max_elbo_start_step=0)
    projector = nn.Sequential(nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 8))
    z0 = torch.randn(10, 16, requires_grad=True)
    z1 = torch.randn(10, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert criterion.transport(z0, torch.randn(10, 4)).dtype == torch.float32
        loss, _ = criterion(z0.bfloat16(), z1.bfloat16(), projector, step=0)
    loss.backward()
    assert torch.isfinite(loss)
    for param in [*criterion.parameters(), *projector.parameters(), z0, z1]:
        assert param.grad is not None and torch.isfinite(param.grad).all()


def test_bad_loss_input_is_named():
    criterion = small_loss()
    with pytest.raises(ValueError, match="z0 and z1 must be 2-D tensors of the same shape"):
        criterion(torch.randn(4, 16), torch.randn(5, 16), nn.Identity(), step=0)
    with pytest.raises(ValueError, match="max_elbo_samples must be an integer >= 1"):
        small_loss(max_elbo_samples=0)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        small_loss(threshold=-0.1)


# -- the transport ratio and the options that are not the official code's defaults -------------


def test_transport_ratio_is_the_mse_with_c_over_the_mse_of_the_identity():
    z0, z1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert transport_ratio(z1.clone(), z0, z1) == 0  # the operators explain everything
    assert transport_ratio(z0.clone(), z0, z1) == 1  # c = 0: the identity
    # by hand: MSE([0.5, 0.5], [0, 1]) = (0.25 + 0.25) / 2 over MSE([1, 0], [0, 1]) = 1
    assert transport_ratio(torch.tensor([[0.5, 0.5]]), z0, z1) == pytest.approx(0.25)


def test_the_logged_ratio_is_one_for_identity_operators_and_follows_its_definition():
    torch.manual_seed(0)
    criterion = small_loss(max_elbo_samples=1)
    projector = nn.Linear(16, 8)
    z0, z1 = torch.randn(10, 16), torch.randn(10, 16)
    with torch.no_grad():
        criterion.transport.psi.zero_()  # T(c) = I for every c
    _, stats = criterion(z0, z1, projector, step=0)
    assert stats["transport_ratio"] == pytest.approx(1.0)
    assert stats["transport_mse"] == pytest.approx(F.mse_loss(z0, z1).item())


def test_normalized_transport_compares_unit_features():
    criterion = small_loss(max_elbo_samples=1, normalize_transport=True)
    with torch.no_grad():
        criterion.transport.psi.zero_()
    z0, z1 = 3 * torch.randn(6, 16), 5 * torch.randn(6, 16)
    _, stats = criterion(z0, z1, nn.Linear(16, 8), step=0)
    unit = F.mse_loss(F.normalize(z0, dim=-1), F.normalize(z1, dim=-1))
    assert stats["transport_mse"] == pytest.approx(unit.item())


@pytest.mark.parametrize(
    "start, step, reaches", [(0, 0, True), (None, 5, False), (3, 2, False), (3, 3, True)]
)
def test_the_transport_gradient_reaches_the_backbone_from_its_start_step(start, step, reaches):
    criterion = small_loss(max_elbo_samples=1, transport_grad_start_step=start, mse_weight=1.0)
    z0 = torch.randn(6, 16, requires_grad=True)
    z1 = torch.randn(6, 16)
    # the transport term's gradient: the loss with it minus the loss without it, both with
    # the same coefficient draws (the same seed)
    torch.manual_seed(1)
    loss, _ = criterion(z0, z1, nn.Identity(), step=step)
    (with_mse,) = torch.autograd.grad(loss, z0)
    criterion.mse_weight = 0.0
    torch.manual_seed(1)
    loss, _ = criterion(z0, z1, nn.Identity(), step=step)
    (without,) = torch.autograd.grad(loss, z0)
    assert (
        (with_mse - without).abs().max().item() > 0 if reaches else torch.equal(with_mse, without)
    )


def test_random_operator_init_is_the_official_gaussian():
    psi = random_generators(64, 8, 16, generator=torch.Generator().manual_seed(0))
    assert psi.shape == (64, 8, 16, 16)
    assert psi.std().item() == pytest.approx(1 / 16, rel=0.02) and abs(psi.mean().item()) < 2e-3
    with pytest.raises(ValueError, match="init must be one of"):
        TransportOperators(16, 4, 4, init="zeros")


# -- the c = 0 ablation (use_operators=False) --------------------------------------------------


@pytest.mark.parametrize("use_operators", [True, False])
def test_the_c_zero_ablation_leaves_no_gradient_on_the_operators(use_operators):
    criterion = small_loss(use_operators=use_operators, prior_warmup_steps=0)
    projector = nn.Sequential(nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 8))
    z0 = torch.randn(10, 16, requires_grad=True)
    z1 = torch.randn(10, 16, requires_grad=True)
    loss, stats = criterion(z0, z1, projector, step=0)
    loss.backward()
    for part in (criterion.transport, criterion.posterior, criterion.prior):
        grads = [param.grad for param in part.parameters()]
        if use_operators:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), part
        else:
            assert all(g is None for g in grads), part
            assert not any(param.requires_grad for param in part.parameters())
    for param in [*projector.parameters(), z0, z1]:
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert set(stats) == {
        "ntxent",
        "transport_mse",
        "transport_ratio",
        "kl",
        "shift_l2",
        "active_coefficients",
    }


def test_the_c_zero_ablation_is_nt_xent_of_the_two_views_alone():
    torch.manual_seed(1)
    criterion = small_loss(use_operators=False, normalize_transport=True, temperature=0.3)
    projector = nn.Sequential(nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 8))
    z0, z1 = torch.randn(10, 16), torch.randn(10, 16)
    loss, stats = criterion(z0, z1, projector, step=50)
    expected = nt_xent_loss(projector(z0), projector(torch.cat([z0, z1]))[10:], 0.3)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(stats["ntxent"], expected)
    identity = F.mse_loss(F.normalize(z0, dim=-1), F.normalize(z1, dim=-1))
    torch.testing.assert_close(stats["transport_mse"], identity)
    assert stats["transport_ratio"] == 1 and stats["kl"] == 0 and stats["shift_l2"] == 0
    assert stats["active_coefficients"] == 0
