"""``solo-clamp geometry`` end to end on a tiny CLAMP checkpoint (needs solo-learn)."""

from __future__ import annotations

import csv
import json

import pytest
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from solo_clamp.cli import main  # noqa: E402


@pytest.fixture
def tiny_checkpoint(tmp_path, clamp_cfg_factory):
    """A solo-learn-layout run folder: run/clamp.ckpt, run/args.json, run/metrics.csv."""
    from solo.methods import METHODS

    import solo_clamp.methods  # noqa: F401 - registers METHODS["clamp"]

    cfg = clamp_cfg_factory(num_views=2, batch_size=4, crop_size=32)
    torch.manual_seed(1)
    model = METHODS["clamp"](cfg)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": model.state_dict(), "epoch": 2}, run / "clamp.ckpt")
    (run / "args.json").write_text(json.dumps(OmegaConf.to_container(cfg)))
    with (run / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "epoch",
                "step",
                "train_clamp_neighbours_epoch",
                "train_clamp_mean_radius_epoch",
                "train_acc1_epoch",
            ]
        )
        for epoch, (neighbours, radius) in enumerate([(3.0, 5.2), (2.0, 4.9), (1.5, 4.7)]):
            writer.writerow([epoch, 10 * epoch + 5, "", "", "40"])  # a row without CLAMP stats
            writer.writerow([epoch, 10 * epoch + 9, neighbours, radius, ""])
    return run / "clamp.ckpt"


def test_geometry_writes_figures_and_sane_json(tmp_path, tiny_checkpoint, image_folder):
    out = tmp_path / "out"
    code = main(
        [
            "geometry",
            str(tiny_checkpoint),
            "--data",
            str(image_folder),
            "--out",
            str(out),
            "--max-images",
            "12",
            "--invariance-images",
            "6",
            "--views",
            "2",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads((out / "geometry.json").read_text())
    assert {
        "training_curves",
        "unaugmented",
        "submanifolds",
        "invariance",
        "figures",
        "notes",
    } <= set(result)
    assert result["num_images"] == 12 and result["view_images"] == 6
    assert result["num_classes"] == 3 and result["views"] == 2
    assert result["normalization"]["source"] == "imagenet"
    assert result["rs"] == 7.0 and result["max_range"] == 1.5

    # metrics.csv found beside the checkpoint; rows without CLAMP statistics are ignored
    curves = result["training_curves"]
    assert curves["epoch"] == [0, 1, 2]
    assert curves["neighbours"] == [3.0, 2.0, 1.5]
    assert curves["mean_radius"] == [5.2, 4.9, 4.7]

    backbone = result["unaugmented"]["backbone"]
    assert 1.0 <= backbone["participation_ratio"] <= 11.0  # at most N - 1
    assert backbone["class_radius_mean"] > 0 and backbone["class_separation_mean"] > 0
    for name in ("trained", "untrained"):
        stats = result["submanifolds"][name]["projector"]
        assert stats["mean_radius"] > 0
        assert 0.0 <= stats["neighbours_mean"] <= 5.0  # at most view_images - 1
        assert 0.0 <= stats["orientation_similarity_mean"] <= 1.0
        assert -1.0 <= stats["centroid_similarity_mean"] <= 1.0
        assert 0.0 <= stats["own_centroid_fraction"] <= 1.0
        assert result["submanifolds"][name]["backbone"]["centroid_distance_mean"] > 0

    invariance = result["invariance"]
    assert invariance["strengths"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for key in ("backbone", "projector"):
        values = invariance[key]
        assert len(values) == 5 and all(0.0 <= v <= 1.0 for v in values)
        assert values[0] == pytest.approx(0.0, abs=1e-6)  # s = 0: every view is the same
        assert values[-1] > 0.0

    expected = {
        "training_curves.png",
        "centroid_distances.png",
        "similarities.png",
        "tsne.png",
        "invariance.png",
    }
    assert set(result["figures"]) == expected
    for name in expected:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_logs_without_clamp_columns_are_skipped_with_a_note(tmp_path):
    from solo_clamp.geometry.stats import read_curves
    from solo_clamp.methods import CLAMP

    logs = tmp_path / "metrics.csv"
    logs.write_text("epoch,step,train_acc1_epoch\n0,9,40\n")
    curves, note = read_curves(logs, CLAMP.facts.curve_keys)
    assert curves is None
    assert "train_clamp_neighbours_epoch" in note and "curves skipped" in note


def test_missing_checkpoint_exits_2_with_a_clear_message(tmp_path, image_folder, capsys):
    missing = tmp_path / "nope.ckpt"
    code = main(["geometry", str(missing), "--data", str(image_folder)])
    assert code == 2
    err = capsys.readouterr().err
    assert "solo-clamp geometry: error: checkpoint not found" in err
    assert str(missing) in err


def test_mismatched_weights_exit_2(tmp_path, tiny_checkpoint, image_folder, capsys):
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, tiny_checkpoint)
    code = main(
        [
            "geometry",
            str(tiny_checkpoint),
            "--data",
            str(image_folder),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "do not match the architecture" in capsys.readouterr().err


def test_missing_args_json_exits_2(tmp_path, tiny_checkpoint, image_folder, capsys):
    (tiny_checkpoint.parent / "args.json").unlink()
    code = main(["geometry", str(tiny_checkpoint), "--data", str(image_folder)])
    assert code == 2
    assert "no args.json beside the checkpoint" in capsys.readouterr().err


@pytest.fixture
def manifoldclr_checkpoint(tmp_path, clamp_cfg_factory):
    """A tiny ManifoldCLR run folder (run/manifoldclr.ckpt, run/args.json), no metrics.csv."""
    from solo.methods import METHODS

    import solo_clamp

    solo_clamp.register()
    cfg = clamp_cfg_factory(num_views=2, batch_size=4, crop_size=32)
    cfg.method = "manifoldclr"
    cfg.method_kwargs = {
        "proj_hidden_dim": 32,
        "proj_output_dim": 16,
        "dictionary_size": 4,
        "block_dim": 16,
        "vi_hidden_dim": 8,
    }
    torch.manual_seed(1)
    model = METHODS["manifoldclr"](cfg)
    run = tmp_path / "manifoldclr-run"
    run.mkdir()
    torch.save({"state_dict": model.state_dict(), "epoch": 0}, run / "manifoldclr.ckpt")
    (run / "args.json").write_text(json.dumps(OmegaConf.to_container(model.cfg)))
    return run / "manifoldclr.ckpt"


def test_geometry_of_a_manifoldclr_checkpoint(tmp_path, manifoldclr_checkpoint, image_folder):
    out = tmp_path / "out"
    code = main(
        [
            "geometry",
            str(manifoldclr_checkpoint),
            "--data",
            str(image_folder),
            "--out",
            str(out),
            "--max-images",
            "12",
            "--invariance-images",
            "6",
            "--views",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads((out / "geometry.json").read_text())
    assert result["method"] == "manifoldclr"
    assert result["rs"] == 1.0 and result["max_range"] is None  # no rs: unscaled, no cap
    assert any("has no radius scale" in note for note in result["notes"])
    assert result["training_curves"] is None  # no metrics.csv beside the checkpoint
    for name in ("trained", "untrained"):
        stats = result["submanifolds"][name]["projector"]
        assert stats["mean_radius"] > 0 and 0.0 <= stats["neighbours_mean"] <= 5.0
        assert result["submanifolds"][name]["backbone"]["centroid_distance_mean"] > 0
    assert result["unaugmented"]["backbone"]["class_radius_mean"] > 0
    assert result["invariance"]["projector"][0] == pytest.approx(0.0, abs=1e-6)
    assert result["invariance"]["projector"][-1] > 0.0
    # its transport check: views from the report's own crops (augmentations[0] incomplete), and
    # a note that data.train_path ("unused") could not be checked against --data
    check = result["transport_check"]
    assert check["images"] == 12 and check["left_out_training_images"] is None
    assert "augmentations[0] is incomplete" in check["views"]
    assert any("could not be checked for training images" in n for n in result["notes"])


def test_geometry_refuses_an_unknown_method(tmp_path, tiny_checkpoint, image_folder, capsys):
    args = tiny_checkpoint.parent / "args.json"
    args.write_text(json.dumps({**json.loads(args.read_text()), "method": "nope"}))
    code = main(
        [
            "geometry",
            str(tiny_checkpoint),
            "--data",
            str(image_folder),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "method='nope' is not a solo-learn method; known: [" in capsys.readouterr().err


# -- the held-out transport check of a run with transport operators ---------------------------

PAIR_AUGMENTATION = {
    "rrc": {"enabled": True, "crop_min_scale": 0.4, "crop_max_scale": 1.0},
    "color_jitter": {
        "prob": 0.8,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.0,
        "hue": 0.0,
    },
    "grayscale": {"prob": 0.0},
    "gaussian_blur": {"prob": 0.2},
    "solarization": {"prob": 0.0},
    "equalization": {"prob": 0.0},
    "horizontal_flip": {"prob": 0.0},
    "crop_size": 16,
    "num_crops": 2,
}


def manifoldclr_run(tmp_path, clamp_cfg_factory, train_path, **method_kwargs):
    """A ManifoldCLR run folder (untrained weights, trained on ``train_path``)."""
    from solo.methods import METHODS

    import solo_clamp.methods  # noqa: F401 - registers METHODS["manifoldclr"]

    cfg = clamp_cfg_factory(
        num_views=2, batch_size=4, backbone="wide_resnet28w2", crop_size=16, train_path=train_path
    )
    cfg.method = "manifoldclr"
    cfg.augmentations = [PAIR_AUGMENTATION]
    cfg.method_kwargs = {
        "proj_hidden_dim": 16,
        "proj_output_dim": 8,
        "dictionary_size": 4,
        "block_dim": 16,
        "vi_hidden_dim": 8,
        "prior_warmup_steps": 0,
        "normalize_transport": True,
        **method_kwargs,
    }
    cfg = METHODS["manifoldclr"].add_and_assert_specific_cfg(cfg)
    torch.manual_seed(2)
    model = METHODS["manifoldclr"](cfg)
    run = tmp_path / "mclr_run"
    run.mkdir()
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, run / "manifoldclr.ckpt")
    (run / "args.json").write_text(json.dumps(OmegaConf.to_container(cfg)))
    return run, model


def geometry(run, data, out, *extra):
    return main(
        [
            "geometry",
            str(run),
            "--data",
            str(data),
            "--out",
            str(out),
            "--max-images",
            "12",
            "--invariance-images",
            "4",
            "--views",
            "2",
            "--device",
            "cpu",
            "--no-progress",
            *extra,
        ]
    )


def test_the_held_out_transport_check_of_a_manifoldclr_run(
    tmp_path, clamp_cfg_factory, image_folder_factory, capsys
):
    train = image_folder_factory("train", classes=3, per_class=4)
    data = image_folder_factory("held_out", classes=3, per_class=4, seed=1)
    for k in range(3):  # two training images per class in --data: left out of the check
        for i in range(2):
            (data / f"class_{k}" / f"train_{i}.png").symlink_to(
                train / f"class_{k}" / f"img_{i}.png"
            )
    run, model = manifoldclr_run(tmp_path, clamp_cfg_factory, str(train))
    out = tmp_path / "out"
    assert geometry(run, data, out, "--max-images", "18") == 0
    printed = capsys.readouterr().out
    assert "held-out transport check (12 images" in printed
    result = json.loads((out / "geometry.json").read_text())
    check = result["transport_check"]
    assert check == json.loads((out / "transport_check.json").read_text())
    assert check["images"] == 12 and check["left_out_training_images"] == 6
    assert check["pairs"] == 12 and check["normalized"] is True
    rows = check["rows"]
    assert list(rows) == [
        "identity",
        "scalar_global",
        "scalar_per_pair",
        "posterior",
        "posterior_location",
        "shuffled",
        "mean_c",
        "prior",
    ]
    assert rows["identity"]["error_ratio"] == pytest.approx(1.0)
    assert rows["identity"]["angular_ratio"] == pytest.approx(1.0)
    # unit views: the best scalar's angle is the identity's, its error no larger
    assert rows["scalar_per_pair"]["angular_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert rows["scalar_per_pair"]["error_ratio"] <= 1.0 + 1e-9
    for row in rows.values():
        assert row["error_ratio"] >= 0 and row["angular_ratio"] >= 0
    intervals = check["intervals"]  # every ratio's bootstrap interval, printed
    assert list(intervals["rows"]) == list(rows)[1:]
    for name, row in intervals["rows"].items():
        value, low, high = row["error_ratio"]
        assert value == pytest.approx(rows[name]["error_ratio"]) and low <= value <= high
    assert len(intervals["differences"]) == 2 * 6  # each learned row minus each control
    assert "posterior_location - scalar_per_pair" in intervals["differences"]
    assert "learned row minus control (95 % bootstrap over pairs" in printed
    generators = check["generators"]
    psi = model.manifold.transport.psi.detach()
    assert len(generators["norm_per_generator"]) == 4
    assert generators["norm_per_generator"][0] == pytest.approx(psi[0].norm().item(), rel=1e-5)
    assert len(check["coefficients"]["posterior_usage"]) == 4
    neighbours = check["prior_neighbours"]
    assert neighbours["images"] == 12 and neighbours["samples"] == 8
    for key in ("unaugmented", "prior", "equal_norm_noise"):
        assert 0.0 <= neighbours[key] <= 1.0
    assert any("6 of the 18 images of --data are in the run's" in n for n in result["notes"])


def test_no_transport_check_for_the_c_zero_ablation_nor_for_clamp(
    tmp_path, clamp_cfg_factory, image_folder_factory, tiny_checkpoint
):
    data = image_folder_factory("held_out", classes=3, per_class=4, seed=1)
    run, _ = manifoldclr_run(tmp_path, clamp_cfg_factory, "not/here", use_operators=False)
    assert geometry(run, data, tmp_path / "ablation") == 0
    result = json.loads((tmp_path / "ablation" / "geometry.json").read_text())
    assert result["transport_check"] is None
    assert any("transport operators are off" in note for note in result["notes"])
    assert not (tmp_path / "ablation" / "transport_check.json").exists()
    assert geometry(tiny_checkpoint, data, tmp_path / "clamp") == 0
    assert json.loads((tmp_path / "clamp" / "geometry.json").read_text())["transport_check"] is None


def test_the_transport_check_repeats_exactly(tmp_path, clamp_cfg_factory, image_folder_factory):
    """The views are seeded, Python's generator included (solo-learn's blur draws its sigma
    from it): two checks of one run from different generator states agree bit for bit."""
    import random

    train = image_folder_factory("train", classes=3, per_class=4)
    data = image_folder_factory("held_out", classes=3, per_class=4, seed=1)
    run, _ = manifoldclr_run(tmp_path, clamp_cfg_factory, str(train))
    checks = []
    for attempt in range(2):
        random.seed(100 + attempt)
        out = tmp_path / f"out{attempt}"
        assert geometry(run, data, out, "--max-images", "12") == 0
        checks.append((out / "transport_check.json").read_text())
    assert checks[0] == checks[1]
