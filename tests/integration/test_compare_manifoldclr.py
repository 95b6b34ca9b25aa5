"""ManifoldCLR in ``solo-clamp compare`` against the real solo-learn: its recipe in the shipped
MNIST / Fashion-MNIST configs (not in their default ``methods``), a later ``--methods ...
manifoldclr`` on an existing output that trains only ManifoldCLR, its row, its curve and its
few-label probes with its feature augmentation, ``--configs-only``, and its tuning grid."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from clamp_testing import tiny_comparison_config
from omegaconf import OmegaConf

from solo_clamp import compare
from solo_clamp.cli import main
from solo_clamp.compare import runner
from solo_clamp.compare.data import ComparisonData
from solo_clamp.compare.run_cfg import parse, solo_cfg
from solo_clamp.compare.tuning import trial_specs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN = "manifoldclr-equal_epochs-s0"
# the official 3e-3 at batch 512 (kfallah/manifold-contrastive), stated per 256 images
OFFICIAL_LR_PER_256 = 1.5e-3
TINY_KWARGS = {
    "dictionary_size": 4,
    "vi_hidden_dim": 16,
    "max_elbo_samples": 2,
    "prior_warmup_steps": 2,
    "max_elbo_start_step": 2,
}


@pytest.fixture
def tiny_config(tmp_path, image_folder_factory) -> Path:
    """SimCLR alone by default, on 24 generated images (batch 8, 16-px views, 2 epochs); the
    shipped ManifoldCLR recipe with fewer operators and narrower coefficient networks, and its
    prior warm-up and max-ELBO draws within the run's 6 steps; few-label probes of 2 labelled
    images per class, 5 draws, with 3 samples of a method's feature augmentation."""
    few_label = {"enabled": True, "per_class": 2, "draws": 5, "feature_augment": {"samples": 3}}
    cfg = tiny_comparison_config(
        image_folder_factory,
        8,
        methods=["simclr"],
        seeds=[0],
        epochs=2,
        evaluation={"linear": {"epochs": 5}, "few_label": few_label},
        recipes={"manifoldclr": {"method_kwargs": TINY_KWARGS}},
    )
    path = tmp_path / "tiny.yaml"
    OmegaConf.save(OmegaConf.create(cfg), path)
    return path


def _compare(config: Path, out: Path, *extra: str) -> int:
    return main(["compare", "--config", str(config), "--out", str(out), "--budget", "both", *extra])


def test_adding_manifoldclr_later_trains_only_it(tiny_config, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert _compare(tiny_config, out) == 0
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert sorted(finished) == ["floor-raw_pixels", "floor-untrained-s0", "simclr-equal_epochs-s0"]
    capsys.readouterr()

    trained: list[str] = []
    original_train = runner.train

    def counting_train(cfg, spec, *args, **kwargs):
        trained.append(spec.run_id)
        return original_train(cfg, spec, *args, **kwargs)

    monkeypatch.setattr(runner, "train", counting_train)
    assert _compare(tiny_config, out, "--methods", "simclr", "manifoldclr") == 0
    assert trained == [RUN]  # both budgets: one 2-view run
    assert "trained 1 run(s), skipped 3 finished" in capsys.readouterr().out
    assert {p: (out / "runs" / p / "result.json").stat().st_mtime_ns for p in finished} == finished

    with (out / "results.csv").open() as handle:
        rows = {row["run_id"]: row for row in csv.DictReader(handle) if row["kind"] == "run"}
    row = rows[RUN]
    assert (row["method"], row["views"], row["steps"]) == ("manifoldclr", "2", "6")
    assert row["views_seen"] == rows["simclr-equal_epochs-s0"]["views_seen"]
    assert float(row["lr"]) == OFFICIAL_LR_PER_256 and row["lr_multiplier"] == row["tuned"] == ""
    assert 0.0 <= float(row["knn_top1"]) <= 100.0 and 0.0 <= float(row["linear_top1"]) <= 100.0
    md = (out / "results.md").read_text()
    assert "| equal_epochs | manifoldclr | 2 | 2 |" in md
    assert "manifoldclr (same run as equal_epochs)" in md

    # few-label probes: ManifoldCLR also with its prior's samples (the same draws), SimCLR not
    for name in ("few_label", "few_label_augmented"):
        per_draw = [float(v) for v in row[f"{name}_per_draw"].split(";")]
        assert len(per_draw) == 5 and all(0.0 <= v <= 100.0 for v in per_draw)
        assert float(row[f"{name}_mean"]) == pytest.approx(sum(per_draw) / 5)
    simclr = rows["simclr-equal_epochs-s0"]
    assert simclr["few_label_mean"] != "" and simclr["few_label_augmented_mean"] == ""
    stored = json.loads((out / "runs" / RUN / "result.json").read_text())
    assert (
        stored["few_label_images"]
        == json.loads((out / "runs" / "simclr-equal_epochs-s0" / "result.json").read_text())[
            "few_label_images"
        ]
    )
    assert "| + 3 prior samples | per seed | spread over draws |" in md
    few_label = md.split("## Few-label probes")[1]
    assert f"| equal_epochs | manifoldclr | 1 | {float(row['few_label_mean']):.2f}" in few_label
    # the only method with a feature augmenter: a lone entry, never bold; SimCLR's is empty
    assert f"| {float(row['few_label_augmented_mean']):.2f} | " in few_label
    assert "| equal_epochs | simclr | 1 |" in few_label and "| – | – | – |" in few_label

    curve = json.loads((out / "runs" / RUN / "result.json").read_text())["curve"]
    assert [p["epoch"] for p in curve] == [0, 1, 2]
    assert all(p["loss"] is not None and p["knn_top1"] is not None for p in curve[1:])
    simclr_curve = json.loads(
        (out / "runs" / "simclr-equal_epochs-s0" / "result.json").read_text()
    )["curve"]
    assert curve[0]["knn_top1"] == simclr_curve[0]["knn_top1"]  # the same initial backbone

    solo_cfg = OmegaConf.load(out / "runs" / RUN / "config.yaml")
    assert solo_cfg.method == "manifoldclr" and solo_cfg.data.num_large_crops == 2
    kwargs = solo_cfg.method_kwargs
    assert (kwargs.proj_hidden_dim, kwargs.proj_output_dim) == (256, 32)  # x projector_scale
    assert (kwargs.block_dim, kwargs.vi_hidden_dim) == (16, 16)  # not projector widths
    assert solo_cfg.optimizer.name == "adamw"

    # --configs-only writes the very cfg the trained run wrote
    configs = tmp_path / "configs"
    assert _compare(tiny_config, configs, "--methods", "manifoldclr", "--configs-only") == 0
    assert [p.parent.name for p in configs.glob("runs/*/config.yaml")] == [RUN]
    assert (configs / "runs" / RUN / "config.yaml").read_text() == (
        out / "runs" / RUN / "config.yaml"
    ).read_text()


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_shipped_recipe_builds_a_valid_solo_learn_cfg(dataset, tmp_path):
    from solo.methods import METHODS

    import solo_clamp

    solo_clamp.register()
    cfg = compare.load_config(None, dataset)
    assert "manifoldclr" in cfg.recipes and "manifoldclr" not in cfg.methods
    cfg.methods = ["clamp", "simclr", "byol", "vicreg", "manifoldclr"]
    compare.validate_config(cfg)
    data = ComparisonData(dataset, "custom", str(tmp_path), str(tmp_path))
    (tmp_path / "class_a").mkdir()
    specs = [s for s in compare.plan_runs(cfg, steps_per_epoch=10) if s.method == "manifoldclr"]
    assert [s.run_id for s in specs] == [
        "manifoldclr-equal_epochs-s0",
        "manifoldclr-equal_epochs-s1",
    ]
    solo = parse(solo_cfg(cfg, specs[0], data))
    solo = METHODS["manifoldclr"].add_and_assert_specific_cfg(solo)
    assert solo.data.num_large_crops == 2 and solo.max_steps == 80
    assert solo.method_kwargs.dictionary_size == 32
    assert solo.method_kwargs.block_dim == 16 and solo.method_kwargs.vi_hidden_dim == 512
    assert solo.optimizer.lr == pytest.approx(OFFICIAL_LR_PER_256 * 64 / 256)


def test_tuning_grid_is_the_lr_multipliers_without_rs():
    cfg = compare.load_config(compare.CONFIG_DIR / "fashion_mnist_tuned.yaml")
    cfg.methods = [*cfg.methods, "manifoldclr"]
    compare.validate_config(cfg)  # equal trials: 4 per method
    trials = [s for s in trial_specs(cfg, steps_per_epoch=10) if s.method == "manifoldclr"]
    # the recipe's lr 1.5e-3 times the multipliers [0.03, 0.1, 0.3, 1]
    assert [s.run_id for s in trials] == [
        "manifoldclr-lr4.5e-05-s0",
        "manifoldclr-lr0.00015-s0",
        "manifoldclr-lr0.00045-s0",
        "manifoldclr-lr0.0015-s0",
    ]
    assert (trials[0].setting.lr, trials[0].setting.tuned) == (4.5e-05, {})
    data = ComparisonData("fashion_mnist", "custom", "unused", "unused")
    assert solo_cfg(cfg, trials[0], data).optimizer.lr == 4.5e-05


def test_the_mechanism_grid_keeps_the_stopped_gradient_as_its_control():
    """A null in a kwarg grid is a value: the shipped recipe's stopped transport gradient
    trains beside the recipes in which the transport term trains the backbone."""
    cfg = compare.load_config(compare.CONFIG_DIR / "mnist_manifoldclr_mechanism.yaml")
    compare.validate_config(cfg)
    trials = trial_specs(cfg, steps_per_epoch=156)
    assert len(trials) == 9 and {s.steps for s in trials} == {312}
    starts = [s.setting.tuned["transport_grad_start_step"] for s in trials]
    assert starts == [None] * 3 + [0] * 3 + [156] * 3
    assert trials[0].run_id == "manifoldclr-lr0.0015-transport_grad_start_stepNone-mse_weight50-s0"
    data = ComparisonData("mnist", "custom", "unused", "unused")
    assert solo_cfg(cfg, trials[0], data).method_kwargs.transport_grad_start_step is None
    assert solo_cfg(cfg, trials[3], data).method_kwargs.transport_grad_start_step == 0


def test_manifoldclr_views_must_be_two():
    cfg = compare.load_config(None)
    cfg.methods = ["manifoldclr"]
    cfg.recipes.manifoldclr.views = 4
    with pytest.raises(
        ValueError, match=r"recipes.manifoldclr.views must be exactly 2 \(the method's"
    ):
        compare.validate_config(cfg)


def test_an_ablation_entry_trains_beside_the_full_method(tmp_path, image_folder_factory):
    """``recipes.<entry>.method``: the c = 0 ablation as its own entry of ``methods``; its runs
    are ManifoldCLR with the operators off, compared as a method, without prior samples."""
    few_label = {"enabled": True, "per_class": 2, "draws": 2, "feature_augment": {"samples": 3}}
    cfg = tiny_comparison_config(
        image_folder_factory,
        8,
        methods=["manifoldclr", "manifoldclr_c0"],
        seeds=[0],
        epochs=1,
        evaluation={"linear": {"epochs": 2}, "few_label": few_label},
        recipes={
            "manifoldclr": {"method_kwargs": TINY_KWARGS},
            # only what differs: the rest is recipes.manifoldclr's
            "manifoldclr_c0": {"method": "manifoldclr", "method_kwargs": {"use_operators": False}},
        },
    )
    config = tmp_path / "tiny.yaml"
    OmegaConf.save(OmegaConf.create(cfg), config)
    out = tmp_path / "out"
    assert _compare(config, out) == 0
    solo = OmegaConf.load(out / "runs" / "manifoldclr_c0-equal_epochs-s0" / "config.yaml")
    assert solo.method == "manifoldclr" and solo.method_kwargs.use_operators is False
    assert solo.method_kwargs.dictionary_size == TINY_KWARGS["dictionary_size"]
    assert solo.optimizer.name == "adamw"  # the full method's recipe
    assert "method" not in OmegaConf.load(out / "runs" / RUN / "config.yaml").method_kwargs
    with (out / "results.csv").open() as handle:
        rows = {row["run_id"]: row for row in csv.DictReader(handle) if row["kind"] == "run"}
    assert rows["manifoldclr_c0-equal_epochs-s0"]["method"] == "manifoldclr_c0"
    assert rows["manifoldclr_c0-equal_epochs-s0"]["few_label_augmented_mean"] == ""
    assert rows[RUN]["few_label_augmented_mean"] != ""
    md = (out / "results.md").read_text()
    assert "methods that have one: manifoldclr)" in md
    assert "| equal_epochs | manifoldclr_c0 |" in md


def test_an_entry_names_a_method_that_exists():
    cfg = compare.load_config(None)
    cfg.recipes.typo = {"method": "manifoldcl", "views": 2}
    cfg.methods = ["typo"]
    with pytest.raises(ValueError, match=r"recipes.typo.method: 'manifoldcl' is not supported"):
        compare.validate_config(cfg)
