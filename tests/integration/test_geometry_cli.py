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
