"""``solo-clamp export``: torchvision / timm round trips with equal outputs, detectron2's
names and shapes, and the backbones a target cannot represent."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from solo_clamp.backbones import resolve_backbone
from solo_clamp.cli import main
from solo_clamp.export import ExportError, write_export
from solo_clamp.zoo import read_weights

ZOO_MODEL = "clamp-mnist-resnet18"
MNIST_MEAN, MNIST_STD = [0.1307] * 3, [0.3081] * 3


def reference_backbone(name: str, state: dict) -> torch.nn.Module:
    """The backbone as solo-learn builds it (torchvision's ResNet, ``fc`` = Identity)."""
    model = getattr(torchvision.models, name)()
    model.fc = torch.nn.Identity()
    model.load_state_dict(state, strict=True)
    return model.eval()


def random_backbone_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A ResNet's weights with BatchNorm statistics away from their initial values."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)()
    model.fc = torch.nn.Identity()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(7)
    return model.state_dict()


def write_run(
    folder: Path, name: str, state: dict, dataset: str = "custom", kwargs: dict | None = None
) -> Path:
    """A solo-learn run: a Lightning-style checkpoint with a projector, and args.json."""
    folder.mkdir(parents=True, exist_ok=True)
    full = {f"backbone.{k}": v for k, v in state.items()}
    full["projector.0.weight"] = torch.randn(4, 4)
    ckpt = folder / "clamp-test-ep=0.ckpt"
    torch.save({"state_dict": full, "epoch": 0}, ckpt)
    args = {
        "method": "clamp",
        "backbone": {"name": name, "kwargs": kwargs or {}},
        "data": {"dataset": dataset},
        "augmentations": [{"crop_size": 32, "mean": MNIST_MEAN, "std": MNIST_STD}],
    }
    (folder / "args.json").write_text(json.dumps(args))
    return ckpt


@pytest.fixture(scope="module")
def resnet18_run(tmp_path_factory):
    state = random_backbone_state("resnet18")
    ckpt = write_run(tmp_path_factory.mktemp("run18") / "run", "resnet18", state)
    return ckpt, state


@pytest.fixture(scope="module")
def resnet50_run(tmp_path_factory):
    state = random_backbone_state("resnet50", seed=1)
    ckpt = write_run(tmp_path_factory.mktemp("run50") / "run", "resnet50", state)
    return ckpt, state


def images(size: int = 64) -> torch.Tensor:
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(3))


# ---------------------------------------------------------------- the shared resolver


def test_a_checkpoint_its_run_directory_and_a_zoo_name_resolve(resnet18_run):
    ckpt, state = resnet18_run
    by_file, by_dir = resolve_backbone(ckpt), resolve_backbone(ckpt.parent)
    assert by_file.origin == by_dir.origin == str(ckpt)
    assert by_file.spec.name == "resnet18" and not by_file.spec.cifar_stem
    assert by_file.normalisation == {"crop_size": 32, "mean": MNIST_MEAN, "std": MNIST_STD}
    assert set(by_file.state) == set(state)  # backbone only: no projector
    assert all(
        torch.equal(
            by_file.state[k], state[k].float() if state[k].is_floating_point() else state[k]
        )
        for k in state
    )
    zoo = resolve_backbone(ZOO_MODEL)
    assert zoo.origin == f"zoo:{ZOO_MODEL}" and zoo.dataset == "mnist"
    assert {v.dtype for v in zoo.state.values() if v.is_floating_point()} == {torch.float32}


def test_an_unknown_source_names_what_it_tried(tmp_path):
    from solo_clamp.checkpoints import CheckpointNotFoundError

    with pytest.raises(CheckpointNotFoundError, match="neither a checkpoint.*available"):
        resolve_backbone("no-such-model")
    with pytest.raises(CheckpointNotFoundError, match="no such checkpoint"):
        resolve_backbone(tmp_path / "missing.ckpt")


# ---------------------------------------------------------------- torchvision and timm


@pytest.mark.parametrize("run", ["resnet18_run", "resnet50_run"])
def test_torchvision_loads_the_export_with_only_fc_missing_and_equal_outputs(
    run, request, tmp_path, capsys
):
    ckpt, state = request.getfixturevalue(run)
    name = "resnet18" if "18" in run else "resnet50"
    out = tmp_path / f"{name}.pth"
    assert main(["export", str(ckpt.parent), "--to", "torchvision", "--out", str(out)]) == 0
    assert "torchvision.models." in capsys.readouterr().out

    model = getattr(torchvision.models, name)()
    result = model.load_state_dict(torch.load(out, weights_only=True), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []
    model.fc = torch.nn.Identity()
    with torch.no_grad():
        assert torch.equal(model.eval()(images()), reference_backbone(name, state)(images()))


def test_timm_loads_the_export_through_its_pretrained_file_and_load_state_dict(
    resnet18_run, tmp_path
):
    timm = pytest.importorskip("timm")
    from safetensors.torch import load_file

    ckpt, state = resnet18_run
    out = tmp_path / "resnet18.safetensors"
    assert main(["export", str(ckpt), "--to", "timm", "--out", str(out)]) == 0
    expected = reference_backbone("resnet18", state)(images())

    # timm >= 1.0: a local file as the pretrained weights; num_classes=0 drops the classifier
    pretrained = timm.create_model(
        "resnet18", pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(out)}
    ).eval()
    plain = timm.create_model("resnet18", num_classes=0)
    plain.load_state_dict(load_file(str(out)), strict=True)
    with torch.no_grad():
        for model in (pretrained, plain.eval()):
            assert torch.allclose(model(images()), expected, atol=1e-5, rtol=1e-5)


def test_the_fp16_zoo_model_exports_its_values_exactly_in_fp32(tmp_path):
    from solo_clamp import zoo

    out = tmp_path / "zoo.pth"
    assert main(["export", ZOO_MODEL, "--to", "torchvision", "--out", str(out)]) == 0
    exported = torch.load(out, weights_only=True)
    assert {v.dtype for v in exported.values() if v.is_floating_point()} == {torch.float32}
    stored = read_weights(zoo.download(ZOO_MODEL, progress=False))  # fp16, as shipped
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    model = torchvision.models.resnet18()
    model.load_state_dict(exported, strict=False)
    model.fc = torch.nn.Identity()
    # ours: the zoo backbone as load_backbone builds it (fp16 values cast to fp32)
    ours = reference_backbone(
        "resnet18", {k: v.float() if v.is_floating_point() else v for k, v in stored.items()}
    )
    x = images(32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ours(x))


# ---------------------------------------------------------------- detectron2


def detectron2_table(depth: int) -> dict[str, tuple[int, ...]]:
    """detectron2's ResNet parameter names and shapes (``detectron2/modeling/backbone/
    resnet.py``: ``BasicStem``, ``BasicBlock`` for depth 18, ``BottleneckBlock`` for 50;
    stages ``res2``..``res5``; every conv has a ``norm`` child, FrozenBatchNorm2d's four
    tensors; a ``shortcut`` conv where a block changes the channel count)."""
    norm = ("weight", "bias", "running_mean", "running_var")

    def conv(prefix: str, out_c: int, in_c: int, k: int) -> dict[str, tuple[int, ...]]:
        table = {f"{prefix}.weight": (out_c, in_c, k, k)}
        table.update({f"{prefix}.norm.{t}": (out_c,) for t in norm})
        return table

    table = conv("stem.conv1", 64, 3, 7)
    blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    in_c = 64
    for stage, count in enumerate(blocks):
        width = 64 * 2**stage
        out_c = width if depth == 18 else width * 4
        for block in range(count):
            p = f"res{stage + 2}.{block}"
            if in_c != out_c:
                table.update(conv(f"{p}.shortcut", out_c, in_c, 1))
            if depth == 18:
                table.update(conv(f"{p}.conv1", width, in_c, 3))
                table.update(conv(f"{p}.conv2", width, width, 3))
            else:
                table.update(conv(f"{p}.conv1", width, in_c, 1))
                table.update(conv(f"{p}.conv2", width, width, 3))
                table.update(conv(f"{p}.conv3", out_c, width, 1))
            in_c = out_c
    return table


def test_the_detectron2_table_holds_the_names_detectron2_documents():
    table = detectron2_table(50)
    assert len([k for k in table if k.endswith(".weight") and ".norm." not in k]) == 53
    for key in (
        "stem.conv1.norm.running_var",
        "res2.0.shortcut.norm.bias",
        "res4.5.conv2.weight",
        "res5.2.conv3.norm.weight",
    ):
        assert key in table
    assert table["res5.0.shortcut.weight"] == (2048, 1024, 1, 1)


@pytest.mark.parametrize("run,depth", [("resnet18_run", 18), ("resnet50_run", 50)])
def test_detectron2_export_has_detectron2s_names_and_shapes(run, depth, request, tmp_path, capsys):
    ckpt, state = request.getfixturevalue(run)
    out = tmp_path / "r.pkl"
    assert main(["export", str(ckpt), "--to", "detectron2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"MODEL.RESNETS.DEPTH {depth}" in printed and "STRIDE_IN_1X1 False" in printed
    assert "MODEL.PIXEL_MEAN [33.329, 33.329, 33.329]" in printed  # 255 x the run's mean
    with open(out, "rb") as stream:
        data = pickle.load(stream)
    assert data["__author__"] == "solo-clamp" and data["matching_heuristics"] is True
    model = data["model"]
    assert {k: tuple(v.shape) for k, v in model.items()} == detectron2_table(depth)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in model.values())
    last = "layer4.1.bn2" if depth == 18 else "layer4.2.bn3"
    mapped = "res5.1.conv2.norm" if depth == 18 else "res5.2.conv3.norm"
    assert np.array_equal(model[f"{mapped}.running_var"], state[f"{last}.running_var"].numpy())
    assert np.array_equal(model["stem.conv1.weight"], state["conv1.weight"].numpy())


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("target", ["torchvision", "timm", "detectron2"])
def test_the_cifar_stem_is_refused_with_the_reason(target, tmp_path, capsys):
    model = torchvision.models.resnet18()
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 2, bias=False)
    model.fc = torch.nn.Identity()
    ckpt = write_run(tmp_path / "cifar", "resnet18", model.state_dict(), dataset="cifar10")
    out = tmp_path / "out.pkl"
    assert main(["export", str(ckpt), "--to", target, "--out", str(out)]) == 2
    assert "CIFAR stem" in capsys.readouterr().err and "7x7" not in str(out)
    assert not out.exists() and not list(tmp_path.glob(".out.pkl*"))


@pytest.mark.parametrize("target", ["torchvision", "timm", "detectron2"])
def test_a_vit_is_refused_with_the_reason(target, tmp_path, capsys):
    ckpt = write_run(tmp_path / "vit", "vit_small", {"cls_token": torch.zeros(1, 1, 384)})
    assert main(["export", str(ckpt), "--to", target, "--out", str(tmp_path / "o.pkl")]) == 2
    err = capsys.readouterr().err
    assert "'vit_small' has no" in err and target in err


def test_other_refusals_name_the_reason(resnet18_run, tmp_path):
    _, state = resnet18_run
    with pytest.raises(ExportError, match="ending in '.pkl'"):
        write_export(state, "resnet18", False, "detectron2", tmp_path / "r.pth")
    with pytest.raises(ExportError, match="width_per_group"):
        write_export(
            state, "resnet18", False, "torchvision", tmp_path / "r.pth", {"width_per_group": 128}
        )
    with pytest.raises(ExportError, match="do not fit torchvision's resnet50"):
        write_export(state, "resnet50", False, "timm", tmp_path / "r.safetensors")
    with pytest.raises(ExportError, match="--to must be one of"):
        write_export(state, "resnet18", False, "onnx", tmp_path / "r.onnx")
    assert not list(tmp_path.iterdir())


def test_an_unknown_target_is_refused_before_the_source_is_resolved(tmp_path, capsys):
    """``--to`` is checked against the one table (``export.TARGETS``) before any checkpoint is
    read or zoo file downloaded: the source here does not even exist."""
    out = tmp_path / "r.onnx"
    assert main(["export", str(tmp_path / "nope.ckpt"), "--to", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "solo-clamp export: error: --to must be one of ['torchvision', 'timm', 'detectron2'], "
        "got 'onnx'.\n"
    )
