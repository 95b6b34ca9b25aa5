"""``solo-clamp compare`` against the real solo-learn: a tiny end-to-end comparison, resume,
the plan's budget arithmetic, config checks and the shipped configs."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from clamp_testing import tiny_comparison_config
from omegaconf import OmegaConf

from solo_clamp import compare
from solo_clamp.cli import build_parser, main
from solo_clamp.commands import CommandError
from solo_clamp.commands import compare as compare_command
from solo_clamp.compare import report, runner
from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.report import write_results_md
from solo_clamp.compare.run_cfg import RUN_YAML, parse, solo_cfg

SHIPPED = sorted(p for p in compare.CONFIG_DIR.glob("*.yaml") if p != RUN_YAML)
EXPECTED_RUNS = [
    "floor-raw_pixels",
    "floor-untrained-s0",
    "clamp-equal_epochs-s0",
    "clamp-equal_compute-s0",
    "simclr-equal_epochs-s0",
]


@pytest.fixture
def tiny_config(tmp_path, image_folder_factory) -> Path:
    """The default config on a generated 3-class ImageFolder: 24 training images, batch 8,
    16-px views (a quarter of the compute of 32 px: the test stays quick on a busy machine)."""
    cfg = tiny_comparison_config(
        image_folder_factory, 8, seeds=[0], epochs=2, evaluation={"linear": {"epochs": 10}}
    )
    path = tmp_path / "tiny.yaml"
    OmegaConf.save(OmegaConf.create(cfg), path)
    return path


def _compare(config: Path, out: Path, *extra: str) -> int:
    return main(["compare", "--config", str(config), "--out", str(out), "--budget", "both", *extra])


def _interrupt_simclr(monkeypatch) -> None:
    """Ctrl-C inside Lightning's fit of the SimCLR run (Lightning swallows KeyboardInterrupt
    and marks the trainer interrupted)."""
    from lightning.pytorch.callbacks import Callback

    from solo_clamp.compare import training

    class CtrlC(Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            if pl_module.cfg.method == "simclr" and trainer.global_step >= 2:
                raise KeyboardInterrupt

    original = training.build_trainer

    def build_trainer(cfg, loggers, callbacks):
        return original(cfg, loggers, [*callbacks, CtrlC()])

    monkeypatch.setattr(training, "build_trainer", build_trainer)


@pytest.mark.filterwarnings("ignore:Detected KeyboardInterrupt")
def test_tiny_comparison_interrupt_resume_and_skip(tiny_config, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    runs = out / "runs"

    # 1. Interrupted during the last run: the finished runs are kept and reported.
    _interrupt_simclr(monkeypatch)
    assert _compare(tiny_config, out) == 130
    captured = capsys.readouterr()
    assert "stopped: 4 finished run(s) are saved" in captured.out
    assert sorted(p.parent.name for p in runs.glob("*/result.json")) == sorted(EXPECTED_RUNS[:4])
    assert (
        "Unfinished runs (not in the table): simclr-equal_epochs-s0."
        in (out / "results.md").read_text()
    )
    monkeypatch.undo()

    # 2. Resume: the finished runs are skipped, the interrupted one starts over.
    calls: list[str] = []
    original_train = runner.train

    def counting_train(cfg, spec, *args, **kwargs):
        calls.append(spec.run_id)
        return original_train(cfg, spec, *args, **kwargs)

    monkeypatch.setattr(runner, "train", counting_train)
    assert _compare(tiny_config, out) == 0
    printed = capsys.readouterr().out
    assert calls == ["simclr-equal_epochs-s0"]
    assert "skipping 4 finished run(s): " + ", ".join(EXPECTED_RUNS[:4]) in printed
    assert "trained 1 run(s), skipped 4 finished" in printed
    monkeypatch.undo()

    # 3. The outputs: table, reports, configs, backbones, curves.
    with (out / "results.csv").open() as handle:
        reader = csv.DictReader(handle)
        table = list(reader)
    assert tuple(reader.fieldnames) == compare.RESULT_COLUMNS
    rows = {row["run_id"]: row for row in table if row["kind"] in ("floor", "run")}
    assert list(rows) == EXPECTED_RUNS
    assert [row["kind"] for row in rows.values()] == ["floor", "floor", "run", "run", "run"]
    assert {row["kind"] for row in table} == {"floor", "run", "curve"}  # no tuning here
    spe = 24 // 8
    assert int(rows["clamp-equal_epochs-s0"]["steps"]) == 2 * spe
    assert int(rows["simclr-equal_epochs-s0"]["steps"]) == 2 * spe
    assert int(rows["clamp-equal_compute-s0"]["steps"]) == spe  # 2/V of the epochs, V = 4
    assert (
        rows["clamp-equal_compute-s0"]["views_seen"] == rows["simclr-equal_epochs-s0"]["views_seen"]
    )  # equal views x images
    for row in rows.values():
        for key in ("knn_top1", "linear_top1"):
            assert 0.0 <= float(row[key]) <= 100.0

    md = (out / "results.md").read_text()
    assert "| budget | method | views | epochs |" in md and "## Against the floors" in md
    assert "| equal_epochs | clamp | 4 | 2 |" in md
    assert "| equal_compute | clamp | 4 | 1 |" in md
    assert "simclr (same run as equal_epochs)" in md
    assert "| floor | raw pixels (16 px) |" in md
    assert "| floor | untrained resnet18 | – | 0 | 0 | 1 |" in md
    assert "Unfinished runs" not in md
    for name in ("curves_loss.png", "curves_knn.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    solo_cfg = OmegaConf.load(runs / "clamp-equal_epochs-s0" / "config.yaml")
    assert solo_cfg.method == "clamp" and solo_cfg.data.num_large_crops == 4
    assert solo_cfg.method_kwargs.proj_hidden_dim == 512  # 2048 x projector_scale 0.25
    simclr_cfg = OmegaConf.load(runs / "simclr-equal_epochs-s0" / "config.yaml")
    assert simclr_cfg.data.num_large_crops == 2
    state = torch.load(runs / "clamp-equal_epochs-s0" / "backbone.pt", weights_only=True)
    assert "conv1.weight" in state and "fc.weight" not in state

    curves = {
        run: json.loads((runs / run / "result.json").read_text())["curve"]
        for run in EXPECTED_RUNS[2:]
    }
    assert [p["epoch"] for p in curves["clamp-equal_epochs-s0"]] == [0, 1, 2]
    assert [p["epoch"] for p in curves["clamp-equal_compute-s0"]] == [0, 1]
    assert all(
        p["loss"] is not None and p["knn_top1"] is not None for c in curves.values() for p in c[1:]
    )
    # every method of a seed starts from the same backbone: same probe score before training,
    # which is the untrained floor's score on the probe set (the curves' reference line)
    assert len({c[0]["knn_top1"] for c in curves.values()}) == 1
    # results.csv holds every curve point, named by its run
    for run, curve in curves.items():
        points = [row for row in table if row["kind"] == "curve" and row["run_id"] == run]
        assert [int(p["curve_epoch"]) for p in points] == [p["epoch"] for p in curve]
        assert [float(p["curve_knn_top1"]) for p in points] == pytest.approx(
            [p["knn_top1"] for p in curve]
        )
        assert points[0]["curve_loss"] == "" and float(points[-1]["curve_loss"]) > -1e9
    floors = {
        f: json.loads((runs / run / "result.json").read_text())
        for f, run in (("raw_pixels", "floor-raw_pixels"), ("untrained", "floor-untrained-s0"))
    }
    assert floors["untrained"]["probe_knn_top1"] == pytest.approx(
        curves["clamp-equal_epochs-s0"][0]["knn_top1"], abs=1e-6
    )
    assert 0.0 <= floors["raw_pixels"]["probe_knn_top1"] <= 100.0

    # Provenance on every row; the page is what the template renders, byte for byte; a study
    # page keeps its own text above the marker and the tool's output below it.
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in (r for r in rows if r["kind"] in ("run", "floor")):
        assert len(row["commit"]) == 40 and row["dirty"] in ("True", "False")
        assert row["torch"] and row["solo_learn"].startswith("1.0.6") and row["lightning"]
        assert row["cpu"] and int(row["threads"]) >= 1 and len(row["data_sha256"]) == 64
    rendered = tmp_path / "rendered.md"
    results = {p.parent.name: json.loads(p.read_text()) for p in runs.glob("*/result.json")}
    ordered = {k: results[k] for k in EXPECTED_RUNS if k in results}
    write_results_md(compare.load_config(tiny_config), ordered, rendered)
    assert rendered.read_bytes() == (out / "results.md").read_bytes()
    page = tmp_path / "page"
    page.mkdir()
    (page / "results.md").write_text("# A study\n\nWhy it was run.\n")
    compare.publish(out, page)
    compare.publish(out, page)  # again: the hand-written text is kept once
    text = (page / "results.md").read_text()
    intro, tool = text.split(report.TOOL_OUTPUT_MARKER)
    assert intro == "# A study\n\nWhy it was run.\n\n"
    assert tool.encode() == b"\n\n" + (out / "results.md").read_bytes()
    assert (page / "results.csv").read_bytes() == (out / "results.csv").read_bytes()

    # 4. Everything finished: nothing trains and no result file is rewritten.
    results = sorted(runs.glob("*/result.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in results}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "train", no_training)
    assert _compare(tiny_config, out) == 0
    printed = capsys.readouterr().out
    assert "skipping 5 finished run(s): " + ", ".join(EXPECTED_RUNS) in printed
    assert "trained 0 run(s), skipped 5 finished" in printed
    assert {p: p.stat().st_mtime_ns for p in results} == mtimes

    # 5. --configs-only writes the very cfgs the trained runs wrote, and trains nothing.
    configs = tmp_path / "configs"
    assert _compare(tiny_config, configs, "--configs-only") == 0
    written = sorted(configs.glob("runs/*/config.yaml"))
    assert [p.parent.name for p in written] == sorted(EXPECTED_RUNS[2:])
    for path in written:
        assert path.read_text() == (runs / path.parent.name / "config.yaml").read_text()
    assert (configs / "compare_config.yaml").read_text() == (
        out / "compare_config.yaml"
    ).read_text()
    assert not list(configs.glob("runs/*/result.json")) and not (configs / "results.md").exists()


def _cfg(**overrides):
    cfg = compare.load_config(None)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def test_plan_budgets_and_seed_major_order():
    cfg = _cfg(seeds=[0, 1], epochs=6)
    runs = compare.plan_runs(cfg, steps_per_epoch=10)
    ids = [r.run_id for r in runs]
    assert ids[:5] == [
        "clamp-equal_epochs-s0",
        "clamp-equal_compute-s0",
        "simclr-equal_epochs-s0",
        "byol-equal_epochs-s0",
        "vicreg-equal_epochs-s0",
    ]
    assert len(ids) == 10 and ids[5].endswith("-s1")
    steps = {r.run_id: r.steps for r in runs}
    assert steps["clamp-equal_epochs-s0"] == steps["simclr-equal_epochs-s0"] == 60
    assert steps["clamp-equal_compute-s0"] == 30
    cfg.recipes.clamp.views = 8
    clamp = {r.budget: r for r in compare.plan_runs(cfg, 10) if r.method == "clamp"}
    assert clamp["equal_compute"].steps == 15 and clamp["equal_compute"].max_epochs == 2
    cfg.budgets = ["equal_compute"]  # 2-view methods still get their (shared) run
    assert {r.run_id for r in compare.plan_runs(cfg, 10)} >= {"simclr-equal_epochs-s0"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"dataset": "svhn"}, "dataset must be one of"),
        ({"methods": ["clamp", "dino"]}, "'dino' has no recipe"),
        ({"budgets": ["equal_flops"]}, "budgets must be a non-empty subset"),
        ({"seeds": [0, 0]}, "seeds must not repeat"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"projector_scale": 2.0}, "projector_scale must be in (0, 1]"),
        ({"recipes.clamp.views": 1}, "recipes.clamp.views must be an integer >= 2"),
        ({"recipes.vicreg.views": 4}, "recipes.vicreg.views must be exactly 2"),
        (
            {"dataset": "imagenet100", "data.train_per_class": None, "data.val_per_class": None},
            "data.train_path is required",
        ),
        ({"dataset": "cifar10"}, "data.train_per_class applies only to the datasets"),
        ({"evaluation.few_label.enabled": "yes"}, "evaluation.few_label.enabled must be true"),
        ({"evaluation.few_label.per_class": 0}, "evaluation.few_label.per_class must be a posi"),
        (
            {"evaluation.few_label.draws": 2.5},
            "evaluation.few_label.draws must be a positive integer, got 2.5",
        ),
        ({"evaluation.few_label.seed": None}, "evaluation.few_label.seed must be an integer"),
        (
            {"evaluation.few_label.feature_augment.samples": -1},
            "evaluation.few_label.feature_augment.samples must be an integer >= 0",
        ),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare.validate_config(_cfg(**overrides))


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch, capsys):
    from solo_clamp.data import prepare

    spec = dataclasses.replace(prepare.DATASETS["fashion_mnist"], default_dirs=(tmp_path,))
    monkeypatch.setitem(prepare.DATASETS, "fashion_mnist", spec)
    monkeypatch.delenv(spec.env_var, raising=False)
    assert main(["compare", "--quick", "--out", str(tmp_path / "out")]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_build_solo_learn_cfgs(path, tmp_path):
    """Every shipped config validates, and every method's cfg passes solo-learn's parse_cfg
    and the method's own checks with the views the budget implies."""
    from solo.methods import METHODS

    import solo_clamp.methods  # noqa: F401 - registers METHODS["clamp"]

    cfg = compare.load_config(path)
    if cfg.dataset == "imagenet100":
        cfg.data.train_path = cfg.data.val_path = str(tmp_path)
    compare.validate_config(cfg)
    solo_name = {"fashion_mnist": "custom", "mnist": "custom"}.get(cfg.dataset, cfg.dataset)
    data = ComparisonData(cfg.dataset, solo_name, str(tmp_path), str(tmp_path))
    (tmp_path / "class_a").mkdir(exist_ok=True)
    for spec in compare.plan_runs(cfg, steps_per_epoch=10):
        solo = parse(solo_cfg(cfg, spec, data))
        solo = METHODS[solo.method].add_and_assert_specific_cfg(solo)
        assert solo.data.num_large_crops == spec.views and solo.data.num_small_crops == 0
        assert solo.max_steps == spec.steps


def test_run_cfg_is_the_skeleton_then_the_recipe_then_the_run(tmp_path):
    """A run's cfg: run.yaml's shared fields (from the comparison config), the method's recipe
    (without views), then the run's own values (scaled projector, tuned lr and kwargs)."""
    from solo_clamp.compare.plan import RunSpec, Setting

    cfg = _cfg(**{"trainer.channels_last": True, "trainer.accelerator": "gpu"})
    cfg.recipes.byol.scheduler = {"min_lr": 1.0e-5}  # a recipe may carry any solo-learn field
    data = ComparisonData("fashion_mnist", "custom", str(tmp_path), str(tmp_path))
    spec = RunSpec("clamp", "equal_epochs", 3, 4, 25, 10, 64, Setting(0.3, 0.3, (("rs", 5.0),)))
    solo = solo_cfg(cfg, spec, data)
    assert (solo.name, solo.method, solo.seed) == ("clamp-equal_epochs-s3", "clamp", 3)
    assert (solo.max_steps, solo.max_epochs) == (25, 3)
    assert solo.accelerator == "gpu" and solo.performance.disable_channel_last is False
    assert solo.checkpoint.enabled is False and solo.knn_eval.enabled is False
    assert solo.data.train_path == str(tmp_path) and solo.data.format == "image_folder"
    assert "views" not in solo and [a.num_crops for a in solo.augmentations] == [4]
    assert solo.optimizer.lr == 0.3 and solo.optimizer.batch_size == 64
    assert solo.optimizer.weight_decay == cfg.recipes.clamp.optimizer.weight_decay
    assert solo.method_kwargs.rs == 5.0 and solo.method_kwargs.proj_hidden_dim == 512
    # one warm-up policy: the study's warm-up scaled to the run's 2.5 of the study's epochs
    warmup = cfg.scheduler.warmup_epochs * 2.5 / cfg.epochs
    assert dict(solo.scheduler) == {**dict(cfg.scheduler), "warmup_epochs": warmup}
    byol = solo_cfg(cfg, RunSpec("byol", "equal_epochs", 0, 2, 10, 10, 64), data)
    assert byol.optimizer.lr == cfg.recipes.byol.optimizer.lr  # the recipe's, untuned
    assert byol.scheduler.min_lr == 1.0e-5 and byol.scheduler.name == cfg.scheduler.name
    assert byol.momentum.base_tau == 0.99


def test_views_flag_sets_every_method_that_takes_more_than_two_views(tmp_path):
    import argparse

    from solo_clamp.commands.compare import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = build_config(parser.parse_args(["--views", "8", "--methods", "clamp", "simclr"]))
    views = {method: recipe.get("views", 2) for method, recipe in cfg.recipes.items()}
    assert views == {"clamp": 8, "simclr": 2, "byol": 2, "vicreg": 2, "manifoldclr": 2}


def _compare_args(*argv: str):
    """``solo-clamp compare ARGV`` parsed by the real command-line parser."""
    return compare_command, build_parser().parse_args(["compare", *argv])


def test_compare_set_overrides_existing_fields_after_the_flags():
    command, args = _compare_args(
        "--views",
        "8",
        "--set",
        "recipes.clamp.method_kwargs.rs=5.5",
        "recipes.clamp.optimizer.lr=0.25",
        "recipes.clamp.views=6",
        "seeds=[3,4]",
        "augmentations.0.rrc.crop_min_scale=0.6",
        "recipes.byol.momentum={base_tau: 0.9}",
    )
    cfg = command.build_config(args)
    assert cfg.augmentations[0].rrc.crop_min_scale == 0.6  # a list index in the key
    assert cfg.augmentations[0].rrc.crop_max_scale == 1.0
    assert cfg.recipes.byol.momentum == {"base_tau": 0.9, "final_tau": 1.0}  # mappings merge
    assert cfg.recipes.clamp.method_kwargs.rs == 5.5
    assert cfg.recipes.clamp.optimizer.lr == 0.25
    assert cfg.recipes.clamp.views == 6  # --set is applied after --views
    assert list(cfg.seeds) == [3, 4]
    assert cfg.recipes.simclr.optimizer.lr == 0.4  # untouched


@pytest.mark.parametrize(
    "item, message",
    [
        ("recipes.clamp.method_kwargs.rz=5", "no field 'recipes.clamp.method_kwargs.rz'"),
        ("rs", "KEY=VALUE"),
        ("recipes.clamp.views=1", "recipes.clamp.views must be an integer >= 2"),
    ],
)
def test_compare_set_rejects_unknown_fields_and_bad_values(item, message):
    command, args = _compare_args("--set", item)
    with pytest.raises((CommandError, ValueError), match=message):
        command.build_config(args)


def test_data_hash_changes_when_one_image_changes(tiny_config, tmp_path):
    from solo_clamp.compare.data import data_sha256, prepare_data

    cfg = compare.load_config(tiny_config)
    data = prepare_data(cfg)
    before = data_sha256(cfg, data)
    assert data_sha256(cfg, data) == before  # deterministic
    train = sorted(Path(data.train_path).rglob("*.png"))[3]
    train.write_bytes(train.read_bytes() + b"\0")
    changed = data_sha256(cfg, data)
    assert changed != before
    test = sorted(Path(data.val_path).rglob("*.png"))[0]
    test.write_bytes(test.read_bytes() + b"\0")
    assert data_sha256(cfg, data) not in (before, changed)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_per_image_knn_predictions_score_what_solo_learns_knn_scores(distance):
    """The per-image labels a bootstrap resamples give solo-learn's own kNN accuracy."""
    from solo_clamp.evaluation import knn_accuracy, knn_predictions

    generator = torch.Generator().manual_seed(0)
    train_y = torch.randint(0, 10, (600,), generator=generator)
    test_y = torch.randint(0, 10, (900,), generator=generator)
    train = torch.randn(600, 32, generator=generator)
    test = torch.randn(900, 32, generator=generator)
    train[:, :10] += 2 * torch.nn.functional.one_hot(train_y, 10)
    test[:, :10] += 2 * torch.nn.functional.one_hot(test_y, 10)
    top1, _ = knn_accuracy(train, train_y, test, test_y, k=20, distance=distance)
    predicted = knn_predictions(train, train_y, test, k=20, distance=distance, chunk_size=128)
    assert float((predicted == test_y).float().mean() * 100) == pytest.approx(top1, abs=1e-4)
