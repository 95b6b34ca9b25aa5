"""A tiny ManifoldCLR pretrain through ``solo-clamp pretrain`` (the MNIST config on a generated
ImageFolder), whose checkpoint then loads in ``solo-clamp linear`` and ``knn``."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from clamp_testing import tiny_pretrain_overrides

from solo_clamp.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_MANIFOLDCLR = [
    "max_epochs=1",
    "log_every_n_steps=1",
    "method_kwargs.dictionary_size=4",
    "method_kwargs.block_dim=16",
    "method_kwargs.vi_hidden_dim=8",
    "method_kwargs.prior_warmup_steps=2",
    "method_kwargs.max_elbo_start_step=2",
    "method_kwargs.max_elbo_samples=2",
]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, image_folder_writer):
    root = tmp_path_factory.mktemp("manifoldclr")
    # 6 classes: solo-learn's linear model reports top-5 accuracy.
    train = image_folder_writer(root / "train", classes=6, per_class=3, size=16)
    val = image_folder_writer(root / "val", classes=6, per_class=2, size=16, seed=1)
    overrides = tiny_pretrain_overrides(
        train,
        root / "trained_models",
        *TINY_MANIFOLDCLR,
        f"+evaluate.knn.train_path={train}",
        f"+evaluate.knn.val_path={val}",
        "+evaluate.knn.batch_size=8",
    )
    code = main(
        ["pretrain", "--config-path", "mnist", "--config-name", "manifoldclr.yaml", *overrides]
    )
    assert code == 0
    runs = list((root / "trained_models" / "manifoldclr").iterdir())
    assert len(runs) == 1
    return {"root": root, "run": runs[0], "train": train, "val": val}


def test_pretrain_writes_a_manifoldclr_run(pretrained):
    run = pretrained["run"]
    (checkpoint,) = run.glob("*.ckpt")
    assert checkpoint.name.startswith("manifoldclr-mnist-")
    args = json.loads((run / "args.json").read_text())
    assert args["method"] == "manifoldclr" and args["data"]["num_large_crops"] == 2
    assert args["method_kwargs"]["dictionary_size"] == 4
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert state["manifold.transport.psi"].shape == (4, 8, 16, 16)  # 128-d: 8 blocks of 16
    assert any(k.startswith("backbone.") for k in state)
    assert any(k.startswith("manifold.posterior.") for k in state)
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    losses = [
        float(r["train_manifoldclr_loss_step"])
        for r in rows
        if r.get("train_manifoldclr_loss_step")
    ]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)  # 18 images, batch 4
    report = json.loads((run / "knn.json").read_text())
    assert 0 <= report["manifoldclr_knn_top1"] <= 100 and report["test_images"] == 12
    assert report["problems"] == []  # a sane run: nothing diverged


def test_a_diverging_posterior_is_said_in_the_final_report_line(
    tmp_path, image_folder_writer, capsys
):
    train = image_folder_writer(tmp_path / "train", classes=3, per_class=4, size=16)
    overrides = tiny_pretrain_overrides(
        train,
        tmp_path / "trained_models",
        *TINY_MANIFOLDCLR,
        "method_kwargs.vi_lr=300",  # a huge rate for the posterior and prior networks
        "method_kwargs.vi_grad_clip=null",
        f"+evaluate.knn.train_path={train}",
        f"+evaluate.knn.val_path={train}",
        "+evaluate.knn.batch_size=8",
    )
    capsys.readouterr()
    code = main(
        ["pretrain", "--config-path", "mnist", "--config-name", "manifoldclr.yaml", *overrides]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("checkpoint: ")
    last = lines[-2]  # the report's last line, before the checkpoint's path
    assert last.startswith("ManifoldCLR's posterior DIVERGED: ")
    assert "per coefficient in the last epoch (bound " in last
    (run,) = (tmp_path / "trained_models" / "manifoldclr").iterdir()
    assert json.loads((run / "knn.json").read_text())["problems"][-1] == last


def test_linear_and_knn_programs_evaluate_the_checkpoint(pretrained, capsys):
    root, run = pretrained["root"], pretrained["run"]
    paths = [f"data.train_path={pretrained['train']}", f"data.val_path={pretrained['val']}"]
    assert (
        main(
            [
                "linear",
                f"pretrained_feature_extractor={run}",
                *paths,
                "max_epochs=1",
                "backbone.name=wide_resnet28w2",
                "pretrain_method=manifoldclr",
                "data.augmentations.crop_size=16",
                "optimizer.batch_size=8",
                "data.num_workers=0",
                f"checkpoint.dir={root / 'linear_models'}",
            ]
        )
        == 0
    )
    assert "linear evaluation: val_acc1=" in capsys.readouterr().out
    assert main(["knn", f"pretrained_checkpoint={run}", *paths, "batch_size=8"]) == 0
    out = capsys.readouterr().out
    assert "kNN backbone k=20 cosine" in out and "kNN projector k=20 cosine" in out


def test_solo_learns_load_from_checkpoint_rebuilds_the_model(pretrained):
    from omegaconf import OmegaConf
    from solo.methods import METHODS

    run = pretrained["run"]
    checkpoint = next(run.glob("*.ckpt"))
    cfg = OmegaConf.create(json.loads((run / "args.json").read_text()))
    model = METHODS[cfg.method].load_from_checkpoint(checkpoint, strict=True, cfg=cfg)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    torch.testing.assert_close(model.manifold.transport.psi, state["manifold.transport.psi"])
