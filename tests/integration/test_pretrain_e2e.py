"""A real 1-epoch CPU pretrain on a generated ImageFolder, then linear and kNN evaluation of
its checkpoint with our programs and with solo-learn's own."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from solo_clamp.cli import main

TINY = [
    "max_epochs=1",
    "optimizer.batch_size=8",
    "method_kwargs.proj_hidden_dim=32",
    "method_kwargs.proj_output_dim=16",
    "data.num_workers=0",
    "augmentations.0.num_crops=3",
    "evaluate.knn.batch_size=64",
    "log_every_n_steps=1",
]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, image_folder_writer):
    write_image_folder = image_folder_writer
    root = tmp_path_factory.mktemp("e2e")
    train = write_image_folder(root / "train", classes=6, per_class=4)
    val = write_image_folder(root / "val", classes=6, per_class=2, seed=1)
    code = main(
        [
            "pretrain",
            "~prepare_data",
            f"data.train_path={train}",
            f"+evaluate.knn.train_path={train}",
            f"+evaluate.knn.val_path={val}",
            f"checkpoint.dir={root / 'trained_models'}",
            *TINY,
        ]
    )
    assert code == 0
    runs = list((root / "trained_models" / "clamp").iterdir())
    assert len(runs) == 1
    return {"root": root, "run": runs[0], "train": train, "val": val}


def test_pretrain_writes_a_solo_learn_layout_run(pretrained):
    run = pretrained["run"]
    checkpoints = list(run.glob("*.ckpt"))
    assert len(checkpoints) == 1 and checkpoints[0].name.startswith("clamp-mnist-")
    args = json.loads((run / "args.json").read_text())
    assert args["method"] == "clamp" and args["data"]["num_large_crops"] == 3
    state = torch.load(checkpoints[0], map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("backbone.") for k in state)
    assert any(k.startswith("projector.") for k in state)
    assert not list(run.glob("*.partial"))
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(r["train_clamp_loss_step"]) for r in rows if r.get("train_clamp_loss_step")]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(r.get("train_clamp_neighbours_epoch") for r in rows)
    report = json.loads((run / "knn.json").read_text())
    assert 0 <= report["clamp_knn_top1"] <= 100 and 0 <= report["untrained_knn_top1"] <= 100
    assert report["test_images"] == 12


def test_our_linear_and_knn_programs_evaluate_the_checkpoint(pretrained, capsys):
    root, run = pretrained["root"], pretrained["run"]
    paths = [f"data.train_path={pretrained['train']}", f"data.val_path={pretrained['val']}"]
    assert (
        main(
            [
                "linear",
                f"pretrained_feature_extractor={run}",
                *paths,
                "max_epochs=1",
                "optimizer.batch_size=8",
                "data.num_workers=0",
                f"checkpoint.dir={root / 'linear_models'}",
            ]
        )
        == 0
    )
    assert "linear evaluation: val_acc1=" in capsys.readouterr().out
    assert main(["knn", f"pretrained_checkpoint={run}", *paths, "batch_size=16"]) == 0
    out = capsys.readouterr().out
    assert "kNN backbone k=20 cosine" in out and "kNN projector k=20 cosine" in out


@pytest.mark.usefixtures("clamp_method")  # METHODS["clamp"] as solo-learn's mains find it
def test_solo_learns_loading_paths_accept_the_checkpoint(pretrained):
    """main_knn.py / main_umap.py rebuild the model with METHODS[...].load_from_checkpoint;
    main_linear.py reads the state_dict with a plain torch.load."""
    from omegaconf import OmegaConf
    from solo.methods import METHODS

    import solo_clamp.methods  # noqa: F401 - registers METHODS["clamp"]

    run = pretrained["run"]
    ckpt = next(run.glob("*.ckpt"))
    cfg = OmegaConf.create(json.loads((run / "args.json").read_text()))
    model = METHODS[cfg.method].load_from_checkpoint(ckpt, strict=False, cfg=cfg)
    state = torch.load(ckpt, map_location="cpu")["state_dict"]
    torch.testing.assert_close(model.backbone.conv1.weight, state["backbone.conv1.weight"])


def test_solo_learns_own_main_linear_runs_unchanged_on_the_checkpoint(pretrained):
    import solo

    script = Path(solo.__file__).resolve().parents[1] / "main_linear.py"
    if not script.exists():
        pytest.skip("solo-learn is installed without its repository scripts (main_linear.py)")
    root, run = pretrained["root"], pretrained["run"]
    config = root / "solo_linear.yaml"
    config.write_text(
        "\n".join(
            [
                "name: solo-linear",
                f"pretrained_feature_extractor: {next(run.glob('*.ckpt'))}",
                "backbone: {name: resnet18}",
                "pretrain_method: clamp",
                f"data: {{dataset: custom, train_path: {pretrained['train']}, "
                f"val_path: {pretrained['val']}, format: image_folder, num_workers: 0}}",
                "optimizer: {name: sgd, batch_size: 8, lr: 0.1, weight_decay: 0}",
                "scheduler: {name: step, lr_decay_steps: [1]}",
                "checkpoint: {enabled: false}",
                "auto_resume: {enabled: false}",
                "max_epochs: 1",
                "limit_train_batches: 1",
                "limit_val_batches: 1",
                'devices: "1"',
                "accelerator: cpu",
                "precision: 32",
                "strategy: auto",
            ]
        )
        + "\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "solo_clamp.cli",
            "run-solo",
            str(script),
            "--config-path",
            str(root),
            "--config-name",
            config.name,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Loaded" in result.stderr + result.stdout or "val_acc1" in result.stderr + result.stdout
