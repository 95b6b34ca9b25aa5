"""``solo-clamp finetune`` end to end on tiny ImageFolders: the backbone is updated (and left
alone at backbone lr 0), the labelled subset is written and repeats, overlaps are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from solo_clamp.checkpoints import backbone_state, load_checkpoint
from solo_clamp.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_pretrained_run(folder: Path) -> Path:
    """A pretraining run as solo-learn leaves it: ``backbone.*`` weights and args.json."""
    torch.manual_seed(0)
    backbone = torchvision.models.resnet18()
    backbone.fc = torch.nn.Identity()
    folder.mkdir(parents=True)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    ckpt = folder / "clamp-tiny-ep=0.ckpt"
    torch.save({"state_dict": state, "epoch": 0}, ckpt)
    args = {
        "method": "clamp",
        "backbone": {"name": "resnet18", "kwargs": {}},
        "data": {"dataset": "custom"},
        "augmentations": [{"crop_size": 16}],
    }
    (folder / "args.json").write_text(json.dumps(args))
    return ckpt


@pytest.fixture(scope="module")
def setup(tmp_path_factory, image_folder_writer):
    root = tmp_path_factory.mktemp("finetune")
    return {
        "root": root,
        "train": image_folder_writer(root / "train", classes=5, per_class=8, size=16),
        "val": image_folder_writer(root / "val", classes=5, per_class=2, size=16, seed=1),
        "ckpt": write_pretrained_run(root / "pretrained"),
    }


def finetune(setup, out: Path, *overrides: str, source=None) -> int:
    source = setup["ckpt"].parent if source is None else source  # "=" in the name: Hydra
    return main(
        [
            "finetune",
            f"pretrained_feature_extractor={source}",
            f"data.train_path={setup['train']}",
            f"data.val_path={setup['val']}",
            "labels.fraction=null",
            "labels.per_class=2",
            "max_epochs=2",
            "optimizer.batch_size=4",
            "data.num_workers=0",
            "data.augmentations.crop_size=16",
            f"checkpoint.dir={out}",
            "checkpoint.enabled=True",
            *overrides,
        ]
    )


def run_dir(out: Path) -> Path:
    (folder,) = (out / "finetune").iterdir()
    return folder


def finetuned_backbone(out: Path) -> dict[str, torch.Tensor]:
    """The backbone of the run's newest checkpoint (the last two epochs' are kept)."""
    return backbone_state(load_checkpoint(run_dir(out)))


@pytest.fixture(scope="module")
def finetuned(setup):
    out = setup["root"] / "finetuned"
    assert finetune(setup, out) == 0
    return out


def test_finetuning_updates_the_backbone(setup, finetuned):
    before = backbone_state(load_checkpoint(setup["ckpt"]))
    after = finetuned_backbone(finetuned)
    assert set(after) == set(before)
    changed = [k for k, v in after.items() if not torch.equal(v, before[k])]
    assert "conv1.weight" in changed and "layer4.1.conv2.weight" in changed
    result = json.loads((run_dir(finetuned) / "finetune.json").read_text())
    assert result["labelled_images"] == 10 and result["training_images"] == 40
    assert result["evaluation_images"] == 10 and 0 <= result["val_acc1"] <= 100
    assert result["backbone_lr_scale"] == 0.05 and result["epochs"] == 2


def test_backbone_lr_zero_leaves_the_backbone_untouched(setup, capsys):
    out = setup["root"] / "frozen"
    assert finetune(setup, out, "optimizer.backbone_lr_scale=0") == 0
    assert "backbone lr x 0)" in capsys.readouterr().out
    before = backbone_state(load_checkpoint(setup["ckpt"]))
    after = finetuned_backbone(out)
    assert all(torch.equal(after[k], before[k]) for k in before)  # BatchNorm statistics too
    assert "classifier.weight" in load_checkpoint(run_dir(out))["state_dict"]


def test_the_written_subset_repeats_the_run(setup, finetuned, capsys):
    listing = run_dir(finetuned) / "label_subset.txt"
    names = [line for line in listing.read_text().splitlines() if not line.startswith("#")]
    assert len(names) == 10
    assert {n.split("/")[0] for n in names} == {f"class_{k}" for k in range(5)}
    out = setup["root"] / "repeated"
    assert (
        finetune(
            setup,
            out,
            f"labels.file={listing}",
            "labels.per_class=null",
            "max_epochs=1",
            "checkpoint.enabled=False",
        )
        == 0
    )
    assert (run_dir(out) / "label_subset.txt").read_text().splitlines()[2:] == names


def test_from_the_untrained_backbone_or_a_zoo_name(setup, capsys):
    assert (
        finetune(
            setup,
            setup["root"] / "untrained",
            "max_epochs=1",
            "checkpoint.enabled=False",
            source="null",
        )
        == 0
    )
    assert "fine-tuned: untrained resnet18 (seed" in capsys.readouterr().out
    assert (
        finetune(
            setup,
            setup["root"] / "zoo",
            "max_epochs=1",
            "checkpoint.enabled=False",
            source="clamp-mnist-resnet18",
        )
        == 0
    )
    assert "fine-tuned: zoo:clamp-mnist-resnet18 (resnet18, pretrained on mnist)" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["data.val_path={train}"], "also in the evaluation split"),
        (["optimizer.backbone_lr_scale=2"], "optimizer.backbone_lr_scale must be a number in"),
        (["labels.per_class=9"], "labels.per_class=9 but class 0 has only 8"),
        (["labels.file=???"], "labels.file: give the list"),
        (["scheduler.name=step"], "scheduler.name must be 'cosine'"),
        (["data.val_path={missing}"], "/nope' does not exist or is not a directory."),
        (["optimizer.name=rmsprop"], "optimizer.name must be one of sgd, lars, adam, adamw"),
    ],
)
def test_bad_settings_are_one_line_errors(setup, overrides, message, capsys):
    overrides = [o.format(train=setup["train"], missing=setup["root"] / "nope") for o in overrides]
    assert finetune(setup, setup["root"] / "bad", *overrides) == 2
    err = capsys.readouterr().err
    assert err.startswith("solo-clamp finetune: error:") and message in err


def test_the_script_is_the_command(repo_root, tmp_path):
    script = repo_root / "scripts" / "linear" / "main_finetune.py"
    out = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.startswith("usage: solo-clamp finetune")
