"""Stopping cleanly when the cluster asks, and time-based checkpoints.

Schedulers send SIGTERM before they kill a job (SLURM at a time-out or preemption,
Kubernetes on eviction, then SIGKILL after a grace period), and SLURM sends SIGUSR1 ahead of
a time-out when the job asks for it (``#SBATCH --signal=USR1@120``). On either signal the
run finishes its current step, writes a mid-epoch checkpoint, prints one line that says
where it is and how to resume, and exits with :data:`EXIT_PREEMPTED`.

How this sits with Lightning 2.1's own signal handling (``_SignalConnector``): our handlers
are installed before ``trainer.fit``. For SIGTERM, Lightning then runs its handler first (it
marks ``trainer.received_sigterm``, forwards the signal to DDP workers, and its loops raise
``SIGTERMException`` once the current step is done) and ours after it. For SIGUSR1,
Lightning installs its SLURM auto-requeue handler (an ``hpc_ckpt`` file plus ``scontrol
requeue``) only where no handler exists yet, so ours replaces it; requeueing is left to the
job script, on exit status 143. Under DDP, the ranks agree at the end of each step (one
all-reduce of two flags) whether a signal reached any of them, so that every rank stops
after the same step, as a checkpoint save needs all of them.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from solo_clamp import internals
from solo_clamp.training.faults import EXIT_PREEMPTED, CheckpointWriteError, TrainingPreempted
from solo_clamp.training.resume import AtomicCheckpointer
from solo_clamp.training.rng import collect_rng_states

# 128 + SIGTERM, what a shell reports for a job killed by SIGTERM; schedulers can requeue on
# it (SLURM: `scontrol requeue` in the job script, or RequeueExit=143 in slurm.conf).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def _ignore_stop_signals(previous_init: Optional[Callable[[int], None]], worker_id: int) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if previous_init is not None:
        previous_init(worker_id)


def keep_workers_through_stop_signals(loader: Any) -> None:
    """Makes the data-loader workers of ``loader`` ignore SIGTERM and SIGUSR1.

    Schedulers signal every process of a job (SLURM's ``scancel`` and time-outs, ``kill`` of a
    process group), workers included, and torch's worker SIGTERM handler exits unless the
    signal came from the loader's own process; the loader then raises "DataLoader worker ...
    is killed by signal: Terminated" in the training process in the middle of a step
    (measured on the MNIST job). Ignoring the signals keeps the workers until the training
    process has saved and shuts them down; they still exit if that process dies.
    """
    if isinstance(loader, torch.utils.data.DataLoader) and loader.num_workers > 0:
        loader.worker_init_fn = functools.partial(_ignore_stop_signals, loader.worker_init_fn)


class PreemptionCheckpoints(Callback):
    """Mid-epoch checkpoints on a stop signal and, optionally, every ``every_minutes``.

    A time-based checkpoint is planned at the end of a step (with the RNG states of that
    moment) and written when the next batch of the same epoch starts: there Lightning's
    progress counters agree that the step is complete.
    """

    def __init__(
        self, checkpointer: Optional[AtomicCheckpointer], every_minutes: Optional[float] = None
    ):
        internals.require_tested_version("lightning")
        self.checkpointer = checkpointer
        self.every_seconds = every_minutes * 60 if every_minutes and checkpointer else None
        self.received: Optional[str] = None
        self.stop: Optional[dict[str, Any]] = None
        self._planned: Optional[tuple[int, int, dict[str, Any]]] = None
        self._trainer: Optional[pl.Trainer] = None
        self._stopping = False
        self._resumed_step = 0

    @contextmanager
    def signal_handlers(self) -> Iterator[None]:
        """Our SIGTERM and SIGUSR1 handlers while the block (``trainer.fit``) runs."""
        if threading.current_thread() is not threading.main_thread():
            yield  # Python only lets the main thread handle signals
            return
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                if handler is not None:
                    signal.signal(signum, handler)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._resumed_step = trainer.global_step

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name
        trainer = self._trainer
        if (
            signum == signal.SIGTERM
            and trainer is not None
            and trainer.world_size > 1
            and (not self._stopping)
        ):
            # Lightning's handler, run just before this one, has asked this rank alone to
            # stop after its current step; another rank may already be in the next one. The
            # ranks agree at the end of a step instead (Lightning 2.1's _SignalConnector).
            internals.set_stop_after_step(trainer, False)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        stop = self.received is not None
        due = (
            self.every_seconds is not None
            and time.monotonic() - self.checkpointer.last_save_time >= self.every_seconds
        )
        if trainer.world_size > 1:
            flags = torch.tensor([stop, due], dtype=torch.int32, device=pl_module.device)
            stop, due = (bool(flag) for flag in trainer.strategy.reduce(flags, reduce_op="sum"))
        if not stop:
            if due:
                self._planned = (trainer.current_epoch, batch_idx + 1, collect_rng_states())
            return
        self._stopping = True
        # Lightning's loops stop after this step once trainer.received_sigterm is set.
        if trainer.world_size > 1:
            internals.set_stop_after_step(trainer, True)  # on every rank, at this step
        elif not trainer.received_sigterm:  # SIGUSR1: stop as on SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        planned, self._planned = self._planned, None
        if planned is not None and planned[:2] == (trainer.current_epoch, batch_idx):
            self.checkpointer.save_mid_epoch(trainer, planned[2])

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        self.stop = {
            "signal": self.received or "SIGTERM",
            "epoch": max(internals.epochs_started(trainer) - 1, 0),
            "batch": internals.batches_completed(trainer),
            "batches": trainer.num_training_batches,
            "step": trainer.global_step,
            "checkpoint": trainer.ckpt_path,  # the one resumed from, if nothing newer is saved
            "saved": False,
            "error": None,
        }
        checkpointer = self.checkpointer
        if checkpointer is None or not hasattr(checkpointer, "path"):
            return  # checkpoints disabled, or stopped before training started
        if checkpointer.last_saved_step == trainer.global_step:
            self.stop.update(checkpoint=checkpointer.last_ckpt, saved=True)
        elif trainer.global_step > self._resumed_step:  # a step was trained since the start
            try:
                path = checkpointer.save_mid_epoch(trainer, collect_rng_states())
                self.stop.update(checkpoint=path, saved=True)
            except CheckpointWriteError as err:
                self.stop["error"] = err

    def preempted(self, trainer: pl.Trainer) -> BaseException:
        """What to raise after ``trainer.fit`` ended with Lightning's SIGTERMException: a
        :class:`TrainingPreempted`, or the error of a checkpoint that could not be written.
        Prints the one-line report (global rank 0 only)."""
        stop = self.stop or {
            "signal": self.received or "SIGTERM",
            "checkpoint": None,
            "saved": False,
            "error": None,
        }
        if stop["error"] is not None:
            return stop["error"]
        where = (
            f" at epoch {stop['epoch']}, batch {stop['batch']}/{stop['batches']} "
            f"(global step {stop['step']})"
            if "step" in stop
            else ""
        )
        checkpoint = stop["checkpoint"]
        if checkpoint is None:
            reason = (
                "checkpoints are disabled (checkpoint.enabled=False)"
                if self.checkpointer is None
                else "no step was trained"
            )
            message = (
                f"stopped by {stop['signal']}{where}; nothing saved: {reason}. "
                f"Exit status {EXIT_PREEMPTED}."
            )
        else:
            state = "saved" if stop["saved"] else "no step since resuming from"
            message = (
                f"stopped by {stop['signal']}{where}; {state} '{checkpoint}'. "
                f"Resume: the same command with auto_resume.enabled=True (or "
                f"resume_from_checkpoint={Path(checkpoint).parent}). "
                f"Exit status {EXIT_PREEMPTED}."
            )
        if trainer.is_global_zero:
            print(f"solo-clamp pretrain: {message}", file=sys.stderr, flush=True)
        return TrainingPreempted(message, checkpoint)
