"""Interrupted pretraining: SIGKILL or SIGTERM and resume, mid-epoch and time-based
checkpoints, atomic checkpoints, run-shape-aware auto-resume.

The killed and stopped runs are real ``python -m solo_clamp.cli pretrain`` subprocesses; the
reference and resumed runs go through the same CLI entry point in-process (solo-learn is
imported once).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from clamp_testing import tiny_pretrain_overrides
from omegaconf import OmegaConf

from solo_clamp.checkpoints import load_checkpoint
from solo_clamp.cli import main
from solo_clamp.training.faults import EXIT_PREEMPTED, ResumeWarning

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO_ROOT = Path(__file__).resolve().parents[2]
RESUMING = "Resuming from previous checkpoint"
STEPS_PER_EPOCH = 6  # 24 images, batch 4: a kill after step 1 leaves 5 steps of margin
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def tiny(images: Path, checkpoint_dir: Path, *extra: str) -> list[str]:
    """Overrides of the MNIST config for a tiny 2-epoch CPU run: images of 16 px, batch 4."""
    return tiny_pretrain_overrides(
        images, checkpoint_dir, "log_every_n_steps=1", "max_epochs=2", *extra
    )


def run_dirs(checkpoint_dir: Path) -> list[Path]:
    root = checkpoint_dir / "clamp"
    return sorted(root.iterdir(), key=os.path.getmtime) if root.is_dir() else []


def step_losses(run_dir: Path) -> dict[int, float]:
    """``step -> train_clamp_loss_step`` from a run's metrics.csv."""
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {
        int(r["step"]): float(r["train_clamp_loss_step"])
        for r in rows
        if r.get("train_clamp_loss_step")
    }


def epochs_logged(run_dir: Path) -> set[int]:
    with open(run_dir / "metrics.csv") as handle:
        return {int(r["epoch"]) for r in csv.DictReader(handle) if r.get("train_clamp_loss_step")}


def signal_during_second_epoch(
    images: Path, checkpoint_dir: Path, log: Path, signum: int = signal.SIGKILL
) -> Path:
    """Starts a 2-epoch pretrain subprocess and sends it ``signum`` once epoch 0's checkpoint
    exists and epoch 1 has run a step. Returns the run's directory (the process has ended)."""
    command = [sys.executable, "-m", "solo_clamp.cli", "pretrain", *tiny(images, checkpoint_dir)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, **ONE_THREAD},
        )  # as in-process
        try:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and process.poll() is None:
                text = log.read_bytes().decode(errors="replace")
                if (
                    list(checkpoint_dir.glob("clamp/*/*-ep=0.ckpt"))
                    and "Epoch 1:" in text
                    and (f"1/{STEPS_PER_EPOCH}" in text.split("Epoch 1:", 1)[1])
                ):
                    process.send_signal(signum)
                    break
                time.sleep(0.02)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    expected = -signal.SIGKILL if signum == signal.SIGKILL else EXIT_PREEMPTED
    assert process.returncode == expected, log.read_text(errors="replace")[-3000:]
    (run,) = run_dirs(checkpoint_dir)
    return run


def assert_losses_match(got: dict[int, float], expected: dict[int, float]) -> None:
    for step, loss in got.items():
        assert math.isfinite(loss)
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, image_folder_writer) -> Path:
    """An uninterrupted 2-epoch run (in-process)."""
    root = tmp_path_factory.mktemp("reference")
    images = image_folder_writer(root / "images", classes=3, per_class=8)
    assert main(["pretrain", *tiny(images, root / "ckpt", "csv.enabled=True")]) == 0
    (run,) = run_dirs(root / "ckpt")
    return run


def test_sigkill_mid_epoch_then_auto_resume_continues_from_the_last_checkpoint(
    tmp_path, image_folder_writer, reference_run, capsys
):
    """Killed during epoch 1, resumed from epoch 0's checkpoint: epoch 1 is trained once
    and its step losses equal the uninterrupted run's.

    The match is exact only because AtomicCheckpointer stores the global RNG states with
    the checkpoint and restores them when the resumed epoch starts. Lightning alone does
    not: the data order and augmentations then differ (measured before that was added: the
    resumed step 3 gave a loss of 0.0547 where the uninterrupted run gave 0.0341).
    """
    import torch

    images = image_folder_writer(tmp_path / "images", classes=3, per_class=8)
    checkpoint_dir = tmp_path / "ckpt"
    killed = signal_during_second_epoch(images, checkpoint_dir, tmp_path / "killed.log")
    assert [p.name.split("-ep=")[1] for p in killed.glob("*.ckpt")] == ["0.ckpt"]
    assert not list(killed.glob("*.partial"))

    code = main(["pretrain", *tiny(images, checkpoint_dir, "auto_resume.enabled=True")])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{RESUMING} that matches the run: '{next(killed.glob('*.ckpt'))}'" in out
    resumed = next(r for r in run_dirs(checkpoint_dir) if r != killed)
    (final,) = resumed.glob("*.ckpt")
    assert final.name.endswith("-ep=1.ckpt")
    state = torch.load(final, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["global_step"]) == (1, 2 * STEPS_PER_EPOCH)
    assert epochs_logged(resumed) == {1}  # epoch 0 was not trained again

    got = step_losses(resumed)
    assert sorted(got) == list(range(STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH))
    assert_losses_match(got, step_losses(reference_run))


def test_sigterm_mid_epoch_saves_the_step_and_resume_continues_from_it(
    tmp_path, image_folder_writer, reference_run, capsys
):
    """SIGTERM during epoch 1: the step in progress finishes, a mid-epoch checkpoint is written,
    one line says where and how to resume, the exit status is 143. The resumed run trains the
    remaining steps only, with the uninterrupted run's losses: the checkpoint holds the RNG
    states the epoch's data iterator was created from and the number of batches done, whose
    data loading the resumed run replays (see the next test for what happens without it)."""
    images = image_folder_writer(tmp_path / "images", classes=3, per_class=8)
    checkpoint_dir = tmp_path / "ckpt"
    log = tmp_path / "stopped.log"
    stopped = signal_during_second_epoch(images, checkpoint_dir, log, signal.SIGTERM)
    (mid,) = stopped.glob("*-ep=1-step=*.ckpt")
    step = int(mid.name.split("-step=")[1].removesuffix(".ckpt"))
    assert STEPS_PER_EPOCH < step < 2 * STEPS_PER_EPOCH
    done = step - STEPS_PER_EPOCH
    line = (
        f"solo-clamp pretrain: stopped by SIGTERM at epoch 1, batch {done}/{STEPS_PER_EPOCH}"
        f" (global step {step}); saved '{mid}'. Resume: the same command with "
        f"auto_resume.enabled=True (or resume_from_checkpoint={stopped}). "
        f"Exit status {EXIT_PREEMPTED}."
    )
    assert line in log.read_text(errors="replace")
    assert sorted(p.name.split("-ep=")[1] for p in stopped.glob("*.ckpt")) == [
        "0.ckpt",
        f"1-step={step}.ckpt",
    ]  # checkpoint.keep_last: 2
    assert not list(stopped.glob("*.partial"))
    state = load_checkpoint(mid)
    assert (state["epoch"], state["global_step"]) == (1, step)
    assert state["callbacks"]["AtomicCheckpointer"]["batches_done"] == done
    expected = step_losses(reference_run)
    before = step_losses(stopped)
    assert sorted(before) == list(range(step))  # the interrupted step was finished and logged
    assert_losses_match(before, expected)

    capsys.readouterr()
    assert main(["pretrain", *tiny(images, checkpoint_dir, "auto_resume.enabled=True")]) == 0
    assert f"{RESUMING} that matches the run: '{mid}'" in capsys.readouterr().out
    resumed = next(r for r in run_dirs(checkpoint_dir) if r != stopped)
    got = step_losses(resumed)
    assert sorted(got) == list(range(step, 2 * STEPS_PER_EPOCH))
    assert_losses_match(got, expected)


def test_time_based_checkpoints_change_nothing_and_resume_mid_epoch(
    tmp_path, image_folder_writer, reference_run
):
    """``checkpoint.every_minutes`` so small that it has always passed (no clock is measured):
    a checkpoint after every step but an epoch's last, which the epoch's checkpoint follows.
    The losses are the uninterrupted run's, and a run resumed from the middle of epoch 0 (the
    epoch whose data iterator Lightning creates before any epoch hook) repeats them. Measured
    with the data-loading replay switched off (Lightning then starts the rest of the epoch on
    a fresh iterator): the resumed step 3 gave a loss of -0.5331 where the uninterrupted run
    gave -0.3709. With one loader worker (the MNIST config) the replay is exact as well."""
    images = image_folder_writer(tmp_path / "images", classes=3, per_class=8)
    checkpoint_dir = tmp_path / "ckpt"
    assert (
        main(
            [
                "pretrain",
                *tiny(
                    images,
                    checkpoint_dir,
                    "+checkpoint.every_minutes=1e-9",
                    "+checkpoint.keep_last=20",
                ),
            ]
        )
        == 0
    )
    (run,) = run_dirs(checkpoint_dir)
    names = {p.name.split("-ep=")[1] for p in run.glob("*.ckpt")}
    assert names == {
        "0.ckpt",
        "1.ckpt",
        *(f"0-step={s}.ckpt" for s in range(1, 6)),
        *(f"1-step={s}.ckpt" for s in range(7, 12)),
    }
    expected = step_losses(reference_run)
    assert_losses_match(step_losses(run), expected)

    (mid,) = run.glob("*-ep=0-step=3.ckpt")
    resume = f"+resume_from_checkpoint='{mid}'"  # quoted: the name holds '='
    assert main(["pretrain", *tiny(images, checkpoint_dir, resume)]) == 0
    resumed = next(r for r in run_dirs(checkpoint_dir) if r != run)
    got = step_losses(resumed)
    assert sorted(got) == list(range(3, 2 * STEPS_PER_EPOCH))
    assert_losses_match(got, expected)


class SimulatedKill(RuntimeError):
    """Stands for the process dying in the middle of writing a checkpoint."""


@pytest.fixture(scope="module")
def killed_while_saving(tmp_path_factory, image_folder_writer) -> dict[str, Path]:
    """A 4-view run (1 step per epoch) whose epoch-1 save dies after writing part of the file.

    Returns the images, the checkpoint directory and the epoch-0 checkpoint.
    """
    from lightning.pytorch import Trainer

    root = tmp_path_factory.mktemp("killed_while_saving")
    images = image_folder_writer(root / "images", classes=3, per_class=4)
    checkpoint_dir = root / "ckpt"
    original = Trainer.save_checkpoint

    def dies_during_second_save(self, filepath, *args, **kwargs):
        if "-ep=1." in str(filepath):
            Path(filepath).write_bytes(b"PK\x03\x04 truncated")  # the start of a zip, no more
            raise SimulatedKill(f"killed while writing {filepath}")
        return original(self, filepath, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", dies_during_second_save)
        with pytest.raises(SimulatedKill):
            main(["pretrain", *tiny(images, checkpoint_dir, "+limit_train_batches=1")])
    (run,) = run_dirs(checkpoint_dir)
    (checkpoint,) = run.glob("*.ckpt")
    return {"images": images, "checkpoint_dir": checkpoint_dir, "checkpoint": checkpoint}


def copy_of(checkpoint_dir: Path, destination: Path) -> Path:
    """A copy of a checkpoint directory, hard-linking the (large) files."""
    shutil.copytree(checkpoint_dir, destination, copy_function=os.link)
    return destination


def test_kill_during_save_keeps_the_previous_checkpoint_and_resume_ignores_the_partial(
    killed_while_saving, tmp_path, capsys
):
    import torch

    checkpoint = killed_while_saving["checkpoint"]
    run = checkpoint.parent
    assert checkpoint.name.endswith("-ep=0.ckpt")
    (partial,) = run.glob("*.partial")
    assert partial.name == checkpoint.name.replace("-ep=0.", "-ep=1.") + ".partial"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # intact, loadable
    assert state["epoch"] == 0 and any(k.startswith("projector.") for k in state["state_dict"])
    assert "rng_states" in state["callbacks"]["AtomicCheckpointer"]

    checkpoint_dir = copy_of(killed_while_saving["checkpoint_dir"], tmp_path / "ckpt")
    copied = checkpoint_dir / checkpoint.relative_to(killed_while_saving["checkpoint_dir"])
    found, _ = find(checkpoint_dir, json.loads((run / "args.json").read_text()))
    assert found == copied

    capsys.readouterr()
    code = main(
        [
            "pretrain",
            *tiny(
                killed_while_saving["images"],
                checkpoint_dir,
                "+limit_train_batches=1",
                "auto_resume.enabled=True",
            ),
        ]
    )
    assert code == 0
    assert f"{RESUMING} that matches the run: '{copied}'" in capsys.readouterr().out
    resumed = next(r for r in run_dirs(checkpoint_dir) if r.name != run.name)
    assert [p.name.split("-ep=")[1] for p in resumed.glob("*.ckpt")] == ["1.ckpt"]
    assert epochs_logged(resumed) == {1}


def test_auto_resume_skips_a_checkpoint_of_another_run_shape(killed_while_saving, tmp_path, capsys):
    """The epoch-0 checkpoint has 4 views; a 2-view run with auto-resume starts fresh, and
    says which field differs."""
    checkpoint_dir = copy_of(killed_while_saving["checkpoint_dir"], tmp_path / "ckpt")
    capsys.readouterr()
    with pytest.warns(
        ResumeWarning,
        match=r"\(same name, other settings\): "
        r"data.num_large_crops is 4 there, 2 in this run\.",
    ):
        code = main(
            [
                "pretrain",
                *tiny(
                    killed_while_saving["images"],
                    checkpoint_dir,
                    "+limit_train_batches=1",
                    "auto_resume.enabled=True",
                    "augmentations.0.num_crops=2",
                ),
            ]
        )
    assert code == 0
    assert RESUMING not in capsys.readouterr().out
    fresh = next(
        r
        for r in run_dirs(checkpoint_dir)
        if r.name != killed_while_saving["checkpoint"].parent.name
    )
    assert json.loads((fresh / "args.json").read_text())["data"]["num_large_crops"] == 2
    assert epochs_logged(fresh) == {0, 1}  # trained from epoch 0


# RunShapeAutoResumer on fake run directories (args.json + empty .ckpt files).

SHAPE = {
    "name": "clamp-test",
    "method": "clamp",
    "seed": 5,
    "max_epochs": 10,
    "backbone": {"name": "resnet18", "kwargs": {}},
    "data": {"dataset": "custom", "num_large_crops": 4, "num_small_crops": 0},
    "optimizer": {"name": "lars", "batch_size": 64, "lr": 1.0, "weight_decay": 1e-6},
    "method_kwargs": {
        "proj_hidden_dim": 512,
        "proj_output_dim": 128,
        "proj_hidden_layers": 1,
        "rs": 7.0,
        "pot_pow": 2.0,
        "lw0": 0.0,
        "lw1": 1.0,
        "min_margin": 1e-3,
        "max_range": 1.5,
    },
    "wandb": {"project": None, "entity": None},
}


def fake_run(root: Path, name: str, cfg: dict, files=("clamp-ep=0.ckpt",), age_hours=0.0):
    run = root / "clamp" / name
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({**cfg, "wandb_run_id": name}))
    stamp = time.time() - age_hours * 3600
    for file in files:
        (run / file).write_bytes(b"")
        os.utime(run / file, (stamp, stamp))
    return run


def changed(path: str, value) -> dict:
    cfg = json.loads(json.dumps(SHAPE))
    *parents, leaf = path.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    node[leaf] = value
    return cfg


def find(root: Path, cfg: dict, max_hours: int = 36):
    """``(checkpoint, run id)`` that auto-resume picks for ``cfg`` in ``root/clamp``."""
    from solo_clamp.training.resume import RunShapeAutoResumer

    return RunShapeAutoResumer(root / "clamp", max_hours=max_hours).find_checkpoint(
        OmegaConf.create(cfg)
    )


def test_run_shape_fields_cover_views_backbone_and_clamp_hyper_parameters():
    from solo_clamp.training.resume import RunShapeAutoResumer, run_shape_fields

    cfg = OmegaConf.create(SHAPE)
    for field in (
        "data.num_large_crops",
        "data.num_small_crops",
        "backbone.name",
        "method_kwargs.rs",
        "method_kwargs.max_range",
        "seed",
    ):
        assert field in run_shape_fields(cfg)
        assert field in RunShapeAutoResumer(".").should_match(cfg)


def test_resumer_finds_the_newest_checkpoint_of_the_same_shape(tmp_path):
    run = fake_run(tmp_path, "same", SHAPE, files=("a-ep=0.ckpt", "a-ep=1.ckpt"))
    os.utime(run / "a-ep=0.ckpt", (time.time() - 60, time.time() - 60))
    path, run_id = find(tmp_path, SHAPE)
    assert path == run / "a-ep=1.ckpt" and run_id == "same"


@pytest.mark.parametrize(
    "field, value",
    [
        ("data.num_large_crops", 2),
        ("data.num_small_crops", 2),
        ("method_kwargs.rs", 5.0),
        ("method_kwargs.proj_output_dim", 64),
        ("backbone.name", "resnet50"),
        ("seed", 6),
        ("optimizer.batch_size", 32),
        ("max_epochs", 20),
    ],
)
def test_resumer_ignores_a_checkpoint_of_another_shape(tmp_path, field, value):
    fake_run(tmp_path, "other", changed(field, value))
    with pytest.warns(ResumeWarning, match=re.escape(f"{field} is {value!r} there")):
        assert find(tmp_path, SHAPE) == (None, None)
    fake_run(tmp_path, "same", SHAPE, age_hours=1)  # older, but the right shape
    with pytest.warns(ResumeWarning):
        assert find(tmp_path, SHAPE)[1] == "same"


def test_resumer_names_the_field_of_a_same_name_run_of_another_shape(tmp_path):
    fake_run(tmp_path, "other", changed("method_kwargs.rs", 5.0))
    with pytest.warns(
        ResumeWarning,
        match=r"auto_resume: not resuming the run in '.*other' "
        r"\(same name, other settings\): method_kwargs.rs is 5.0 there, "
        r"7.0 in this run\.",
    ):
        assert find(tmp_path, SHAPE) == (None, None)
    renamed = tmp_path / "renamed"
    fake_run(renamed, "another-name", changed("name", "other-experiment"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run of another name is skipped silently
        assert find(renamed, SHAPE) == (None, None)


MANIFOLDCLR_SHAPE = {
    **SHAPE,
    "name": "manifoldclr-test",
    "method": "manifoldclr",
    "data": {"dataset": "custom", "num_large_crops": 2, "num_small_crops": 0},
    "method_kwargs": {
        "proj_hidden_dim": 1024,
        "proj_output_dim": 128,
        "dictionary_size": 32,
        "block_dim": 16,
        "vi_hidden_dim": 512,
        "temperature": 0.5,
    },
}


@pytest.mark.parametrize(
    "field, value",
    [
        ("dictionary_size", 16),
        ("block_dim", 64),
        ("vi_hidden_dim", 256),
        ("proj_hidden_dim", 512),
        ("proj_output_dim", 64),
    ],
)
def test_resumer_refuses_a_manifoldclr_checkpoint_of_another_shape(tmp_path, field, value):
    from solo_clamp.training.resume import run_shape_fields

    assert f"method_kwargs.{field}" in run_shape_fields(OmegaConf.create(MANIFOLDCLR_SHAPE))
    other = json.loads(json.dumps(MANIFOLDCLR_SHAPE))
    other["method_kwargs"][field] = value
    fake_run(tmp_path, "other", other)
    expected = MANIFOLDCLR_SHAPE["method_kwargs"][field]
    with pytest.warns(
        ResumeWarning,
        match=rf"method_kwargs.{field} is {value} there, "
        rf"{expected} in this run",
    ):
        assert find(tmp_path, MANIFOLDCLR_SHAPE) == (None, None)
    fake_run(tmp_path, "same", MANIFOLDCLR_SHAPE, age_hours=1)
    with pytest.warns(ResumeWarning):
        assert find(tmp_path, MANIFOLDCLR_SHAPE)[1] == "same"


def test_resumer_ignores_partial_stale_and_unreadable_runs(tmp_path):
    fake_run(tmp_path, "partial", SHAPE, files=("a-ep=0.ckpt.partial",))
    fake_run(tmp_path, "stale", SHAPE, age_hours=48)
    broken = fake_run(tmp_path, "broken", SHAPE)
    (broken / "args.json").write_text("{not json")
    fake_run(tmp_path, "no_args", SHAPE).joinpath("args.json").unlink()
    assert find(tmp_path, SHAPE, max_hours=36) == (None, None)
    assert find(tmp_path, SHAPE, max_hours=72)[1] == "stale"


def test_rng_states_survive_a_weights_only_checkpoint_round_trip(tmp_path):
    import random

    import numpy as np
    import torch

    from solo_clamp.training.rng import collect_rng_states, set_rng_states

    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    torch.save({"rng_states": collect_rng_states()}, tmp_path / "states.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    states = torch.load(tmp_path / "states.pt", weights_only=True)["rng_states"]
    set_rng_states(states)
    second = (torch.rand(3), np.random.rand(3), random.random())
    torch.testing.assert_close(first[0], second[0], rtol=0, atol=0)
    assert first[1].tolist() == second[1].tolist() and first[2] == second[2]
