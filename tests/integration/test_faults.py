"""Faults a cluster run meets besides a kill: a truncated checkpoint, a save that fails (disk
full, no permission), SIGUSR1 ahead of a time-out, and bad fault-tolerance settings.
docs/faults.md lists each one with what survives it.

The runs are tiny in-process ``solo-clamp pretrain`` calls: 12 images, batch 4, one step per
epoch (``limit_train_batches=1``).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path

import pytest
from clamp_testing import tiny_pretrain_overrides

from solo_clamp.checkpoints import load_checkpoint
from solo_clamp.cli import main
from solo_clamp.training.faults import EXIT_PREEMPTED, ResumeWarning, TrainingPreempted

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RESUMING = "Resuming from previous checkpoint that matches the run"


def tiny(images: Path, checkpoint_dir: Path, *extra: str) -> list[str]:
    return tiny_pretrain_overrides(
        images,
        checkpoint_dir,
        "log_every_n_steps=1",
        "max_epochs=3",
        "+limit_train_batches=1",
        *extra,
    )


def runs(checkpoint_dir: Path) -> list[Path]:
    return sorted((checkpoint_dir / "clamp").iterdir(), key=os.path.getmtime)


def epochs_trained(run: Path) -> set[int]:
    import csv

    with open(run / "metrics.csv") as handle:
        return {int(r["epoch"]) for r in csv.DictReader(handle) if r.get("train_clamp_loss_step")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, image_folder_writer) -> dict[str, Path]:
    """A 3-epoch run: with the default ``checkpoint.keep_last: 2`` its epoch-1 and epoch-2
    checkpoints remain."""
    root = tmp_path_factory.mktemp("finished")
    images = image_folder_writer(root / "images", classes=3, per_class=4)
    assert main(["pretrain", *tiny(images, root / "ckpt")]) == 0
    (run,) = runs(root / "ckpt")
    return {"images": images, "checkpoint_dir": root / "ckpt", "run": run}


def copy_with_truncated(finished: dict[str, Path], destination: Path, *epochs: int) -> Path:
    """A copy of the finished run's checkpoint directory whose ``-ep=N.ckpt`` files for
    ``epochs`` are cut to half their size. Returns the copied run directory."""
    shutil.copytree(finished["checkpoint_dir"], destination)
    run = destination / "clamp" / finished["run"].name
    for epoch in epochs:
        (checkpoint,) = run.glob(f"*-ep={epoch}.ckpt")
        stamp = checkpoint.stat().st_mtime
        os.truncate(checkpoint, checkpoint.stat().st_size // 2)
        os.utime(checkpoint, (stamp, stamp))  # still the newest, as after a cut-off write
    return run


def test_the_last_two_checkpoints_of_a_run_are_kept_by_default(finished):
    names = sorted(p.name.split("-ep=")[1] for p in finished["run"].glob("*.ckpt"))
    assert names == ["1.ckpt", "2.ckpt"]


def test_truncated_newest_checkpoint_is_reported_and_the_previous_one_is_resumed(
    finished, tmp_path, capsys
):
    run = copy_with_truncated(finished, tmp_path / "ckpt", 2)
    (bad,) = run.glob("*-ep=2.ckpt")
    (good,) = run.glob("*-ep=1.ckpt")
    capsys.readouterr()
    with pytest.warns(ResumeWarning) as caught:
        code = main(
            ["pretrain", *tiny(finished["images"], tmp_path / "ckpt", "auto_resume.enabled=True")]
        )
    assert code == 0
    (warning,) = [str(w.message) for w in caught if issubclass(w.category, ResumeWarning)]
    assert warning.startswith(
        f"auto_resume: skipping unusable checkpoint '{bad}': cannot be "
        "loaded with torch.load(weights_only=True) ("
    )
    assert "zip archive" in warning  # torch's reason, on one line
    assert f"{RESUMING}: '{good}'" in capsys.readouterr().out
    resumed = next(r for r in runs(tmp_path / "ckpt") if r.name != run.name)
    assert epochs_trained(resumed) == {2}  # epoch 2 trained again from epoch 1's checkpoint


def test_no_usable_checkpoint_left_starts_fresh_and_says_so(finished, tmp_path, capsys):
    run = copy_with_truncated(finished, tmp_path / "ckpt", 1, 2)
    capsys.readouterr()
    with pytest.warns(ResumeWarning) as caught:
        code = main(
            ["pretrain", *tiny(finished["images"], tmp_path / "ckpt", "auto_resume.enabled=True")]
        )
    assert code == 0
    messages = [str(w.message) for w in caught if issubclass(w.category, ResumeWarning)]
    assert len(messages) == 3 and all("skipping unusable checkpoint" in m for m in messages[:2])
    assert messages[2] == (
        "auto_resume: none of the 2 checkpoints that match the run can be loaded: starting fresh."
    )
    assert RESUMING not in capsys.readouterr().out
    fresh = next(r for r in runs(tmp_path / "ckpt") if r.name != run.name)
    assert epochs_trained(fresh) == {0, 1, 2}


def test_a_bad_resume_from_checkpoint_is_an_error_naming_the_file(finished, tmp_path, capsys):
    run = copy_with_truncated(finished, tmp_path / "ckpt", 2)
    (bad,) = run.glob("*-ep=2.ckpt")
    code = main(
        [
            "pretrain",
            *tiny(finished["images"], tmp_path / "ckpt", f"+resume_from_checkpoint='{bad}'"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"solo-clamp pretrain: error: resume_from_checkpoint: {bad}: cannot be loaded" in err
    assert "Traceback" not in err


def test_a_run_directory_as_resume_from_checkpoint_uses_its_newest_usable_checkpoint(
    finished, tmp_path, capsys
):
    run = copy_with_truncated(finished, tmp_path / "ckpt", 2)
    (good,) = run.glob("*-ep=1.ckpt")
    capsys.readouterr()
    with pytest.warns(ResumeWarning, match="resume_from_checkpoint: skipping unusable"):
        code = main(
            [
                "pretrain",
                *tiny(finished["images"], tmp_path / "ckpt", f"+resume_from_checkpoint={run}"),
            ]
        )
    assert code == 0
    assert f"Resuming from the newest usable checkpoint of the run: '{good}'" in (
        capsys.readouterr().out
    )


def disk_full_at_epoch_one(original):
    """``Trainer.save_checkpoint`` that writes part of the epoch-1 file, then fails as a full
    disk does (``ENOSPC``)."""

    def save_checkpoint(trainer, filepath, *args, **kwargs):
        if "-ep=1." not in str(filepath):
            return original(trainer, filepath, *args, **kwargs)
        Path(filepath).write_bytes(b"PK\x03\x04 part of a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    return save_checkpoint


def test_a_failed_save_keeps_the_previous_checkpoint_and_names_the_path(
    tmp_path, image_folder_writer, capsys
):
    from lightning.pytorch import Trainer

    images = image_folder_writer(tmp_path / "images", classes=3, per_class=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", disk_full_at_epoch_one(Trainer.save_checkpoint))
        code = main(["pretrain", *tiny(images, tmp_path / "ckpt")])
    assert code == 2
    (run,) = runs(tmp_path / "ckpt")
    (previous,) = run.glob("*-ep=0.ckpt")
    target = previous.with_name(previous.name.replace("-ep=0.", "-ep=1."))
    err = capsys.readouterr().err
    assert (
        f"solo-clamp pretrain: error: cannot write '{target}' (No space left on device); "
        f"the previous checkpoint '{previous}' is intact. Free space or fix permissions in "
        f"'{run}', then run again with auto_resume.enabled=True."
    ) in err
    assert "Traceback" not in err
    assert [p.name for p in run.iterdir() if "ckpt" in p.name] == [previous.name]  # no partial
    assert load_checkpoint(previous)["epoch"] == 0


def test_sigusr1_stops_after_the_step_with_a_checkpoint_and_status_143(
    tmp_path, image_folder_writer, capsys
):
    """SLURM's warning signal, sent by the training step itself (in-process, so the signal
    lands at a known step): the run saves after that step and raises TrainingPreempted."""
    from solo.methods import METHODS

    images = image_folder_writer(tmp_path / "images", classes=3, per_class=4)
    clamp = METHODS["clamp"]
    original = clamp.training_step

    def signals_at_step_two(self, batch, batch_idx):
        if self.trainer.global_step == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, batch, batch_idx)

    before = signal.getsignal(signal.SIGUSR1)
    one_epoch = tiny_pretrain_overrides(images, tmp_path / "ckpt", "max_epochs=1")  # 3 steps
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clamp, "training_step", signals_at_step_two)
        with pytest.raises(TrainingPreempted) as stopped:
            main(["pretrain", *one_epoch])
    assert stopped.value.code == EXIT_PREEMPTED
    assert signal.getsignal(signal.SIGUSR1) is before  # handlers restored after the run
    (run,) = runs(tmp_path / "ckpt")
    (checkpoint,) = run.glob("*.ckpt")
    assert checkpoint.name.endswith("-ep=0-step=2.ckpt")
    assert stopped.value.checkpoint == checkpoint
    assert (
        f"solo-clamp pretrain: stopped by SIGUSR1 at epoch 0, batch 2/3 (global step 2); "
        f"saved '{checkpoint}'."
    ) in capsys.readouterr().err
    state = load_checkpoint(checkpoint)
    assert state["global_step"] == 2
    assert state["callbacks"]["AtomicCheckpointer"]["batches_done"] == 2


class SignalsItsOwnWorker:
    """A one-item dataset whose worker receives SIGTERM and SIGUSR1 while loading, as when a
    scheduler signals every process of the job."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> int:
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            os.kill(os.getpid(), signum)
        return int(os.environ.get("CLAMP_TEST_WORKER_INIT", "-1"))


def mark_worker(worker_id: int) -> None:
    os.environ["CLAMP_TEST_WORKER_INIT"] = str(worker_id)


def test_data_loader_workers_outlive_stop_signals_sent_to_the_whole_job():
    """Without keep_workers_through_stop_signals the worker dies of the SIGTERM and the loader
    raises in the training process ("DataLoader worker (pid(s) ...) exited unexpectedly" here;
    "... is killed by signal: Terminated" on the MNIST job signalled as a process group)."""
    from torch.utils.data import DataLoader

    from solo_clamp.training.preemption import keep_workers_through_stop_signals

    loader = DataLoader(SignalsItsOwnWorker(), num_workers=1, worker_init_fn=mark_worker)
    keep_workers_through_stop_signals(loader)
    assert [batch.tolist() for batch in loader] == [[0]]  # the existing init function still ran


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "+checkpoint.keep_last=0",
            "checkpoint.keep_last must be an integer >= 1 (how many of "
            "a run's newest checkpoints are kept), got 0.",
        ),
        (
            "+checkpoint.every_minutes=0",
            "checkpoint.every_minutes must be a number of minutes > "
            "0 (a mid-epoch checkpoint at most that often), or null for epoch ends only, got 0.",
        ),
        (
            "+checkpoint.every_minutes=soon",
            "checkpoint.every_minutes must be a number of "
            "minutes > 0 (a mid-epoch checkpoint at most that often), or null for epoch ends "
            "only, got 'soon'.",
        ),
    ],
)
def test_bad_fault_tolerance_settings_name_the_field(
    tmp_path, image_folder_writer, capsys, override, message
):
    images = image_folder_writer(tmp_path / "images", classes=3, per_class=4)
    assert main(["pretrain", *tiny(images, tmp_path / "ckpt", override)]) == 2
    assert f"solo-clamp pretrain: error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


def test_every_test_named_in_docs_faults_md_exists(repo_root):
    import re

    doc = (repo_root / "docs" / "faults.md").read_text()
    named = set(re.findall(r"`(test_\w+)`", doc))
    sources = "".join(
        (repo_root / "tests" / "integration" / name).read_text()
        for name in ("test_faults.py", "test_resume.py")
    )
    defined = set(re.findall(r"^def (test_\w+)\(", sources, flags=re.MULTILINE))
    assert len(named) >= 10 and named <= defined, sorted(named - defined)
