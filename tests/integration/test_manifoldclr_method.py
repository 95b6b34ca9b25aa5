"""ManifoldCLR inside the real solo-learn: registration, configs, parameter groups, clipping,
training steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import solo_clamp
from solo_clamp.configs import config_dir
from solo_clamp.configs.compose import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def methods() -> dict:
    """solo-learn's method registry, with CLAMP and ManifoldCLR registered."""
    from solo.methods import METHODS

    solo_clamp.register()
    return METHODS


CONFIGS = sorted(config_dir("pretrain").glob("*/manifoldclr.yaml"))
GROUPS = ["backbone", "classifier", "projector", "transport_operators", "coefficient_networks"]


def tiny_cfg(clamp_cfg_factory, **method_kwargs):
    cfg = clamp_cfg_factory(num_views=2, batch_size=6, backbone="wide_resnet28w2", crop_size=16)
    cfg.method = "manifoldclr"
    cfg.method_kwargs = {
        "proj_hidden_dim": 32,
        "proj_output_dim": 16,
        "dictionary_size": 4,
        "block_dim": 16,
        "vi_hidden_dim": 8,
        **method_kwargs,
    }
    cfg.optimizer = {
        "name": "adamw",
        "batch_size": 6,
        "lr": 3e-3,
        "classifier_lr": 0.1,
        "weight_decay": 1e-5,
    }
    return cfg


def make_batch(crops: int = 2, batch: int = 6, size: int = 16):
    return [
        torch.arange(batch),
        [torch.randn(batch, 3, size, size) for _ in range(crops)],
        torch.arange(batch) % 3,
    ]


def quiet(model):
    logged = {}
    model.log = lambda name, value, **_: logged.__setitem__(name, value)
    model.log_dict = lambda values, **_: logged.update(values)
    return logged


def test_manifoldclr_is_registered_beside_clamp():
    solo_clamp.register()
    assert methods()["manifoldclr"].__name__ == "ManifoldCLR"
    assert methods()["clamp"].__name__ == "CLAMP"


def test_the_three_configs_are_shipped():
    assert {p.parent.name for p in CONFIGS} == {"mnist", "cifar", "imagenet-100"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_every_config_composes_and_builds_the_model(path: Path, tmp_path):
    from solo.args.pretrain import parse_cfg

    from solo_clamp.training.common import parse_solo_cfg

    overrides = [f"data.train_path={tmp_path}", "data.val_path=null", "data.format=image_folder"]
    cfg = compose_config("pretrain", str(path.parent), path.name, overrides)
    cfg.pop("prepare_data", None)
    cfg = parse_solo_cfg(cfg, parse_cfg)
    model = methods()["manifoldclr"](cfg)
    kwargs = cfg.method_kwargs
    blocks = model.features_dim // kwargs.block_dim
    psi = model.manifold.transport.psi
    assert psi.shape == (kwargs.dictionary_size, blocks, kwargs.block_dim, kwargs.block_dim)
    assert isinstance(model.projector[1], torch.nn.BatchNorm1d)
    assert model.projector[-1].out_features == kwargs.proj_output_dim
    groups = {group["name"]: group for group in model.learnable_params}
    assert list(groups) == GROUPS
    # per 256 images, scaled by the batch (x the processes of the trainer, 1 without one)
    scale = cfg.optimizer.batch_size / 256
    assert groups["transport_operators"]["lr"] == pytest.approx(kwargs.transop_lr * scale)
    assert groups["coefficient_networks"]["lr"] == pytest.approx(kwargs.vi_lr * scale)
    assert groups["coefficient_networks"]["weight_decay"] == kwargs.vi_weight_decay
    if path.parent.name == "cifar":
        assert cfg.optimizer.lr == pytest.approx(3e-3)  # 1.5e-3 per 256 images, batch 512
        assert isinstance(model.backbone.maxpool, torch.nn.Identity)


def test_training_step_reaches_every_part(clamp_cfg_factory):
    torch.manual_seed(0)
    model = methods()["manifoldclr"](
        tiny_cfg(clamp_cfg_factory, max_elbo_start_step=0, max_elbo_samples=3, prior_warmup_steps=0)
    )
    logged = quiet(model)
    loss = model.training_step(make_batch(), 0)
    assert torch.isfinite(loss)
    loss.backward()
    parts = {
        "backbone": model.backbone,
        "projector": model.projector,
        "classifier": model.classifier,
        "transport": model.manifold.transport,
        "posterior": model.manifold.posterior,
        "prior": model.manifold.prior,
    }
    for name, module in parts.items():
        grads = [p.grad for p in module.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
        assert all(torch.isfinite(g).all() for g in grads if g is not None), name
    for key in (
        "train_manifoldclr_loss",
        "train_manifoldclr_ntxent",
        "train_manifoldclr_kl",
        "train_manifoldclr_transport_mse",
        "train_class_loss",
        "train_acc1",
    ):
        assert key in logged


@pytest.mark.parametrize("use_operators", [True, False])
def test_the_c_zero_ablation_leaves_no_gradient_on_the_operators(clamp_cfg_factory, use_operators):
    """method_kwargs.use_operators=false (the c = 0 ablation): a training step trains the
    backbone and projector and leaves no gradient on the operators or the coefficient
    networks; with the default (true) every part gets one."""
    torch.manual_seed(0)
    kwargs = {"prior_warmup_steps": 0}
    if not use_operators:
        kwargs["use_operators"] = False
    cfg = tiny_cfg(clamp_cfg_factory, **kwargs)
    cfg = methods()["manifoldclr"].add_and_assert_specific_cfg(cfg)
    assert cfg.method_kwargs.use_operators is use_operators  # the schema's default: true
    model = methods()["manifoldclr"](cfg)
    logged = quiet(model)
    loss = model.training_step(make_batch(), 0)
    loss.backward()
    for part in (model.manifold.transport, model.manifold.posterior, model.manifold.prior):
        grads = [p.grad for p in part.parameters()]
        if use_operators:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), part
        else:
            assert all(g is None for g in grads), part
    for part in (model.backbone, model.projector):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert "train_manifoldclr_transport_ratio" in logged
    if not use_operators:
        assert logged["train_manifoldclr_transport_ratio"] == 1


def test_the_c_zero_ablation_has_no_learned_augmentation_nor_transport(clamp_cfg_factory):
    from solo_clamp.methods import facts_of

    facts = facts_of("manifoldclr")
    cfg = tiny_cfg(clamp_cfg_factory, use_operators=False)
    cfg = methods()["manifoldclr"].add_and_assert_specific_cfg(cfg)
    model = methods()["manifoldclr"](cfg)
    state = {"state_dict": model.state_dict()}
    assert facts.learned_transport(model, state) is None
    assert facts.feature_augmenter(cfg, state) is None
    on = methods()["manifoldclr"](tiny_cfg(clamp_cfg_factory))
    learned = facts.learned_transport(on, {"state_dict": on.state_dict()})
    assert learned is not None and learned.psi.shape == (4, 8, 16, 16)
    assert not on.manifold.training


def test_each_group_is_clipped_on_its_own(clamp_cfg_factory):
    model = methods()["manifoldclr"](
        tiny_cfg(clamp_cfg_factory, transop_grad_clip=0.1, vi_grad_clip=1.0, backbone_grad_clip=2.0)
    )
    model.classifier.weight.grad = torch.full_like(model.classifier.weight, 100.0)
    parts = {
        0.1: list(model.manifold.transport.parameters()),
        1.0: [*model.manifold.posterior.parameters(), *model.manifold.prior.parameters()],
        2.0: [*model.backbone.parameters(), *model.projector.parameters()],
    }
    for params in parts.values():
        for param in params:
            param.grad = torch.full_like(param, 100.0)
    model.configure_gradient_clipping(None)
    for max_norm, params in parts.items():
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        assert norm.item() == pytest.approx(max_norm, rel=1e-4)
    assert model.classifier.weight.grad.max() == 100.0  # no clip configured for it


def test_a_few_training_steps_with_lightning(clamp_cfg_factory):
    """Every group follows its own lr under solo-learn's scheduler (warm-up 0 included), the
    operators and the networks learn, and the loss stays finite."""
    from lightning.pytorch import Callback, Trainer
    from torch.utils.data import DataLoader

    class RecordLearningRates(Callback):
        ratios: list[dict[str, float]] = []

        def on_train_batch_start(self, trainer, *_):
            scheduler = trainer.lr_scheduler_configs[0].scheduler
            groups = trainer.optimizers[0].param_groups
            self.ratios.append(
                {
                    group["name"]: group["lr"] / base
                    for group, base in zip(groups, scheduler.base_lrs)
                }
            )

    torch.manual_seed(0)
    cfg = tiny_cfg(
        clamp_cfg_factory,
        prior_warmup_steps=2,
        max_elbo_start_step=2,
        max_elbo_samples=2,
        transop_lr=1e-2,
    )
    model = methods()["manifoldclr"](cfg)
    images = [(i, [torch.randn(3, 16, 16), torch.randn(3, 16, 16)], i % 3) for i in range(24)]
    psi_before = model.manifold.transport.psi.detach().clone()
    prior_before = model.manifold.prior.shift_head.weight.detach().clone()
    trainer = Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RecordLearningRates()],
    )
    trainer.fit(model, DataLoader(images, batch_size=6))
    assert trainer.global_step == 4
    assert math.isfinite(float(trainer.callback_metrics["train_manifoldclr_loss"]))
    assert not torch.equal(model.manifold.transport.psi, psi_before)
    assert not torch.equal(model.manifold.prior.shift_head.weight, prior_before)
    ratios = RecordLearningRates.ratios
    assert len(ratios) == 4 and set(ratios[0].values()) == {1.0}
    for step in ratios:  # the same cosine factor of each group's own lr
        assert len({round(ratio, 9) for ratio in step.values()}) == 1, step
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    groups = trainer.optimizers[0].param_groups
    bases = {group["name"]: base for group, base in zip(groups, scheduler.base_lrs)}
    assert bases["transport_operators"] == pytest.approx(1e-2 * 6 / 256)  # per 256, batch 6
    assert bases["coefficient_networks"] == pytest.approx(5e-5 * 6 / 256)


def test_every_group_warms_up_linearly_from_zero(clamp_cfg_factory):
    """solo-learn's warmup_cosine with warmup_start_lr 0 starts every group (the operators and
    the coefficient networks too) at 0 and reaches each group's own lr after the warm-up."""
    from lightning.pytorch import Callback, Trainer
    from torch.utils.data import DataLoader

    seen: list[dict[str, float]] = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, *_):
            seen.append({g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups})

    cfg = tiny_cfg(clamp_cfg_factory, transop_lr=1e-2, vi_lr=1e-3)
    cfg.scheduler = {"name": "warmup_cosine", "warmup_epochs": 1, "warmup_start_lr": 0.0}
    cfg.max_epochs = 2
    model = methods()["manifoldclr"](cfg)
    images = [(i, [torch.randn(3, 16, 16), torch.randn(3, 16, 16)], i % 3) for i in range(24)]
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
    )
    trainer.fit(model, DataLoader(images, batch_size=6))
    assert len(seen) == 8  # 4 steps per epoch, the first epoch warms up
    assert all(lr == 0.0 for lr in seen[0].values())
    base = {
        g["name"]: b
        for g, b in zip(
            trainer.optimizers[0].param_groups, trainer.lr_scheduler_configs[0].scheduler.base_lrs
        )
    }
    assert base["transport_operators"] == pytest.approx(1e-2 * 6 / 256)
    # linear over the warm-up's 4 steps (solo-learn's scheduler: step k of 4 at k/3 of the lr)
    for step, fraction in ((1, 1 / 3), (2, 2 / 3), (3, 1.0)):
        for name, lr in seen[step].items():
            assert lr == pytest.approx(base[name] * fraction, rel=1e-6), (step, name)


def test_block_dim_must_divide_the_backbone_width(clamp_cfg_factory):
    with pytest.raises(ValueError, match=r"block_dim=48 must divide .* \(128 for wide_resnet"):
        methods()["manifoldclr"](tiny_cfg(clamp_cfg_factory, block_dim=48))


def test_wrong_number_of_crops_is_reported(clamp_cfg_factory):
    model = methods()["manifoldclr"](tiny_cfg(clamp_cfg_factory))
    quiet(model)
    with pytest.raises(ValueError, match="3 crops per image but ManifoldCLR uses exactly 2"):
        model.training_step(make_batch(crops=3), 0)


def test_non_finite_loss_names_the_step(clamp_cfg_factory):
    model = methods()["manifoldclr"](tiny_cfg(clamp_cfg_factory))
    quiet(model)
    with torch.no_grad():
        model.projector[-1].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"global step 0 .*Lower optimizer.lr"):
        model.training_step(make_batch(), 0)
