"""``solo-clamp few-label`` end to end: a tiny ManifoldCLR run probed with 2 labelled images per
class, with and without its prior's feature augmentation; a CLAMP checkpoint refused."""

from __future__ import annotations

import json

import pytest
import torch
from clamp_testing import tiny_pretrain_overrides

from solo_clamp.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_MANIFOLDCLR = [
    "max_epochs=1",
    "method_kwargs.dictionary_size=4",
    "method_kwargs.block_dim=16",
    "method_kwargs.vi_hidden_dim=8",
    "method_kwargs.prior_warmup_steps=2",
    "method_kwargs.max_elbo_samples=1",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory, image_folder_writer):
    root = tmp_path_factory.mktemp("few_label")
    return {
        "root": root,
        "train": image_folder_writer(root / "train", classes=4, per_class=4, size=16),
        "val": image_folder_writer(root / "val", classes=4, per_class=3, size=16, seed=1),
    }


def pretrain(data, config_name: str, *extra: str):
    checkpoints = data["root"] / config_name.split(".")[0]
    overrides = tiny_pretrain_overrides(data["train"], checkpoints, *extra)
    assert (
        main(["pretrain", "--config-path", "mnist", "--config-name", config_name, *overrides]) == 0
    )
    (run,) = [path for path in checkpoints.glob("*/*") if path.is_dir()]
    return run


@pytest.fixture(scope="module")
def manifoldclr_run(data):
    return pretrain(data, "manifoldclr.yaml", *TINY_MANIFOLDCLR)


def few_label(data, run, *extra: str) -> int:
    return main(
        [
            "few-label",
            f"pretrained_feature_extractor={run}",
            "~prepare_data",
            f"data.train_path={data['train']}",
            f"data.val_path={data['val']}",
            "backbone.name=wide_resnet28w2",
            "data.augmentations.crop_size=16",
            "data.num_workers=0",
            "batch_size=8",
            "labels.per_class=2",
            "draws=2",
            "probe.epochs=5",
            f"output_dir={data['root'] / 'few_label_runs'}",
            *extra,
        ]
    )


def reports(data) -> list[dict]:
    paths = sorted(
        (data["root"] / "few_label_runs").glob("*/few_label.json"),
        key=lambda path: path.stat().st_mtime,
    )
    return [json.loads(path.read_text()) for path in paths]


def test_few_label_with_and_without_feature_augmentation(data, manifoldclr_run, capsys):
    assert few_label(data, manifoldclr_run) == 0
    assert few_label(data, manifoldclr_run, "feature_augment.samples=3") == 0
    out = capsys.readouterr().out
    assert "2 labelled images per class (8 in all), 2 draws (seeds 0-1)" in out
    assert "+ 3 prior samples per labelled image as extra labelled features" in out
    assert "raw pixels" in out
    plain, augmented = reports(data)[-2:]
    assert set(plain["results"]) == {"backbone", "raw_pixels", "untrained"}
    assert set(augmented["results"]) == {
        "backbone",
        "backbone_feature_augment",
        "raw_pixels",
        "untrained",
    }
    for row in augmented["results"].values():
        assert len(row["per_draw"]) == 2 and all(0 <= v <= 100 for v in row["per_draw"])
        assert row["mean"] == pytest.approx(sum(row["per_draw"]) / 2)
    # Same seeds, same draws and probes: the runs agree on everything but the augmentation.
    for key in ("backbone", "raw_pixels", "untrained"):
        assert plain["results"][key] == augmented["results"][key]
    assert plain["labelled"] == augmented["labelled"] and len(plain["labelled"][0]) == 8
    assert plain["labelled"][0] != plain["labelled"][1]
    assert augmented["method"] == "manifoldclr" and augmented["evaluation_images"] == 12
    assert augmented["feature_augment"] == {"samples": 3, "threshold": 0.01}


# -- the paper's semi-supervised protocol (protocol=semi_supervised) ----------------------------

SEMI = [
    "protocol=semi_supervised",
    "semi_supervised.trials=2",
    "semi_supervised.iterations=4",
    "semi_supervised.hidden_dim=16",
    "semi_supervised.labelled_batch=4",
    "semi_supervised.unlabelled_batch=4",
]


def test_the_semi_supervised_protocol_with_and_without_the_prior(data, manifoldclr_run, capsys):
    assert few_label(data, manifoldclr_run, *SEMI) == 0
    out = capsys.readouterr().out
    assert "protocol: 2 labelled images per class (8 in all) and 8 unlabelled" in out
    assert "2 trials (seeds 0-1), 4 iterations (official 10000)" in out
    report = reports(data)[-1]
    assert report["protocol"] == "semi_supervised" and report["arms"] == ["none", "prior"]
    assert report["unlabelled_images"] == 8 and report["trials"] == 2
    assert set(report["results"]) == {"backbone", "backbone_prior", "raw_pixels", "untrained"}
    assert (
        "prior samples T(c) z of unlabelled" in report["results"]["backbone_prior"]["description"]
    )
    for row in report["results"].values():
        assert len(row["per_draw"]) == 2 and all(0 <= v <= 100 for v in row["per_draw"])
    settings = report["settings"]
    assert settings["iterations"] == 4 and settings["ema"] == pytest.approx(0.0)  # 1 - 10/4 < 0
    assert settings["soft_threshold"] is False
    assert len(report["labelled"]) == 2 and len(report["labelled"][0]) == 8


def test_the_semi_supervised_protocol_refuses_what_it_cannot_do(data, manifoldclr_run, capsys):
    assert few_label(data, manifoldclr_run, *SEMI, "feature_augment.samples=3") == 2
    assert "is the linear probe's (prior samples as extra labelled" in capsys.readouterr().err
    untrained = ["pretrained_feature_extractor=null", "semi_supervised.augmentations=[prior]"]
    assert few_label(data, manifoldclr_run, *SEMI, *untrained) == 2
    err = capsys.readouterr().err
    assert "semi_supervised.augmentations with prior draws features from" in err
    assert "set semi_supervised.augmentations=[none]" in err
    assert few_label(data, manifoldclr_run, "protocol=fixmatch") == 2
    assert "protocol must be one of ['linear_probe', 'semi_supervised']" in capsys.readouterr().err


def test_the_untrained_backbone_gets_the_no_augmentation_arm_only(data, manifoldclr_run, capsys):
    args = [*SEMI, "pretrained_feature_extractor=null", "floors=[]"]
    assert few_label(data, manifoldclr_run, *args) == 0
    report = reports(data)[-1]
    assert report["arms"] == ["none"] and set(report["results"]) == {"backbone"}
    assert report["notes"] and "no prior arm" in report["notes"][0]


def test_the_augmenter_is_the_checkpoints_operators_and_prior(manifoldclr_run):
    from solo_clamp.backbones import resolve_backbone
    from solo_clamp.training.feature_augment import load_feature_augmenter

    augmenter = load_feature_augmenter(resolve_backbone(manifoldclr_run))
    (checkpoint,) = manifoldclr_run.glob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    manifold = augmenter.manifold
    torch.testing.assert_close(manifold.transport.psi, state["manifold.transport.psi"])
    torch.testing.assert_close(
        manifold.prior.shift_head.weight, state["manifold.prior.shift_head.weight"]
    )
    assert not manifold.training


def test_feature_augmentation_of_a_clamp_checkpoint_is_refused(data, capsys):
    run = pretrain(data, "clamp.yaml", "max_epochs=1")
    assert few_label(data, run, "feature_augment.samples=3") == 2
    err = capsys.readouterr().err
    assert "solo-clamp few-label: error: feature_augment.samples=3" in err
    assert "pretrained with method 'clamp', which has no transport operators" in err


# -- which methods may augment: read from their facts ------------------------------------------


def test_feature_augmentation_of_a_clamp_checkpoint_is_refused_by_its_facts():
    from solo_clamp.training.feature_augment import check_feature_augment

    with pytest.raises(ValueError) as err:
        check_feature_augment(20, "clamp", "runs/clamp/last.ckpt")
    message = str(err.value)
    assert message.startswith("feature_augment.samples=20")
    assert (
        "runs/clamp/last.ckpt was pretrained with method 'clamp', which has no transport operators"
        in message
        and "set feature_augment.samples=0" in message
    )


@pytest.mark.parametrize(
    "method, origin, reason",
    [
        (None, "null", "the untrained backbone has no transport operators"),
        ("manifoldclr", "zoo:manifoldclr-mnist-resnet18", "holds the backbone's weights only"),
    ],
)
def test_feature_augmentation_without_operators_is_refused(method, origin, reason):
    from solo_clamp.training.feature_augment import check_feature_augment

    with pytest.raises(ValueError, match=f"feature_augment.samples=1 .*{reason}"):
        check_feature_augment(1, method, origin)


def test_feature_augmentation_is_allowed_for_manifoldclr_runs_or_when_off():
    from solo_clamp.training.feature_augment import check_feature_augment

    check_feature_augment(5, "manifoldclr", "runs/manifoldclr/last.ckpt")
    check_feature_augment(0, "clamp", "runs/clamp/last.ckpt")
    check_feature_augment(0, None, "null")


def test_the_c_zero_ablation_has_no_prior_to_augment_with(data, capsys, tmp_path):
    ablation = pretrain(
        {**data, "root": tmp_path},
        "manifoldclr.yaml",
        *TINY_MANIFOLDCLR,
        "method_kwargs.use_operators=false",
    )
    assert few_label(data, ablation, "feature_augment.samples=3", "floors=[]") == 2
    err = capsys.readouterr().err
    assert "has no trained feature augmentation (an ablation whose method_kwargs" in err
    assert few_label(data, ablation, *SEMI, "floors=[]") == 0
    report = reports(data)[-1]
    assert report["arms"] == ["none"] and "no prior arm" in report["notes"][0]
