"""A third method, defined in this module only, goes through everything a method of the package
goes through: registration with the decorator the package's methods use (``register_method``),
the config checks, a tiny pretrain, the auto-resume shape check, a compare plan and the geometry
report. Nothing in the package names it: all of it reads the class's ``facts``."""

from __future__ import annotations

import json
import shutil
import warnings
from typing import Any, ClassVar, Dict, List, Sequence

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from clamp_testing import tiny_comparison_config, tiny_pretrain_overrides
from omegaconf import OmegaConf
from pydantic import Field
from pydantic.dataclasses import dataclass
from solo.methods import METHODS
from solo.methods.base import BaseMethod

from solo_clamp import compare
from solo_clamp.cli import main
from solo_clamp.configs import config_dir
from solo_clamp.methods import facts_of, known, register_method, unregister_method
from solo_clamp.methods.facts import MethodFacts, ViewRule
from solo_clamp.training.checks import preflight
from solo_clamp.training.faults import ResumeWarning
from solo_clamp.training.resume import RunShapeAutoResumer, run_shape_fields
from solo_clamp.validation import CLOSED, Count, Number

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass(config=CLOSED)
class AgreementKwargs:
    width: Count = 16
    temperature: Number = Field(0.5, gt=0)


class Agreement(BaseMethod):
    """Cosine agreement of the projections of a pair of views (a toy objective)."""

    facts: ClassVar[MethodFacts] = MethodFacts(
        name="agreement",
        loss_key="train_agreement_loss",
        views=ViewRule(minimum=2, maximum=2, why="a pair"),
        kwargs_schema=AgreementKwargs,
        shape_fields=("width",),
        projector_width_fields=("width",),
    )

    def __init__(self, cfg):
        super().__init__(cfg)
        self.projector = nn.Linear(self.features_dim, cfg.method_kwargs.width)
        self.temperature = cfg.method_kwargs.temperature

    @staticmethod
    def add_and_assert_specific_cfg(cfg):
        cfg = super(Agreement, Agreement).add_and_assert_specific_cfg(cfg)
        return Agreement.facts.check(cfg)

    @property
    def learnable_params(self) -> List[Dict[str, Any]]:
        return super().learnable_params + [
            {"name": "projector", "params": self.projector.parameters()}
        ]

    def forward(self, X: torch.Tensor) -> Dict[str, Any]:
        out = super().forward(X)
        out["z"] = self.projector(out["feats"])
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        out = super().training_step(batch, batch_idx)
        z0, z1 = (F.normalize(z, dim=-1) for z in out["z"])
        loss = -(z0 * z1).sum(dim=-1).mean() / self.temperature
        self.log(self.facts.loss_key, loss, on_epoch=True, sync_dist=True)
        return loss + out["loss"]


@pytest.fixture(autouse=True, scope="module")
def registered():
    """The decorator, applied here rather than at the class so that the method is in the
    tables for this module's tests only (pytest imports every test module before it runs any)."""
    assert register_method(Agreement) is Agreement
    yield
    unregister_method("agreement")
    assert "agreement" not in METHODS and "agreement" not in known()


def test_the_decorator_puts_the_method_in_both_tables():
    assert METHODS["agreement"] is Agreement and facts_of("agreement") is Agreement.facts
    assert "agreement" in known()
    assert register_method(Agreement) is Agreement  # again: nothing changes
    with pytest.raises(ValueError, match=r"method 'agreement' is already .*Agreement"):
        register_method(type("Other", (Agreement,), {"facts": Agreement.facts}))


def pretrain_config(tmp_path) -> str:
    """The MNIST SimCLR config with this method and its kwargs, in a folder of its own."""
    folder = tmp_path / "configs"
    shutil.copytree(config_dir("pretrain") / "mnist" / "augmentations", folder / "augmentations")
    cfg = yaml.safe_load((config_dir("pretrain") / "mnist" / "simclr.yaml").read_text())
    cfg.update(name="agreement-mnist", method="agreement")
    cfg["method_kwargs"] = {"width": 16, "temperature": 0.5}
    (folder / "agreement.yaml").write_text(yaml.safe_dump(cfg))
    return str(folder)


def test_config_checks_read_the_methods_facts(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "x.png").write_bytes(b"")
    cfg = OmegaConf.create(
        {
            "method": "agreement",
            "backbone": {"name": "resnet18"},
            "method_kwargs": {"width": 8},
            "data": {"dataset": "custom", "train_path": str(tmp_path / "data")},
            "augmentations": [{"crop_size": 32, "num_crops": 2}],
            "optimizer": {"batch_size": 8},
        }
    )
    preflight(cfg)
    cfg.method_kwargs.width = 0
    with pytest.raises(ValueError, match=r"method_kwargs.width must be a positive integer"):
        preflight(cfg)
    cfg.method_kwargs = {"rs": 7.0}
    with pytest.raises(
        ValueError, match=r"method_kwargs.rs is not a field; fields: \['width', 'temperature'\]"
    ):
        preflight(cfg)
    cfg.method_kwargs = {}
    cfg.augmentations[0].num_crops = 4
    with pytest.raises(
        ValueError, match=r"method=agreement takes exactly 2 views per image \(a pair\)"
    ):
        preflight(cfg)


@pytest.fixture(scope="module")
def pretrained(registered, tmp_path_factory, image_folder_writer):
    root = tmp_path_factory.mktemp("agreement")
    train = image_folder_writer(root / "train", classes=3, per_class=4, size=16)
    overrides = tiny_pretrain_overrides(train, root / "trained_models", "max_epochs=1")
    overrides = [o for o in overrides if not o.startswith("method_kwargs.proj_")]
    config = pretrain_config(root)
    assert (
        main(["pretrain", "--config-path", config, "--config-name", "agreement.yaml", *overrides])
        == 0
    )
    (run,) = (root / "trained_models" / "agreement").iterdir()
    return {"run": run, "train": train, "root": root}


def test_a_tiny_pretrain_writes_a_run_of_the_method(pretrained):
    run = pretrained["run"]
    (checkpoint,) = run.glob("*.ckpt")
    args = json.loads((run / "args.json").read_text())
    assert args["method"] == "agreement" and args["method_kwargs"]["temperature"] == 0.5
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert state["projector.weight"].shape[0] == 16
    assert "train_agreement_loss_epoch" in (run / "metrics.csv").read_text()


def test_auto_resume_reads_the_methods_shape_fields(pretrained):
    previous = OmegaConf.create(json.loads((pretrained["run"] / "args.json").read_text()))
    assert "method_kwargs.width" in run_shape_fields(previous)
    resumer = RunShapeAutoResumer(pretrained["run"].parent, max_hours=36)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resumer.find_checkpoint(previous)[0] is not None  # same shape: resumed
    other = previous.copy()
    other.method_kwargs = {**previous.method_kwargs, "width": 8}
    with pytest.warns(ResumeWarning, match="method_kwargs.width is 16 there, 8"):
        assert resumer.find_checkpoint(other) == (None, None)


def test_a_compare_plan_composes_the_methods_runs(tmp_path, image_folder_factory):
    fields = tiny_comparison_config(image_folder_factory, train_per_class=8)
    fields["methods"] = ["agreement", "simclr"]
    fields["recipes"] = {
        "agreement": {
            "views": 2,
            "method_kwargs": {"width": 16, "temperature": 0.5},
            "optimizer": {"name": "adamw", "lr": 1e-3, "classifier_lr": 0.1, "weight_decay": 0.0},
        }
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(fields))
    cfg = compare.load_config(tmp_path / "study.yaml")
    compare.validate_config(cfg)
    paths = compare.write_run_configs(cfg, tmp_path / "out")
    run_cfgs = {p.parent.name: OmegaConf.load(p) for p in paths}
    ours = run_cfgs["agreement-equal_epochs-s0"]
    assert ours.method == "agreement" and ours.data.num_large_crops == 2
    # the comparison's projector_scale (0.25) scales every method's projector width alike: the
    # fields its facts name (no name pattern would find `width`)
    assert ours.method_kwargs == {"width": 4, "temperature": 0.5}
    assert "simclr-equal_epochs-s0" in run_cfgs
    fields["recipes"]["agreement"]["views"] = 4
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(fields))
    with pytest.raises(ValueError, match=r"recipes.agreement.views must be exactly 2 \(a pair\)"):
        compare.validate_config(compare.load_config(tmp_path / "study.yaml"))


def test_the_geometry_report_measures_the_methods_run(pretrained, tmp_path):
    out = tmp_path / "geometry"
    code = main(
        [
            "geometry",
            str(pretrained["run"]),
            "--data",
            str(pretrained["train"]),
            "--out",
            str(out),
            "--max-images",
            "9",
            "--invariance-images",
            "3",
            "--views",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    result = json.loads((out / "geometry.json").read_text())
    assert result["method"] == "agreement"
    assert any("has no radius scale" in note for note in result["notes"])
    assert any("logs no per-epoch geometry statistics" in note for note in result["notes"])
