"""CLAMP inside the real solo-learn: registration, configs, training step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import solo_clamp
from solo_clamp.configs import config_dir
from solo_clamp.configs.compose import compose_config

PRETRAIN_CONFIGS = sorted(  # CLAMP's: ManifoldCLR's are in test_manifoldclr_method.py and the
    # SimCLR baseline's report in test_main_job_report.py
    p
    for p in config_dir("pretrain").glob("*/*.yaml")
    if not p.name.startswith(("manifoldclr", "simclr"))
)
LINEAR_CONFIGS = sorted(p for p in config_dir("linear").glob("*/*.yaml"))


def compose(path: Path, kind: str, *overrides: str):
    return compose_config(kind, str(path.parent), path.name, overrides)


def test_clamp_is_registered_idempotently():
    from solo.methods import METHODS

    clamp = solo_clamp.register()
    assert METHODS["clamp"] is clamp
    assert solo_clamp.register() is clamp is METHODS["clamp"]
    assert METHODS["clamp"].__name__ == "CLAMP"


def test_shipped_configs_exist():
    names = {f"{p.parent.name}/{p.name}" for p in PRETRAIN_CONFIGS}
    assert {
        "mnist/clamp.yaml",
        "cifar/clamp.yaml",
        "imagenet-100/clamp.yaml",
        "imagenet-100/clamp_8views.yaml",
        "imagenet/clamp.yaml",
    } <= names


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_pretrain_config_composes_and_builds_the_model(path, tmp_path, clamp_method):
    from solo.args.pretrain import parse_cfg

    from solo_clamp.training.common import parse_solo_cfg

    cfg = compose(
        path,
        "pretrain",
        f"data.train_path={tmp_path}",
        "data.val_path=null",
        "data.format=image_folder",
    )
    cfg.pop("prepare_data", None)
    cfg = parse_solo_cfg(cfg, parse_cfg)
    model = clamp_method(cfg)
    views = sum(aug.num_crops for aug in cfg.augmentations)
    assert model.num_views == views >= 4
    linears = [m for m in model.projector if isinstance(m, torch.nn.Linear)]
    assert len(linears) == cfg.method_kwargs.proj_hidden_layers + 1
    assert linears[-1].out_features == cfg.method_kwargs.proj_output_dim
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.projector)
    names = [group["name"] for group in model.learnable_params]
    assert names == ["backbone", "classifier", "projector"]
    if path.parent.name == "cifar":
        assert isinstance(model.backbone.maxpool, torch.nn.Identity)  # CIFAR stem


@pytest.mark.parametrize("path", LINEAR_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_linear_config_composes(path, tmp_path):
    key = "pretrained_checkpoint" if path.name == "knn.yaml" else "pretrained_feature_extractor"
    cfg = compose(path, "linear", f"++{key}=x", f"data.train_path={tmp_path}")
    assert cfg.data.train_path and cfg.data.val_path
    if key == "pretrained_feature_extractor" and path.name != "few_label.yaml":  # no LinearModel
        from solo.args.linear import parse_cfg
        from solo.methods.linear import LinearModel

        from solo_clamp.backbones import build_backbone, spec_from_cfg
        from solo_clamp.training.common import parse_solo_cfg

        (tmp_path / "class_a").mkdir()
        cfg.data.format = "image_folder"
        cfg = parse_solo_cfg(cfg, parse_cfg)
        model = LinearModel(build_backbone(spec_from_cfg(cfg)), cfg=cfg)
        assert model.classifier.out_features == cfg.data.num_classes


def make_batch(num_large: int, batch: int, small: int = 0, classes: int = 3):
    crops = [torch.randn(batch, 3, 32, 32) for _ in range(num_large)]
    crops += [torch.randn(batch, 3, 16, 16) for _ in range(small)]
    return [torch.arange(batch), crops, torch.arange(batch) % classes]


@pytest.mark.parametrize("joint", [True, False])
def test_training_step_gives_finite_loss_and_gradients(clamp_cfg_factory, clamp_method, joint):
    torch.manual_seed(0)
    cfg = clamp_cfg_factory(num_views=4, batch_size=6, joint_forward=joint)
    model = clamp_method(cfg)
    logged = {}
    model.log = lambda name, value, **_: logged.__setitem__(name, value)
    model.log_dict = lambda values, **_: logged.update(values)
    loss = model.training_step(make_batch(4, 6), 0)
    assert torch.isfinite(loss)
    loss.backward()
    for name in ("backbone", "projector", "classifier"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
        assert all(torch.isfinite(g).all() for g in grads if g is not None)
    for key in (
        "train_clamp_loss",
        "train_clamp_mean_radius",
        "train_clamp_neighbours",
        "train_clamp_centroid_distance",
        "train_clamp_overlap_fraction",
        "train_class_loss",
        "train_acc1",
    ):
        assert key in logged


def test_joint_forward_feeds_every_large_view_to_classifier_and_knn(
    clamp_cfg_factory, clamp_method
):
    cfg = clamp_cfg_factory(num_views=4, batch_size=5)
    cfg.knn_eval = {"enabled": True, "k": 3, "distance_func": "cosine"}
    cfg.data.num_large_crops, cfg.data.num_small_crops = 3, 1
    cfg.augmentations = [{"crop_size": 32, "num_crops": 3}, {"crop_size": 16, "num_crops": 1}]
    model = clamp_method(cfg)
    model.log = model.log_dict = lambda *a, **k: None
    seen = []
    classify = model.classifier.forward
    model.classifier.forward = lambda x: seen.append(x.shape[0]) or classify(x)
    loss = model.training_step(make_batch(3, 5, small=1), 0)
    assert torch.isfinite(loss) and model.num_views == 4
    assert seen == [15]  # 3 large views x 5 images, small crops excluded as in solo-learn
    assert torch.cat(model.knn.train_features).shape[0] == 15
    assert torch.cat(model.knn.train_targets).tolist() == (torch.arange(5) % 3).repeat(3).tolist()


def test_joint_and_per_crop_forward_agree_without_batchnorm_coupling(
    clamp_cfg_factory, clamp_method
):
    """In eval mode BatchNorm uses running stats, so both forwards give the same loss."""
    torch.manual_seed(1)
    cfg = clamp_cfg_factory(num_views=4, batch_size=6)
    model = clamp_method(cfg).eval()
    model.log = model.log_dict = lambda *a, **k: None
    batch = make_batch(4, 6)
    joint = model.training_step(batch, 0)
    model.joint_forward = False
    per_crop = model.training_step(batch, 0)
    assert joint.item() == pytest.approx(per_crop.item(), rel=1e-4)


def test_non_finite_embeddings_name_the_step_and_suggest_a_fix(clamp_cfg_factory, clamp_method):
    cfg = clamp_cfg_factory(num_views=2, batch_size=4)
    model = clamp_method(cfg)
    model.log = model.log_dict = lambda *a, **k: None
    with torch.no_grad():
        model.projector[-1].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"global step 0 .*Lower optimizer.lr"):
        model.training_step(make_batch(2, 4), 0)


def test_wrong_number_of_crops_is_reported(clamp_cfg_factory, clamp_method):
    model = clamp_method(clamp_cfg_factory(num_views=4, batch_size=4))
    with pytest.raises(ValueError, match="3 crops per image but the config asks for 4"):
        model.training_step(make_batch(3, 4), 0)


def test_unknown_backbone_is_rejected_early(tmp_path):
    from omegaconf import OmegaConf

    from solo_clamp.training.checks import preflight

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    cfg = OmegaConf.create(
        {
            "method": "clamp",
            "backbone": {"name": "resnet9000"},
            "method_kwargs": {"proj_hidden_dim": 8, "proj_output_dim": 4, "rs": 7.0},
            "data": {"dataset": "custom", "train_path": str(tmp_path)},
            "augmentations": [{"crop_size": 32, "num_crops": 4}],
            "optimizer": {"batch_size": 4},
        }
    )
    with pytest.raises(ValueError, match=r"backbone.name must be one of \[.*'resnet18'"):
        preflight(cfg)
