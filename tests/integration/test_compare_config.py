"""The comparison config's schema (``solo_clamp.compare.schema``): a field of the wrong type,
an unknown field or a missing one is one ConfigError sentence naming it, from a YAML file as
from ``--set``; every shipped config loads and validates, and the defaults fill what a config
leaves out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from solo_clamp import compare
from solo_clamp.cli import main
from solo_clamp.compare.run_cfg import RUN_YAML
from solo_clamp.errors import ConfigError

SHIPPED = sorted(p for p in compare.CONFIG_DIR.glob("*.yaml") if p != RUN_YAML)
FIELDS = [
    "dataset",
    "data",
    "budgets",
    "seeds",
    "backbone",
    "projector_scale",
    "scheduler",
    "trainer",
    "curves",
    "evaluation",
    "floors",
    "tuning",
    "quick",
    "variants",
    "geometry",
    "methods",
    "recipes",
    "augmentations",
    "epochs",
    "batch_size",
]


def _study(tmp_path: Path, text: str) -> Path:
    """A config over the shipped default (``base:``) with the fields of ``text``."""
    path = tmp_path / "study.yaml"
    path.write_text(f"base: {compare.CONFIG_DIR / 'fashion_mnist.yaml'}\n{text}")
    return path


def _validate(path: Path) -> None:
    compare.validate_config(compare.load_config(path))


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: abc", "epochs must be a positive integer, got 'abc'."),
        ("epochs: 2.5", "epochs must be a positive integer, got 2.5."),
        ("epochs: 0", "epochs must be a positive integer, got 0."),
        ("batch_size: '64'", "batch_size must be a positive integer, got '64'."),
        ("tuning: {enabled: 3}", "tuning.enabled must be true or false, got 3."),
        ("tuning: {only: 'no'}", "tuning.only must be true or false, got 'no'."),
        ("seeds: [a]", "seeds[0] must be an integer, got 'a'."),
        ("seeds: 3", "seeds must be a list, got 3."),
        ("evaluation: {temperature: warm}", "evaluation.temperature must be a number, got 'warm'."),
        ("evaluation: {k: null}", "evaluation.k must be a positive integer, got None."),
        ("trainer: {threads: 0}", "trainer.threads must be a positive integer or null, got 0."),
        (
            "trainer: {threads: many}",
            "threads must be a positive integer or null, got 'many'.",
        ),
        ("data: {root: 5}", "data.root must be a string, got 5."),
        ("data: 5", "data must be a mapping, got 5."),
        ("recipes: [clamp]", "recipes must be a mapping, got ['clamp']."),
        ("geometry: {per_class: 0}", "geometry.per_class must be a positive integer, got 0."),
        (
            "floors: {raw_pixel_size: 0}",
            "floors.raw_pixel_size must be a positive integer or null, got 0.",
        ),
    ],
)
def test_a_field_of_the_wrong_type_is_named_with_its_type_and_value(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _validate(_study(tmp_path, text))


def test_a_number_field_takes_an_integer():
    cfg = compare.load_config(None)
    cfg.projector_scale, cfg.evaluation.temperature = 1, 1
    compare.validate_config(cfg)
    assert cfg.projector_scale == 1 and isinstance(cfg.projector_scale, int)  # kept as written


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch: 8", f"epoch is not a field; fields: {FIELDS}."),
        (
            "curves: {per_clas: 4}",
            "curves.per_clas is not a field; fields: ['per_class', 'every_n_epochs'].",
        ),
        ("geometry: {transfer: {datasets: mnist}}", "geometry.transfer.datasets is not a field"),
    ],
)
def test_an_unknown_field_is_named_with_the_fields_beside_it(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _validate(_study(tmp_path, text))


def test_the_removed_fields_say_what_replaced_them(tmp_path):
    with pytest.raises(ConfigError, match="floors.seed was removed"):
        _validate(_study(tmp_path, "floors: {seed: 3}"))
    with pytest.raises(ConfigError, match="tuning.clamp_rs was replaced by tuning.method_kwargs"):
        _validate(_study(tmp_path, "tuning: {clamp_rs: [5.0]}"))


def test_a_required_field_left_out_is_named(tmp_path):
    cfg = compare.load_config(None)
    del cfg["batch_size"]
    with pytest.raises(ConfigError, match=r"^batch_size is required\.$"):
        compare.validate_config(cfg)


def test_the_command_reports_a_wrong_type_in_one_line(tmp_path, capsys):
    path = _study(tmp_path, "epochs: abc")
    assert main(["compare", "--config", str(path), "--configs-only", "--out", str(tmp_path)]) == 2
    assert "epochs must be a positive integer, got 'abc'." in capsys.readouterr().err
    out = str(tmp_path / "out")
    assert main(["compare", "--set", "tuning.curves=1", "--configs-only", "--out", out]) == 2
    assert "tuning.curves must be true or false, got 1." in capsys.readouterr().err


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path, tmp_path):
    cfg = compare.load_config(path)
    if cfg.dataset == "imagenet100":  # its ImageFolder paths are the user's
        cfg.data.train_path = cfg.data.val_path = str(tmp_path)
    compare.validate_config(cfg)
    cfg.extra_field = 1  # untyped: later code may add fields
    assert OmegaConf.select(cfg, "geometry.transfer.train_per_class") is not None


def test_the_defaults_fill_what_a_config_leaves_out(tmp_path):
    path = tmp_path / "minimal.yaml"
    shipped = OmegaConf.load(compare.CONFIG_DIR / "fashion_mnist.yaml")
    required = ("methods", "recipes", "augmentations", "epochs", "batch_size")
    OmegaConf.save(OmegaConf.masked_copy(shipped, list(required)), path)
    cfg = compare.load_config(path)
    compare.validate_config(cfg)
    assert cfg.dataset == "fashion_mnist" and list(cfg.seeds) == [0]
    assert cfg.evaluation.few_label.per_class == 5 and cfg.tuning.max_extensions == 2
    assert cfg.scheduler == {"name": "warmup_cosine", "warmup_epochs": 0}
    assert set(list(cfg)[-len(required) :]) == set(required)  # after the defaults' fields


@pytest.mark.parametrize(
    "base_value, file_value, expected",
    [
        ("[0.1, 0.3, 1.0]", "{clamp: [0.3], simclr: [1.0]}", {"clamp": [0.3], "simclr": [1.0]}),
        ("{clamp: [0.3]}", "[0.1, 1.0]", [0.1, 1.0]),
    ],
)
def test_a_file_may_give_a_field_another_shape_than_its_base(
    tmp_path, base_value, file_value, expected
):
    """tuning.lr_multipliers is a list or a per-method mapping: a file's replaces its base's
    (OmegaConf alone cannot merge a mapping over a list)."""
    base = tmp_path / "base.yaml"
    base.write_text(
        f"base: {compare.CONFIG_DIR / 'fashion_mnist.yaml'}\n"
        f"tuning:\n  enabled: true\n  lr_multipliers: {base_value}\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text(f"base: base.yaml\ntuning:\n  lr_multipliers: {file_value}\n")
    cfg = compare.load_config(child)
    assert OmegaConf.to_container(cfg.tuning.lr_multipliers) == expected
    assert cfg.tuning.enabled is True  # the rest of the section still merges
