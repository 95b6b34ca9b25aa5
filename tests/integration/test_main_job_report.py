"""The main job's report: CLAMP next to its two floors (the same backbone at initialisation and
raw pixels), all measured the same way, on a validation split drawn from training images."""

from __future__ import annotations

import json

import pytest
import torch

solo = pytest.importorskip("solo", reason="solo-learn is not installed: integration tier skipped")

from solo_clamp.cli import main  # noqa: E402
from solo_clamp.evaluation import (  # noqa: E402
    eval_transform,
    extract_features,
    image_folder_loader,
    knn_accuracy,
)
from solo_clamp.training.pretrain_report import format_knn_report  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

# the main-job config with real data preparation and report, shrunk as in clamp_testing.py
TINY = [
    "max_epochs=1",
    "data.num_workers=0",
    "optimizer.batch_size=4",
    "method_kwargs.proj_hidden_dim=32",
    "method_kwargs.proj_output_dim=16",
    "augmentations.0.crop_size=16",
    "backbone.name=wide_resnet28w2",
    "evaluate.knn.k=5",
    "evaluate.knn.batch_size=16",
]


def test_report_gives_clamp_untrained_and_raw_pixels(mnist_source, tmp_path, capsys):
    datasets = tmp_path / "datasets"
    assert (
        main(
            [
                "pretrain",
                f"prepare_data.source={mnist_source}",
                f"prepare_data.root={datasets}",
                "prepare_data.train_per_class=2",
                "prepare_data.val_per_class=2",
                "prepare_data.val_from=train",
                f"checkpoint.dir={tmp_path / 'trained_models'}",
                *TINY,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    (run,) = (tmp_path / "trained_models" / "clamp").iterdir()
    report = json.loads((run / "knn.json").read_text())
    assert report["split"] == "validation"
    assert report["train_images"] == 20 and report["test_images"] == 20
    assert (report["k"], report["temperature"], report["distance"]) == (5, 0.07, "cosine")
    for name in ("clamp", "untrained", "raw_pixels"):
        assert 0 <= report[f"{name}_knn_top1"] <= report[f"{name}_knn_top5"] <= 100
    for name in ("clamp", "untrained"):  # the collapse check's measures, on the 20 bank images
        assert -1 <= report[f"{name}_mean_cosine"] <= 1
        assert 1 <= report[f"{name}_effective_rank"] <= 20
    assert report["seed"] == 5
    assert report["floors_beaten"] == [
        floor
        for floor in ("raw_pixels", "untrained")  # evaluation.FLOORS
        if report["clamp_knn_top1"] > report[f"{floor}_knn_top1"]
    ]
    assert format_knn_report(report, "clamp", "CLAMP") in out
    assert "CLAMP" in out and "untrained backbone" in out and "raw pixels" in out

    # raw pixels measured the same way: the normalised 16-px evaluation image, flattened
    (prepared,) = datasets.iterdir()
    transform = eval_transform(16, [0.1307] * 3, [0.3081] * 3)
    bank, held_out = (
        extract_features(torch.nn.Flatten(), image_folder_loader(prepared / split, transform))
        for split in ("train", "val")
    )
    assert bank[0].shape == (20, 3 * 16 * 16)
    top1, _ = knn_accuracy(*bank, *held_out, k=5, temperature=0.07, distance="cosine")
    assert report["raw_pixels_knn_top1"] == pytest.approx(top1)


def test_printed_verdict_names_each_floor_clamp_is_below():
    report = {
        "k": 20,
        "temperature": 0.07,
        "distance": "cosine",
        "split": "test",
        "train_images": 5000,
        "test_images": 10000,
        "clamp_knn_top1": 93.79,
        "untrained_knn_top1": 89.86,
        "raw_pixels_knn_top1": 94.69,
        "floors_beaten": ["untrained"],
        "seed": 5,
    }
    text = format_knn_report(report, "clamp", "CLAMP")
    assert "CLAMP 93.79% vs raw pixels 94.69%, untrained backbone 89.86%" in text
    assert "bank 5000 training images; training seed 5) on 10000 test images" in text
    assert "CLAMP is BELOW the raw pixels floor (-0.90 points)." in text
    assert "untrained backbone floor" not in text and "beats both" not in text

    report.update(clamp_knn_top1=95.0, floors_beaten=["raw_pixels", "untrained"])
    text = format_knn_report(report, "clamp", "CLAMP")
    assert "BELOW" not in text
    assert "CLAMP beats both floors (+0.31 points over raw pixels, " in text
    assert "+5.14 points over untrained backbone)." in text


def test_simclr_baseline_trains_and_reports_beside_the_same_floors(mnist_source, tmp_path, capsys):
    """solo-learn's SimCLR through the same program (mnist/simclr.yaml): its report has the
    same keys and floors as CLAMP's, the untrained floor being the same initial backbone."""
    datasets = tmp_path / "datasets"
    common = [
        f"prepare_data.source={mnist_source}",
        f"prepare_data.root={datasets}",
        "prepare_data.train_per_class=2",
        "prepare_data.val_per_class=2",
        "prepare_data.val_from=train",
        *TINY,
    ]
    assert (
        main(
            [
                "pretrain",
                "--config-name",
                "simclr.yaml",
                *common,
                f"checkpoint.dir={tmp_path / 'simclr'}",
            ]
        )
        == 0
    )
    assert "SimCLR" in capsys.readouterr().out
    (run,) = (tmp_path / "simclr" / "simclr").iterdir()
    simclr = json.loads((run / "knn.json").read_text())
    for name in ("simclr", "untrained", "raw_pixels"):
        assert 0 <= simclr[f"{name}_knn_top1"] <= simclr[f"{name}_knn_top5"] <= 100
    assert main(["pretrain", *common, f"checkpoint.dir={tmp_path / 'clamp'}"]) == 0
    (run,) = (tmp_path / "clamp" / "clamp").iterdir()
    clamp = json.loads((run / "knn.json").read_text())
    for floor in ("untrained", "raw_pixels"):
        assert simclr[f"{floor}_knn_top1"] == pytest.approx(clamp[f"{floor}_knn_top1"])


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("method_kwargs.temperature=0", "method_kwargs.temperature"),
        ("method_kwargs.proj_output_dim=0", "method_kwargs.proj_output_dim"),
    ],
)
def test_simclr_kwargs_errors_name_the_field(override, field):
    from omegaconf import OmegaConf

    from solo_clamp.methods import facts_of

    def cfg(kwargs, crops):
        return OmegaConf.create(
            {"method_kwargs": kwargs, "augmentations": [{"crop_size": 32, "num_crops": crops}]}
        )

    kwargs = {"proj_hidden_dim": 8, "proj_output_dim": 4, "temperature": 0.2}
    key, value = override.split("=")
    with pytest.raises(ValueError, match=field):
        facts_of("simclr").check(cfg({**kwargs, key.split(".")[1]: int(value)}, 2))
    with pytest.raises(ValueError, match="num_crops"):
        facts_of("simclr").check(cfg(kwargs, 1))


def test_the_training_seed_is_a_config_field_that_changes_the_run_and_is_reported(
    mnist_source, tmp_path
):
    """``seed`` (solo-learn's field; the main job's config states it) seeds the run: two seeds
    give other weights and other untrained floors, and each report records its seed."""
    from omegaconf import OmegaConf

    from solo_clamp.configs import config_dir

    assert OmegaConf.load(config_dir("pretrain") / "mnist" / "clamp.yaml").seed == 5
    reports, weights = {}, {}
    for seed in (3, 4):
        root = tmp_path / f"seed{seed}"
        args = [
            "pretrain",
            f"seed={seed}",
            f"prepare_data.source={mnist_source}",
            f"prepare_data.root={tmp_path / 'datasets'}",
            "prepare_data.train_per_class=2",
            "prepare_data.val_per_class=2",
            "prepare_data.val_from=train",
            f"checkpoint.dir={root}",
            *TINY,
        ]
        assert main(args) == 0
        (run,) = (root / "clamp").iterdir()
        reports[seed] = json.loads((run / "knn.json").read_text())
        (checkpoint,) = run.glob("*.ckpt")
        weights[seed] = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert [reports[seed]["seed"] for seed in (3, 4)] == [3, 4]
    first, second = (weights[seed]["state_dict"]["projector.0.weight"] for seed in (3, 4))
    assert not torch.equal(first, second)
    assert reports[3]["raw_pixels_knn_top1"] == reports[4]["raw_pixels_knn_top1"]
