"""``solo-clamp compare`` with fair tuning against the real solo-learn: the validation split
(held out of training, of every kNN bank and few-label draw, never the test split), selection
by validation score, diverging trials, resume, the tables (selected settings, per-seed values,
ties, few-label probes with their spread) and the tuned presets."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Callable

import pytest
import torch
from clamp_testing import tiny_comparison_config
from omegaconf import OmegaConf

from solo_clamp import compare
from solo_clamp.cli import main
from solo_clamp.compare import runner, training
from solo_clamp.compare import trials as trials_module
from solo_clamp.compare.archive import load_archive
from solo_clamp.compare.data import ComparisonData, held_out_indices, prepare_data
from solo_clamp.compare.plan import RunSpec, Setting
from solo_clamp.compare.report import summary_rows, write_results_md
from solo_clamp.compare.tuning import Tuning, method_grid, trial_specs

TRIALS = ["clamp-lr0.5-s0", "clamp-lr1e+30-s0", "simclr-lr0.2-s0", "simclr-lr4e+29-s0"]


@pytest.fixture
def tuned_config(tmp_path, image_folder_factory) -> Path:
    """CLAMP and SimCLR on a generated 3-class ImageFolder (10 training images per class, 2 of
    them held out for validation), 16-px views, batch 8; lr multipliers 0.5 and 1e30 (the
    latter diverges: CLAMP raises FloatingPointError, SimCLR's loss turns NaN); two seeds;
    few-label probes of 2 labelled images per class, 5 draws."""
    cfg = tiny_comparison_config(
        image_folder_factory,
        10,
        budgets=["equal_epochs"],
        seeds=[0, 1],
        epochs=1,
        evaluation={
            "linear": {"epochs": 5},
            "few_label": {"enabled": True, "per_class": 2, "draws": 5, "seed": 3},
        },
        tuning={
            "enabled": True,
            "lr_multipliers": [0.5, 1.0e30],
            "val_per_class": 2,
            "epochs": 1,
            "seed": 0,
            "max_extensions": 0,  # bracketing: see test_tuning_picks_the_best_..._brackets_it
        },
    )
    path = tmp_path / "tuned.yaml"
    OmegaConf.save(OmegaConf.create(cfg), path)
    return path


def _paths(dataset, indices) -> set[str]:
    return {dataset.samples[i][0] for i in indices}


class Spy:
    """Records which images every stage reads: feature extraction (banks, queries, test
    images), training sets, the curves probe and every split opened during tuning."""

    def __init__(self, monkeypatch) -> None:
        from solo_clamp import evaluation

        self.stage = "final"
        self.features: list[tuple[str, str, set[str]]] = []  # (stage, desc, paths)
        self.training: list[tuple[str, set[str]]] = []
        self.probe: list[set[str]] = []
        self.splits_in_tuning: set[str] = set()
        extract, loader, load_tensors = (
            evaluation.extract_features,
            training.train_loader,
            training._load_tensors,
        )
        run_tuning, dataset = runner.run_tuning, ComparisonData.dataset

        def spy_extract(backbone, loader, desc="features", device=None):
            subset = loader.dataset
            self.features.append((self.stage, desc, _paths(subset.dataset, subset.indices)))
            return extract(backbone, loader, desc=desc, device=device)

        def spy_loader(solo_cfg, seed, held_out=()):
            built = loader(solo_cfg, seed, held_out)
            subset = built.dataset
            self.training.append((self.stage, _paths(subset.dataset, subset.indices)))
            return built

        def spy_load_tensors(dataset, indices, batch_size):
            self.probe.append(_paths(dataset, indices))
            return load_tensors(dataset, indices, batch_size)

        def spy_tuning(*args, **kwargs):
            self.stage = "tuning"
            try:
                return run_tuning(*args, **kwargs)
            finally:
                self.stage = "final"

        def spy_dataset(data, split, transform):
            if self.stage == "tuning":
                self.splits_in_tuning.add(split)
            return dataset(data, split, transform)

        monkeypatch.setattr(evaluation, "extract_features", spy_extract)
        monkeypatch.setattr(training, "train_loader", spy_loader)
        monkeypatch.setattr(training, "_load_tensors", spy_load_tensors)
        monkeypatch.setattr(runner, "run_tuning", spy_tuning)
        monkeypatch.setattr(ComparisonData, "dataset", spy_dataset)


def test_tuned_comparison(tuned_config, tmp_path, capsys, monkeypatch):
    from torchvision.datasets import ImageFolder

    out = tmp_path / "out"
    spy = Spy(monkeypatch)
    assert main(["compare", "--config", str(tuned_config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    monkeypatch.undo()

    # 1. The validation split: 2 images per class of the training split, disjoint from every
    #    image any run trains on, from every kNN bank / linear training set, from the curves
    #    probe and from the test split; the tuning stage never opens the test split.
    cfg = compare.load_config(tuned_config)
    data = prepare_data(cfg)
    train_folder = ImageFolder(cfg.data.train_path)
    validation = _paths(train_folder, data.held_out)
    assert len(validation) == 6
    assert {train_folder.samples[i][1] for i in data.held_out} == {0, 1, 2}
    test_paths = {p for p, _ in ImageFolder(cfg.data.val_path).samples}
    assert not validation & test_paths
    assert spy.splits_in_tuning == {"train"}
    tuning_reads = [(desc, paths) for stage, desc, paths in spy.features if stage == "tuning"]
    queries = [paths for _, paths in tuning_reads if paths == validation]
    banks = [paths for _, paths in tuning_reads if paths != validation]
    assert len(queries) == len(banks) == 4  # the two floors, the two finite trials
    assert all(desc == "train features" for desc, _ in tuning_reads)
    for bank in banks:
        assert len(bank) == 24 and not bank & validation
    final = [(desc, paths) for stage, desc, paths in spy.features if stage == "final"]
    final_banks = [paths for desc, paths in final if desc == "train features"]
    final_tests = [paths for desc, paths in final if desc == "val features"]
    assert final_banks and all(len(b) == 24 and not b & validation for b in final_banks)
    assert final_tests and all(t <= test_paths for t in final_tests)
    assert len(spy.training) == 4 + 4  # 4 trials (2 diverge), 2 methods x 2 seeds
    assert all(len(s) == 24 and not s & validation for _, s in spy.training)
    assert spy.probe and all(not p & validation for p in spy.probe)

    # 2. The trials: the 1e30 ones diverged (recorded, not selected), the others selected;
    #    results.csv holds them (and the validation floors) beside the runs.
    assert "tuning: trained 4 trial(s), skipped 0 finished" in printed
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    rows = {r["run_id"]: r for r in table if r["kind"] in ("trial", "validation_floor")}
    assert list(rows) == ["floor-raw_pixels", "floor-untrained", *TRIALS]
    assert {rows[f]["kind"] for f in ("floor-raw_pixels", "floor-untrained")} == {
        "validation_floor"
    }
    assert [rows[t]["status"] for t in TRIALS] == ["ok", "diverged", "ok", "diverged"]
    assert "non-finite embeddings" in rows["clamp-lr1e+30-s0"]["error"]  # CLAMP's own check
    assert "non-finite" in rows["simclr-lr4e+29-s0"]["error"]
    assert [rows[t]["selected"] for t in TRIALS] == ["True", "False", "True", "False"]
    assert [rows[t]["lr_multiplier"] for t in TRIALS] == ["0.5", "1e+30", "0.5", "1e+30"]
    for trial in TRIALS[::2]:
        assert 0.0 <= float(rows[trial]["val_knn_top1"]) <= 100.0
    for floor in ("floor-raw_pixels", "floor-untrained"):
        assert 0.0 <= float(rows[floor]["val_knn_top1"]) <= 100.0
    md = (out / "results.md").read_text()
    assert "## Tuning: validation kNN top-1 of every trial" in md
    assert "| clamp | clamp-lr0.5-s0 | 0.5 (×0.5) | – | ok |" in md
    assert "| simclr | simclr-lr4e+29-s0 | 4e+29 (×1e+30) | – | diverged | – |" in md
    assert "- clamp: lr 0.5 (×0.5)" in md and "- simclr: lr 0.2 (×0.5)" in md
    assert not (out / "tuning.csv").exists() and not (out / "tuning.md").exists()

    # 3. The final runs train at the selected settings; the table says so, with per-seed
    #    values and best / tie marks.
    for seed in (0, 1):
        clamp_cfg = OmegaConf.load(out / "runs" / f"clamp-equal_epochs-s{seed}" / "config.yaml")
        assert clamp_cfg.optimizer.lr == pytest.approx(0.5 * 8 / 256)  # solo-learn scales by B
        simclr_cfg = OmegaConf.load(out / "runs" / f"simclr-equal_epochs-s{seed}" / "config.yaml")
        assert simclr_cfg.optimizer.lr == pytest.approx(0.2 * 8 / 256)
    results = {r["run_id"]: r for r in table if r["kind"] == "run"}
    assert list(results) == [f"{m}-equal_epochs-s{s}" for s in (0, 1) for m in ("clamp", "simclr")]
    assert results["clamp-equal_epochs-s1"]["lr"] == "0.5"
    assert results["clamp-equal_epochs-s1"]["lr_multiplier"] == "0.5"
    assert results["clamp-equal_epochs-s1"]["tuned"] == ""  # only the lr is tuned here
    assert "selected on a validation split" in md
    assert "| setting | wall-clock (s) | kNN top-1 | kNN per seed |" in md
    # the tiny task saturates: the untrained backbone already scores 100 on validation, so
    # no trial is above it and both methods are shown as failed baselines, not competitors
    edge, failed = "at the edge after 0 extensions", "— failed baseline"
    assert f"| equal_epochs | clamp {failed} | 4 | 1 | 96 | 2 | lr 0.5 (×0.5), {edge} |" in md
    assert f"| equal_epochs | simclr {failed} | 2 | 1 | 48 | 2 | lr 0.2 (×0.5), {edge} |" in md
    assert "**Failed baselines (not competitors; kept out of the verdicts):**" in md
    cause = "in its 1-epoch tuning trials, every lr it tried stays at or below the untrained"
    assert f"- **clamp**: {cause}" in md and f"- **simclr**: {cause}" in md
    assert "## Verdicts" not in md  # no competitor left to compare
    assert "## Against the floors" in md
    clamp_seeds = " / ".join(
        f"{float(results[f'clamp-equal_epochs-s{s}']['knn_top1']):.2f}" for s in (0, 1)
    )
    assert clamp_seeds in md

    # 4. Few-label probes: the same 5 draws of 2 labelled images per class for every method,
    #    seed and floor, from the kNN bank: never a validation or a test image.
    stored = {**_results(out), **_results(out, "floor-*")}
    assert len(stored) == 7  # 2 methods x 2 seeds, raw pixels, the 2 seeds' untrained
    draws = {run: tuple(map(tuple, r["few_label_images"])) for run, r in stored.items()}
    assert len(set(draws.values())) == 1
    (images,) = set(draws.values())
    assert len(images) == 5 and len(set(images)) == 5  # 5 different draws
    for draw in images:
        paths = _paths(train_folder, draw)
        assert len(paths) == 6 and sorted(train_folder.samples[i][1] for i in draw) == [
            0,
            0,
            1,
            1,
            2,
            2,
        ]
        assert not paths & validation and not paths & test_paths
        assert all(paths <= bank for bank in final_banks)
    # ... with their spread in results.csv and results.md
    for run in ("clamp-equal_epochs-s0", "simclr-equal_epochs-s1", "floor-untrained-s1"):
        row = results.get(run) or next(r for r in table if r["run_id"] == run)
        per_draw = [float(v) for v in row["few_label_per_draw"].split(";")]
        assert len(per_draw) == 5 and all(0.0 <= v <= 100.0 for v in per_draw)
        assert float(row["few_label_mean"]) == pytest.approx(statistics.fmean(per_draw))
        assert float(row["few_label_std"]) == pytest.approx(statistics.stdev(per_draw))
        assert row["few_label_augmented_mean"] == ""  # neither method has an augmenter
    assert "## Few-label probes" in md and "5 draws (seeds 3–7)" in md
    means = [float(results[f"clamp-equal_epochs-s{s}"]["few_label_mean"]) for s in (0, 1)]
    spread = statistics.fmean(
        float(results[f"clamp-equal_epochs-s{s}"]["few_label_std"]) for s in (0, 1)
    )
    few = f"{statistics.fmean(means):.2f} ± {statistics.stdev(means):.2f}"
    assert f"| equal_epochs | clamp | 2 | {few}" in md
    assert f" | {means[0]:.2f} / {means[1]:.2f} | {spread:.2f} |" in md

    # 5. Resume: every trial (diverged ones too) and run is finished; nothing trains again.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished trial or run was trained again")

    monkeypatch.setattr(trials_module, "train", no_training)
    monkeypatch.setattr(runner, "train", no_training)
    monkeypatch.setattr(trials_module, "floor_extractor", no_training)  # in tuning/floor-*/
    assert main(["compare", "--config", str(tuned_config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tuning: trained 0 trial(s), skipped 4 finished" in printed
    assert "trained 0 run(s), skipped 7 finished" in printed
    #    On another machine: the published page's runs.json.gz restores every trial, floor and
    #    run into an empty --out; nothing trains and the report is the same, byte for byte.
    page = tmp_path / "page"
    argv = ["compare", "--config", str(tuned_config), "--publish", str(page)]
    assert main([*argv, "--out", str(out)]) == 0
    assert len(load_archive(page / "runs.json.gz")) == 4 + 2 + 7
    moved = tmp_path / "moved"
    assert main([*argv, "--out", str(moved)]) == 0
    printed = capsys.readouterr().out
    assert f"restored 13 finished run(s) and trial(s) from {page / 'runs.json.gz'}" in printed
    assert "tuning: trained 0 trial(s), skipped 4 finished" in printed
    assert "trained 0 run(s), skipped 7 finished" in printed
    assert (moved / "results.md").read_bytes() == (out / "results.md").read_bytes()
    assert (moved / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    monkeypatch.undo()

    # 6. --configs-only: the trials' cfgs always; the final runs' once the trials finished.
    fresh = tmp_path / "fresh"
    assert (
        main(["compare", "--config", str(tuned_config), "--out", str(fresh), "--configs-only"]) == 0
    )
    assert sorted(p.parent.name for p in fresh.glob("tuning/*/config.yaml")) == sorted(TRIALS)
    assert not list(fresh.glob("runs/*/config.yaml"))
    before = {p: p.read_text() for p in out.glob("runs/*/config.yaml")}
    assert (
        main(["compare", "--config", str(tuned_config), "--out", str(out), "--configs-only"]) == 0
    )
    assert {p: p.read_text() for p in out.glob("runs/*/config.yaml")} == before
    assert len(before) == 4


def _results(out: Path, runs: str = "[!f]*") -> dict:
    """The stored results of the final runs (or of the ``runs`` pattern, e.g. the floors)."""
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob(f"runs/{runs}/result.json")}


def _fake_training(monkeypatch, scores: Callable[[RunSpec], float], interrupt_at=None) -> list:
    """Trials without training: every trial 'trains' a Flatten and scores ``scores(spec)`` on
    validation (the validation floors too, 10.0); ``interrupt_at``: Ctrl-C in that call."""
    calls: list[str] = []

    def fake_train(cfg, spec, data, probe, fail_on_divergence=False):
        assert fail_on_divergence and probe is None  # trials never score the test probe
        calls.append(spec.run_id)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        current[:] = [spec]
        return training.TrainedRun(torch.nn.Flatten(), OmegaConf.create({}), {}, [], 0.0, 0.0)

    def fake_scores(cfg, data, extractor, crop_size=None):
        return {"val_knn_top1": scores(current[0]) if current else 10.0, "val_images": 6}

    current: list = []
    monkeypatch.setattr(trials_module, "train", fake_train)
    monkeypatch.setattr(trials_module, "validation_scores", fake_scores)
    return calls


def test_tuning_picks_the_best_validation_score_and_brackets_it(
    tuned_config, tmp_path, monkeypatch
):
    """Selection follows the validation score (not the grid order nor the recipe), and an
    edge choice extends the grid by the grid's own ratio: CLAMP's fake optimum is inside the
    first grid (no extension), SimCLR's at x4, just past it (one extension to x4 and one more
    to x8 that loses: bracketed), VICReg's far past it (stops at the edge after 2)."""
    cfg = compare.load_config(tuned_config)
    cfg.methods = ["clamp", "simclr", "vicreg"]
    cfg.tuning.lr_multipliers, cfg.tuning.max_extensions = [0.5, 1.0, 2.0], 2
    compare.validate_config(cfg)
    optimum = {"clamp": 1.0, "simclr": 4.0, "vicreg": 1000.0}

    def score(spec) -> float:
        return 90.0 - 5 * abs(math.log2(spec.setting.lr_multiplier / optimum[spec.method]))

    calls = _fake_training(monkeypatch, score)
    data = prepare_data(cfg)
    tuning = trials_module.run_tuning(
        cfg, data, tmp_path, Tuning(trial_specs(cfg, 3)), {}, log=lambda _: None
    )
    multipliers = {m: sorted(tuning.multipliers(cfg, m)) for m in cfg.methods}
    assert multipliers == {
        "clamp": [0.5, 1.0, 2.0],
        "simclr": [0.5, 1.0, 2.0, 4.0, 8.0],
        "vicreg": [0.5, 1.0, 2.0, 4.0, 8.0],
    }
    assert len(calls) == 3 * 3 + 2 + 2
    assert tuning.selected["clamp"].lr_multiplier == 1.0
    assert tuning.selected["simclr"].lr_multiplier == 4.0
    assert tuning.selected["vicreg"].lr_multiplier == 8.0
    assert [tuning.bracket(cfg, m) for m in cfg.methods] == [
        "bracketed",
        "bracketed",
        "at the edge after 2 extensions",
    ]
    assert [s.run_id for s in tuning.specs][:2] == ["clamp-lr0.5-s0", "simclr-lr0.2-s0"]
    write_results_md(cfg, {}, tmp_path / "results.md", tuning)
    md = (tmp_path / "results.md").read_text()
    assert "- clamp: lr 1 (×1) — bracketed\n" in md
    assert "- simclr: lr 1.6 (×4) — bracketed\n" in md
    assert "- vicreg: lr 2.4 (×8) — at the edge after 2 extensions\n" in md
    assert "| budget | method |" not in md  # no final run yet
    assert "Unfinished runs (not in the table): floor-raw_pixels, floor-untrained-s0, " in md

    # a restart reads every trial back, extensions included, and trains nothing
    calls[:] = []
    again = trials_module.run_tuning(
        cfg, data, tmp_path, Tuning(trial_specs(cfg, 3)), {}, log=lambda _: None
    )
    assert calls == [] and again.selected == tuning.selected
    assert again.extensions == tuning.extensions


def test_tuning_grid_is_lr_times_any_method_kwargs_with_equal_trials():
    cfg = compare.load_config(None)
    cfg.tuning.enabled = True
    cfg.tuning.lr_multipliers = {
        "clamp": [0.3, 1.0],
        "simclr": [0.1, 0.3, 1.0, 3.0],
        "byol": [0.1, 0.3, 1.0, 3.0],
        "vicreg": [0.1, 3.0],
    }
    cfg.tuning.method_kwargs = {
        "clamp": {"rs": [5.0, 9.0]},
        "vicreg": {"sim_loss_weight": [10, 25]},
    }
    compare.validate_config(cfg)
    assert [(s.lr, s.tuned) for s in method_grid(cfg, "clamp")] == [
        (0.3, {"rs": 5.0}),
        (0.3, {"rs": 9.0}),
        (1.0, {"rs": 5.0}),
        (1.0, {"rs": 9.0}),
    ]
    assert [s.lr for s in method_grid(cfg, "simclr")] == [0.04, 0.12, 0.4, 1.2]
    assert [s.label for s in method_grid(cfg, "vicreg")] == [
        "lr0.03-sim_loss_weight10",
        "lr0.03-sim_loss_weight25",
        "lr0.9-sim_loss_weight10",
        "lr0.9-sim_loss_weight25",
    ]
    specs = trial_specs(cfg, steps_per_epoch=10)
    assert len(specs) == 16 and {s.steps for s in specs} == {40}
    assert [s.run_id for s in specs[:4]] == [
        "clamp-lr0.3-rs5-s0",  # the trial directories' names of earlier versions
        "simclr-lr0.04-s0",
        "byol-lr0.1-s0",
        "vicreg-lr0.03-sim_loss_weight10-s0",
    ]
    data = ComparisonData("fashion_mnist", "custom", "unused", "unused")
    from solo_clamp.compare.run_cfg import solo_cfg

    assert solo_cfg(cfg, specs[0], data).method_kwargs.rs == 5.0
    assert solo_cfg(cfg, specs[3], data).method_kwargs.sim_loss_weight == 10
    assert Setting(0.3, 1.0, (("rs", 7.0),)).describe() == "lr 0.3 (×1), rs 7"
    cfg.tuning.lr_multipliers = [0.3, 1.0]  # CLAMP and VICReg: 2 x 2 = 4 trials, the others 2
    with pytest.raises(
        ValueError,
        match=r"same number of trials .* got clamp 4 \(= 2 lr × 2 "
        r"rs\), simclr 2, byol 2, vicreg 4 \(= 2 lr × 2 sim_loss_weight\)",
    ):
        compare.validate_config(cfg)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tuning.enabled": "yes"}, "tuning.enabled must be true or false"),
        ({"tuning.lr_multipliers": None}, "tuning.lr_multipliers must be a non-empty list"),
        ({"tuning.lr_multipliers": [1.0, -1.0]}, "tuning.lr_multipliers must be a non-empty list"),
        ({"tuning.lr_multipliers": [1.0, 1.0]}, "tuning.lr_multipliers must not repeat"),
        (
            {"tuning.lr_multipliers": {"clamp": [1.0]}},
            "tuning.lr_multipliers has no list for 'simclr'",
        ),
        (
            {"tuning.method_kwargs": {"clamp": {"rs": []}}},
            "tuning.method_kwargs.clamp.rs must be a non-empty list",
        ),
        (
            {"tuning.method_kwargs": {"simclr": {"rs": [5.0]}}},
            "tuning.method_kwargs.simclr.rs: simclr has no method_kwargs field 'rs'",
        ),
        ({"tuning.method_kwargs": {"dino": {"x": [1]}}}, "tuning.method_kwargs.dino: 'dino' has"),
        ({"tuning.clamp_rs": [5.0]}, r"tuning.clamp_rs was replaced by tuning.method_kwargs"),
        ({"tuning.val_per_class": 0}, "tuning.val_per_class must be a positive integer"),
        (
            {"tuning.val_per_class": 350},
            r"tuning.val_per_class \(350\) must be smaller than "
            r"data.train_per_class \(350\)",
        ),
        ({"tuning.epochs": 1.5}, "tuning.epochs must be a positive integer, got 1.5"),
        ({"tuning.seed": None}, "tuning.seed must be an integer"),
        ({"tuning.only": "yes"}, "tuning.only must be true or false"),
        ({"tuning.curves": 1}, "tuning.curves must be true or false"),
        (
            {"tuning.enabled": False, "tuning.only": True},
            r"tuning.only=true \(--tune-only\) needs "
            "tuning.enabled=true",
        ),
    ],
)
def test_tuning_config_errors_name_the_field(overrides, message):
    cfg = compare.load_config(None)
    cfg.tuning.enabled = True
    cfg.tuning.lr_multipliers = [0.3, 1.0]
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    with pytest.raises(ValueError, match=message):
        compare.validate_config(cfg)


def test_held_out_indices_are_stratified_seeded_and_leave_images():
    targets = [0] * 5 + [1] * 4 + [2] * 6
    held = held_out_indices(targets, 2, seed=3)
    assert held == sorted(held) and len(held) == 6
    assert sorted(targets[i] for i in held) == [0, 0, 1, 1, 2, 2]
    assert held == held_out_indices(targets, 2, seed=3)
    with pytest.raises(ValueError, match=r"tuning.val_per_class \(4\) .* class 1 has 4"):
        held_out_indices(targets, 4, seed=0)


def _row(method, seed, knn, linear, budget="equal_epochs"):
    return {
        "run_id": f"{method}-{budget}-s{seed}",
        "kind": "ssl",
        "method": method,
        "budget": budget,
        "seed": seed,
        "views": 2,
        "epochs": 8,
        "steps": 10,
        "batch_size": 64,
        "views_seen": 1280,
        "train_s": 1.0,
        "curve_s": 0.0,
        "knn_top1": knn,
        "knn_top5": 99.0,
        "linear_top1": linear,
        "lr": 0.3,
        "rs": None,
    }


def test_verdicts_come_from_paired_intervals_and_bold_only_what_is_significant(tmp_path):
    """Hand-made paired scores over 4 seeds with known answers, checked against scipy's own
    paired t test: SimCLR's kNN is better than BYOL's by a steady +3 (clearly better), VICReg
    differs from SimCLR by ±0.5 around 0 (not distinguishable); on linear BYOL is clearly worse
    than both. A best mean that is not better than every other is not bolded; a column with
    one entry (few-label + prior samples) is never bolded."""
    from scipy import stats

    from solo_clamp.compare.verdicts import judge, paired_seed_interval

    cfg = compare.load_config(None)
    cfg.methods, cfg.budgets = ["simclr", "byol", "vicreg"], ["equal_epochs"]
    cfg.seeds = [0, 1, 2, 3]
    scores = {
        "simclr": ([80.0, 81.0, 79.0, 80.5], [90.0, 90.5, 90.2, 90.1]),
        "byol": ([77.0, 78.1, 75.9, 77.6], [70.0, 70.4, 69.9, 70.2]),
        "vicreg": ([80.5, 80.6, 79.5, 80.2], [90.3, 90.2, 90.4, 90.1]),
    }
    results = {}
    for method, (knn, linear) in scores.items():
        for seed in cfg.seeds:
            row = _row(method, seed, knn[seed], linear[seed])
            results[row["run_id"]] = row
    rows = summary_rows(cfg, results)
    comparisons = {(c.metric, c.method, c.other): c for c in judge(rows)}
    marks = {r["method"]: (r["knn_mark"], r["linear_mark"]) for r in rows}

    knn_byol = comparisons[("knn", "byol", "vicreg")]  # vicreg has the best kNN mean
    assert knn_byol.verdict == "worse" and knn_byol.seeds == 4
    simclr_vicreg = comparisons[("knn", "simclr", "vicreg")]
    assert simclr_vicreg.verdict == "not distinguishable"
    scipy_ci = stats.ttest_rel(scores["simclr"][0], scores["vicreg"][0]).confidence_interval()
    assert (simclr_vicreg.over_seeds.low, simclr_vicreg.over_seeds.high) == pytest.approx(
        (scipy_ci.low, scipy_ci.high)
    )
    ours = paired_seed_interval(scores["simclr"][0], scores["byol"][0])
    assert ours.low > 0 and ours.mean == pytest.approx(2.975)
    assert comparisons[("linear", "byol", "vicreg")].verdict == "worse"
    assert comparisons[("linear", "simclr", "vicreg")].verdict == "not distinguishable"
    assert marks == {"simclr": ("", ""), "byol": ("", ""), "vicreg": ("", "")}

    write_results_md(cfg, results, tmp_path / "results.md")
    md = (tmp_path / "results.md").read_text()
    assert "**" not in md.split("## Verdicts")[0].split("| budget | method |")[1]
    assert "| equal_epochs | kNN top-1 | byol | vicreg | 4 |" in md
    assert "| not distinguishable |" in md and "| worse |" in md


def test_bold_marks_a_best_better_than_every_other_and_not_a_lone_entry(tmp_path):
    from solo_clamp.compare.verdicts import judge

    cfg = compare.load_config(None)
    cfg.methods, cfg.budgets, cfg.seeds = ["simclr", "byol"], ["equal_epochs"], [0, 1, 2]
    results = {}
    for method, knn in (("simclr", [90.0, 91.0, 90.5]), ("byol", [80.0, 80.8, 80.1])):
        for seed in cfg.seeds:
            row = _row(method, seed, knn[seed], 50.0)
            results[row["run_id"]] = row
    rows = summary_rows(cfg, results)
    judge(rows)
    assert [(r["method"], r["knn_mark"]) for r in rows] == [("simclr", "best"), ("byol", "")]
    write_results_md(cfg, results, tmp_path / "results.md")
    assert "| **90.50 ± 0.50** | 90.00 / 91.00 / 90.50 |" in (tmp_path / "results.md").read_text()
    # one method alone in the budget: nothing to be better than, no bold
    cfg.methods = ["simclr"]
    alone = summary_rows(cfg, {k: v for k, v in results.items() if k.startswith("simclr")})
    judge(alone)
    assert alone[0]["knn_mark"] == ""


def test_tune_only_scores_validation_curves_and_floors_and_never_opens_the_test_split(
    tuned_config, tmp_path, capsys, monkeypatch
):
    """``--tune-only`` with ``tuning.curves``: the trials train and record their validation
    kNN per epoch, the validation floors are scored, and nothing reads the test split. The
    curve's epoch 0 is the backbone every trial starts from, so it equals the untrained floor;
    its last point is the trial's validation score."""
    out = tmp_path / "out"
    opened: set[str] = set()
    dataset = ComparisonData.dataset

    def spy_dataset(data, split, transform):
        opened.add(split)
        return dataset(data, split, transform)

    monkeypatch.setattr(ComparisonData, "dataset", spy_dataset)
    assert (
        main(
            [
                "compare",
                "--config",
                str(tuned_config),
                "--out",
                str(out),
                "--tune-only",
                "--set",
                "tuning.lr_multipliers=[0.5]",
                "tuning.curves=true",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert opened == {"train"}
    assert "tuning: trained 2 trial(s)" in printed and "trained 0 run(s)" in printed
    assert not (out / "runs").exists()
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert {row["kind"] for row in table} == {"validation_floor", "trial", "curve"}
    rows = {row["run_id"]: row for row in table if row["kind"] != "curve"}
    untrained = float(rows["floor-untrained"]["val_knn_top1"])
    raw = float(rows["floor-raw_pixels"]["val_knn_top1"])
    for trial in ("clamp-lr0.5-s0", "simclr-lr0.2-s0"):
        result = json.loads((out / "tuning" / trial / "result.json").read_text())
        curve = [point["knn_top1"] for point in result["curve"]]
        assert [point["epoch"] for point in result["curve"]] == [0, 1]
        assert curve[0] == pytest.approx(untrained)
        assert curve[-1] == pytest.approx(result["val_knn_top1"])
        points = [r for r in table if r["kind"] == "curve" and r["run_id"] == trial]
        assert [float(p["curve_knn_top1"]) for p in points] == pytest.approx(curve)
    md = (out / "results.md").read_text()
    assert "| budget | method |" not in md and "## Runs" not in md  # no final run
    assert f"| floor | raw pixels | – | – | floor | {raw:.2f} |" in md
    assert f"| floor | untrained resnet18 (seed 0) | – | – | floor | {untrained:.2f} |" in md
    assert "scored on the same validation split" in md


@pytest.mark.parametrize("name", ["fashion_mnist_tuned.yaml", "mnist_tuned.yaml"])
def test_tuned_presets_fit_and_are_fair(name):
    cfg = compare.load_config(compare.CONFIG_DIR / name)
    compare.validate_config(cfg)
    seeds = {"fashion_mnist_tuned.yaml": [0, 1], "mnist_tuned.yaml": [0, 1, 2, 3, 4]}[name]
    assert cfg.tuning.enabled and list(cfg.seeds) == seeds
    grids = {m: method_grid(cfg, m) for m in cfg.methods}
    assert len({len(g) for g in grids.values()}) == 1
    assert all(
        math.isclose(s.lr, s.lr_multiplier * cfg.recipes[m].optimizer.lr, rel_tol=1e-5)
        for m, g in grids.items()
        for s in g
    )
    assert cfg.tuning.epochs < cfg.epochs and list(cfg.budgets) == list(compare.BUDGETS)
    if name == "fashion_mnist_tuned.yaml":
        # the final runs keep the default's 3,500 training images: 400 per class - 50 held out
        assert cfg.data.train_per_class - cfg.tuning.val_per_class == 350
        return
    # the main job's budget (scripts/pretrain/mnist/clamp.yaml): 1,000 training images per
    # class, 6 epochs, batch 64, 4 CLAMP views, ResNet-18 at 32 px, 2 compute threads
    main_job_path = compare.CONFIG_DIR.parent / "pretrain" / "mnist" / "clamp.yaml"
    main_job = OmegaConf.load(main_job_path)
    assert cfg.data.train_per_class - cfg.tuning.val_per_class == 1000
    assert (cfg.epochs, cfg.batch_size) == (main_job.max_epochs, main_job.optimizer.batch_size)
    views = OmegaConf.load(main_job_path.parent / "augmentations" / "mnist.yaml")[0]
    assert cfg.recipes.clamp.views == views.num_crops == 4
    assert cfg.augmentations[0].rrc.crop_min_scale == views.rrc.crop_min_scale
    assert cfg.trainer.threads == main_job.performance.num_threads == 2
    # the recipes are the pretraining configs' (projector widths as given: scale 1)
    manifoldclr = OmegaConf.load(main_job_path.parent / "manifoldclr.yaml")
    assert cfg.projector_scale == 1.0
    for recipe, job in ((cfg.recipes.clamp, main_job), (cfg.recipes.manifoldclr, manifoldclr)):
        assert dict(recipe.method_kwargs) == dict(job.method_kwargs)
        assert {k: recipe.optimizer[k] for k in ("name", "lr", "weight_decay")} == {
            k: job.optimizer[k] for k in ("name", "lr", "weight_decay")
        }
    assert cfg.recipes.manifoldclr.scheduler.min_lr == manifoldclr.scheduler.min_lr
    assert cfg.backbone.name == main_job.backbone.name and cfg.augmentations[0].crop_size == 32
    assert set(cfg.methods) == {"clamp", "simclr", "byol", "vicreg", "manifoldclr"}
    assert [len(g) for g in grids.values()] == [3] * 5  # then bracketing, up to 2 more
    assert cfg.tuning.max_extensions == 2 and cfg.scheduler.warmup_start_lr == 0.0
    assert cfg.scheduler.warmup_epochs * 6 == cfg.epochs  # every method: the first sixth
    few = cfg.evaluation.few_label
    assert few.enabled and few.per_class == 5 and few.draws >= 5
    assert few.feature_augment.samples > 0


def test_interrupted_tuning_resumes_at_the_unfinished_trial(tuned_config, tmp_path, monkeypatch):
    """Ctrl-C during the third trial: two trials are kept (results.md lists them and selects
    nothing yet); the rerun trains only the other two, then selects."""
    cfg = compare.load_config(tuned_config)
    cfg.tuning.lr_multipliers, cfg.tuning.only = [0.5, 1.0], True
    calls = _fake_training(monkeypatch, lambda spec: 50.0, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        compare.run_comparison(cfg, tmp_path, log=lambda _: None)
    md = (tmp_path / "results.md").read_text()
    assert "Unfinished trials (nothing selected yet): clamp-lr1-s0, simclr-lr0.4-s0." in md
    assert "| clamp | clamp-lr0.5-s0 | 0.5 (×0.5) | – | ok | 50.00 |" in md
    calls[:] = []
    summary = compare.run_comparison(cfg, tmp_path, log=lambda _: None)
    assert calls == ["clamp-lr1-s0", "simclr-lr0.4-s0"]
    assert summary.tuning.skipped == ["clamp-lr0.5-s0", "simclr-lr0.2-s0"]
    assert summary.tuning.selected == {"clamp": Setting(0.5, 0.5), "simclr": Setting(0.2, 0.5)}
    md = (tmp_path / "results.md").read_text()
    assert "- clamp: lr 0.5 (×0.5) — at the edge after 0 extensions" in md


def test_a_few_label_draw_larger_than_a_bank_class_is_refused_before_training(
    tuned_config, tmp_path, capsys, monkeypatch
):
    """The draws come from the kNN bank: 10 training images per class, 2 held out for
    validation, leave 8; a draw of 9 per class is refused before any trial trains."""

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the few-label settings were checked")

    monkeypatch.setattr(trials_module, "train", no_training)
    out = tmp_path / "out"
    args = ["compare", "--config", str(tuned_config), "--out", str(out), "--set"]
    assert main([*args, "evaluation.few_label.per_class=9"]) == 2
    assert (
        "evaluation.few_label.per_class (9) must not exceed the images of any class in the kNN "
        "bank, where the draws come from: class 0 has 8." in capsys.readouterr().err
    )


def test_mnist_tuned_quick_writes_every_trial_cfg(mnist_source, tmp_path):
    """``--quick --configs-only`` of the MNIST preset: 15 trials (5 methods x 3 lr), each at
    the quick size (16 images per class, 4 held out: 120 / batch 16 = 7 steps), with its
    recipe (ManifoldCLR's own min_lr over the shared scheduler) and the one warm-up policy:
    1 of the 2 quick epochs, i.e. half of a 1-epoch trial, from 0, for every method."""
    out = tmp_path / "out"
    config = compare.CONFIG_DIR / "mnist_tuned.yaml"
    sets = [f"data.source={mnist_source}", f"data.root={tmp_path / 'datasets'}"]
    assert main(["compare", "--config", str(config), "--quick", "--configs-only", "--out", str(out),
                 "--set", *sets]) == 0  # fmt: skip
    written = sorted(p.parent.name for p in out.glob("tuning/*/config.yaml"))
    assert len(written) == 15 and not list(out.glob("runs/*"))
    assert {name.split("-")[0] for name in written} == {
        "clamp", "simclr", "byol", "vicreg", "manifoldclr"
    }  # fmt: skip
    clamp = OmegaConf.load(out / "tuning" / "clamp-lr1-s0" / "config.yaml")
    assert clamp.data.num_large_crops == 4 and clamp.max_steps == 7
    assert (clamp.method_kwargs.proj_hidden_dim, clamp.method_kwargs.proj_output_dim) == (512, 128)
    manifoldclr = OmegaConf.load(out / "tuning" / "manifoldclr-lr0.0015-s0" / "config.yaml")
    assert manifoldclr.scheduler.min_lr == 1.0e-5 and manifoldclr.scheduler.warmup_epochs == 0.5
    assert manifoldclr.scheduler.warmup_start_lr == 0.0
    assert (clamp.scheduler.warmup_epochs, clamp.scheduler.warmup_start_lr) == (0.5, 0.0)
    assert manifoldclr.method_kwargs.proj_hidden_dim == 1024  # projector_scale 1
