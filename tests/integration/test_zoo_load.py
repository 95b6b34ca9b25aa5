"""Zoo round trip with the real solo-learn: publish a CLAMP checkpoint, load its backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pooch
import pytest
import torch
from omegaconf import OmegaConf  # noqa: E402
from safetensors import safe_open

from solo_clamp import zoo  # noqa: E402
from solo_clamp.backbones import load_backbone  # noqa: E402
from solo_clamp.cli import main as cli_main  # noqa: E402
from solo_clamp.errors import CheckpointError, ManifestError  # noqa: E402
from solo_clamp.zoo.download import CACHE_ENV  # noqa: E402
from solo_clamp.zoo.entry import BackboneSpec, Evaluation  # noqa: E402
from solo_clamp.zoo.publish import publish  # noqa: E402

NAME = "tiny-clamp"


@pytest.fixture
def trained(tmp_path, clamp_cfg_factory):
    """A tiny CLAMP model (CIFAR stem) saved as solo-learn does: ckpt + args.json."""
    from solo_clamp.methods.clamp import CLAMP

    cfg = CLAMP.add_and_assert_specific_cfg(
        clamp_cfg_factory(dataset="cifar10", num_classes=10, crop_size=16)
    )
    torch.manual_seed(0)
    model = CLAMP(cfg).eval()
    for module in model.backbone.modules():  # BatchNorm statistics away from their init
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    folder = tmp_path / "trained_models" / "clamp" / "abc123"
    folder.mkdir(parents=True)
    ckpt = folder / "clamp-test-abc123-ep=4.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "epoch": 4,
            "global_step": 10,
            "pytorch-lightning_version": "2.1.2",
            "optimizer_states": [],
            "lr_schedulers": [],
        },
        ckpt,
    )
    args = OmegaConf.to_container(cfg)
    args["wandb_run_id"] = None
    (folder / "args.json").write_text(json.dumps(args))
    return model, ckpt


def test_publish_then_load_matches_the_original_backbone(trained, tmp_path, monkeypatch):
    model, ckpt = trained
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    index = tmp_path / "zoo" / "index.yaml"
    rc = cli_main(
        [
            "zoo",
            "publish",
            str(ckpt),
            "--name",
            NAME,
            "--dtype",
            "fp16",
            "--index",
            str(index),
            "--knn-top1",
            "42.5",
            "--knn-command",
            "solo-clamp knn --ckpt x",
        ]
    )
    assert rc == 0

    entry = zoo.load_index(index).get(NAME)
    weights = index.parent / f"{NAME}.safetensors"
    assert entry.file == weights.name and entry.sources == ()
    assert entry.size == weights.stat().st_size and entry.sha256 == pooch.file_hash(str(weights))
    assert entry.format == "safetensors-fp16" and entry.method == "clamp"
    assert entry.backbone == BackboneSpec("resnet18", {}, cifar_stem=True)
    assert (entry.dataset, entry.epochs, entry.views) == ("cifar10", 5, 4)
    assert entry.evaluation["knn"] == Evaluation(42.5, "solo-clamp knn --ckpt x")
    assert entry.config["method_kwargs"]["rs"] == 7.0 and "wandb_run_id" not in entry.config
    with safe_open(str(weights), framework="pt") as fh:
        assert fh.metadata()["name"] == NAME
    stored = zoo.read_weights(weights)
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert not any(k.startswith(("projector", "classifier")) for k in stored)

    loaded = load_backbone(NAME, index, progress=False)
    assert not loaded.training and isinstance(loaded.fc, torch.nn.Identity)
    assert loaded.conv1.kernel_size == (3, 3) and isinstance(loaded.maxpool, torch.nn.Identity)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected, actual = model.backbone(x), loaded(x)
    assert actual.shape == expected.shape == (2, 512)
    assert ((actual - expected).norm() / expected.norm()).item() < 1e-2  # fp16 rounding
    assert not (tmp_path / "cache").exists()  # shipped: resolved locally, nothing downloaded

    # publishing again needs --overwrite; metrics need their command
    assert cli_main(["zoo", "publish", str(ckpt), "--name", NAME, "--index", str(index)]) == 2
    assert (
        cli_main(
            [
                "zoo",
                "publish",
                str(ckpt),
                "--name",
                "other",
                "--index",
                str(index),
                "--knn-top1",
                "40",
            ]
        )
        == 2
    )


def test_cli_list_info_verify_load_on_a_published_zoo(trained, tmp_path, capsys):
    _, ckpt = trained
    index = tmp_path / "zoo" / "index.yaml"
    entry = publish(ckpt.parent, NAME, index, dtype="fp32", check=False)  # a run dir
    weights = index.parent / entry.file
    assert zoo.read_weights(weights)["conv1.weight"].dtype == torch.float32
    capsys.readouterr()

    assert cli_main(["zoo", "--index", str(index), "list"]) == 0
    out = capsys.readouterr().out
    assert NAME in out and "shipped" in out and "resnet18" in out

    assert cli_main(["zoo", "info", NAME, "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert entry.sha256 in out and "cifar_stem: true" in out and "location: shipped" in out

    assert cli_main(["zoo", "verify", str(weights), "--name", NAME, "--index", str(index)]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli_main(["zoo", "verify", str(weights), "--index", str(index)]) == 0
    assert f"matches {NAME}" in capsys.readouterr().out
    assert cli_main(["zoo", "verify", str(ckpt), "--name", NAME, "--index", str(index)]) == 2
    assert "expected" in capsys.readouterr().err

    assert cli_main(["zoo", "load", NAME, "--index", str(index)]) == 0
    assert "features (512,) for 16x16 inputs" in capsys.readouterr().out

    assert cli_main(["zoo", "load", "nope", "--index", str(index)]) == 2
    assert f"available: {NAME}" in capsys.readouterr().err


def test_publish_rejects_bad_inputs(tmp_path):
    ckpt = Path(tmp_path / "m.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        publish(ckpt, "m", tmp_path / "index.yaml")
    torch.save({"state_dict": {"backbone.w": torch.ones(1)}}, ckpt)
    with pytest.raises(CheckpointError, match="args.json not found"):
        publish(ckpt, "m", tmp_path / "index.yaml")
    (tmp_path / "args.json").write_text(json.dumps({"method": "clamp"}))
    with pytest.raises(CheckpointError, match="missing 'data.dataset'"):
        publish(ckpt, "m", tmp_path / "index.yaml", check=False)
    with pytest.raises(ManifestError, match="--out: .* is outside"):
        publish(ckpt, "m", tmp_path / "zoo" / "index.yaml", out_dir=tmp_path / "elsewhere")
    with pytest.raises(ManifestError, match="--dtype: 'bf16' is not supported"):
        publish(ckpt, "m", tmp_path / "index.yaml", dtype="bf16")


def test_publish_and_load_a_manifoldclr_checkpoint(tmp_path, clamp_cfg_factory, capsys):
    """A tiny ManifoldCLR run (one pair of views): the manifest records its method and 2 views,
    and ``zoo load`` rebuilds its backbone."""
    from solo.methods import METHODS

    import solo_clamp

    solo_clamp.register()
    cfg = clamp_cfg_factory(num_views=2, dataset="cifar10", num_classes=10, crop_size=16)
    cfg.method = "manifoldclr"
    cfg.method_kwargs = {
        "proj_hidden_dim": 32,
        "proj_output_dim": 16,
        "dictionary_size": 4,
        "block_dim": 16,
        "vi_hidden_dim": 8,
    }
    torch.manual_seed(0)
    model = METHODS["manifoldclr"](cfg).eval()
    folder = tmp_path / "trained_models" / "manifoldclr" / "run1"
    folder.mkdir(parents=True)
    ckpt = folder / "manifoldclr-test-run1-ep=1.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, ckpt)
    (folder / "args.json").write_text(json.dumps(OmegaConf.to_container(model.cfg)))

    index = tmp_path / "zoo" / "index.yaml"
    assert (
        cli_main(["zoo", "publish", str(ckpt), "--name", "tiny-manifoldclr", "--index", str(index)])
        == 0
    )
    entry = zoo.load_index(index).get("tiny-manifoldclr")
    assert (entry.method, entry.views, entry.epochs) == ("manifoldclr", 2, 2)
    assert entry.backbone == BackboneSpec("resnet18", {}, cifar_stem=True)
    assert entry.config["method_kwargs"]["dictionary_size"] == 4
    stored = zoo.read_weights(index.parent / entry.file)
    assert not any(k.startswith(("projector", "manifold", "classifier")) for k in stored)

    loaded = load_backbone("tiny-manifoldclr", index, progress=False)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected, actual = model.backbone(x), loaded(x)
    assert ((actual - expected).norm() / expected.norm()).item() < 1e-2  # fp16 rounding
    capsys.readouterr()
    assert cli_main(["zoo", "--index", str(index), "list"]) == 0
    assert "manifoldclr" in capsys.readouterr().out
