"""``solo-clamp linear`` as a transfer probe: a backbone pretrained on one dataset probed on
another ImageFolder or a torchvision transfer set found on disk, with the floors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from solo_clamp.cli import main
from solo_clamp.configs import config_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_cifar_run(folder: Path) -> Path:
    """A run pretrained on CIFAR-10 as solo-learn leaves it: the CIFAR stem, args.json."""
    backbone = torchvision.models.resnet18()
    backbone.fc, backbone.maxpool = torch.nn.Identity(), torch.nn.Identity()
    backbone.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    folder.mkdir(parents=True)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 0}, folder / "clamp-cifar-ep=0.ckpt")
    args = {
        "method": "clamp",
        "backbone": {"name": "resnet18", "kwargs": {}},
        "data": {"dataset": "cifar10"},
    }
    (folder / "args.json").write_text(json.dumps(args))
    return folder


@pytest.fixture(scope="module")
def target(tmp_path_factory, image_folder_writer):
    """A small 'other' dataset, and a run pretrained on CIFAR-10."""
    root = tmp_path_factory.mktemp("transfer")
    return {
        "root": root,
        "train": image_folder_writer(root / "train", classes=5, per_class=4, size=16),
        "val": image_folder_writer(root / "val", classes=5, per_class=2, size=16, seed=1),
        "cifar_run": write_cifar_run(root / "cifar_run"),
    }


def probe(target, source: str, *overrides: str, out: Path | None = None) -> int:
    return main(
        [
            "linear",
            "--config-path",
            "fashion_mnist",
            "--config-name",
            "transfer.yaml",
            f"pretrained_feature_extractor={source}",
            f"data.train_path={target['train']}",
            f"data.val_path={target['val']}",
            "max_epochs=1",
            "check_val_every_n_epoch=1",
            "optimizer.batch_size=4",
            "data.num_workers=0",
            "data.augmentations.crop_size=16",
            f"checkpoint.dir={out or target['root'] / 'probes'}",
            *overrides,
        ]
    )


def test_a_cifar_backbone_keeps_its_stem_when_probed_elsewhere(target, capsys):
    assert probe(target, str(target["cifar_run"])) == 0
    out = capsys.readouterr().out
    assert "(resnet18, pretrained on cifar10)" in out and "linear evaluation: val_acc1=" in out


@pytest.mark.parametrize(
    "source,overrides,described",
    [
        ("clamp-mnist-resnet18", [], "zoo:clamp-mnist-resnet18 (resnet18, pretrained on mnist)"),
        ("null", [], "untrained resnet18 (seed"),
        ("null", ["raw_pixels=true"], "raw pixels"),
    ],
)
def test_the_zoo_model_and_the_floors_are_probed(
    target, source, overrides, described, capsys, tmp_path
):
    assert probe(target, source, *overrides, out=tmp_path) == 0
    assert f"probed: {described}" in capsys.readouterr().out
    (written,) = tmp_path.glob("linear/*/linear.json")
    result = json.loads(written.read_text())
    assert result["backbone"].startswith(described) and 0 <= result["val_acc1"] <= 100
    assert (result["train_images"], result["evaluation_images"]) == (20, 10)


def write_fake_dtd(root: Path, classes=("banded", "blotchy"), per_split: int = 2) -> Path:
    """The files torchvision's DTD reads: dtd/dtd/images/<class>/*.jpg, labels/<split>1.txt."""
    base = root / "dtd" / "dtd"
    for split_index, split in enumerate(("train", "val", "test")):
        lines = []
        for name in classes:
            (base / "images" / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_split):
                file = f"{name}_{split_index}{i}.jpg"
                Image.new("RGB", (20, 20), (40 * i, 100, 30 * split_index)).save(
                    base / "images" / name / file
                )
                lines.append(f"{name}/{file}")
        (base / "labels").mkdir(exist_ok=True)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return root


def test_a_torchvision_transfer_set_on_disk_is_probed(target, tmp_path, capsys):
    root = write_fake_dtd(tmp_path / "datasets")
    code = main(
        [
            "linear",
            "--config-path",
            "transfer",
            "--config-name",
            "dtd.yaml",
            "pretrained_feature_extractor=clamp-mnist-resnet18",
            "backbone.name=resnet18",
            f"data.train_path={root}",
            f"data.val_path={root}",
            "accelerator=cpu",
            "precision=32",
            "max_epochs=1",
            "optimizer.batch_size=2",
            "data.num_workers=0",
            "data.augmentations.crop_size=16",
            f"checkpoint.dir={tmp_path / 'out'}",
        ]
    )
    assert code == 0
    assert "linear evaluation: val_acc1=" in capsys.readouterr().out


def test_a_missing_transfer_set_is_not_downloaded(tmp_path, capsys):
    code = main(
        [
            "linear",
            "--config-path",
            "transfer",
            "--config-name",
            "food101.yaml",
            "pretrained_feature_extractor=clamp-mnist-resnet18",
            "backbone.name=resnet18",
            f"data.train_path={tmp_path}",
            f"data.val_path={tmp_path}",
            "accelerator=cpu",
            f"checkpoint.dir={tmp_path / 'out'}",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "no torchvision Food101 there" in err and "never downloads" in err
    assert not list(tmp_path.glob("food-101*"))


def test_a_backbone_name_that_contradicts_the_source_is_refused(target, capsys):
    assert probe(target, "clamp-mnist-resnet18", "backbone.name=resnet50") == 2
    assert "set backbone.name=resnet18" in capsys.readouterr().err


def test_the_transfer_configs_use_the_probed_datasets_normalisation():
    import yaml

    fashion = yaml.safe_load((config_dir("linear") / "fashion_mnist" / "transfer.yaml").read_text())
    assert fashion["data"]["augmentations"]["mean"] == [0.2860] * 3
    for name in ("dtd", "flowers102", "food101"):
        cfg = yaml.safe_load((config_dir("linear") / "transfer" / f"{name}.yaml").read_text())
        assert cfg["data"]["torchvision"] == name
        assert cfg["data"]["augmentations"]["mean"] == [0.485, 0.456, 0.406]
