"""Atomic checkpoints with a data position, and verified, run-shape-aware auto-resume,
extending solo-learn's callbacks.

solo-learn's ``Checkpointer`` writes the checkpoint in place, so a kill during the save
can leave a truncated ``.ckpt`` that auto-resume then picks up; it keeps only the newest
checkpoint of a run, so there is nothing to fall back on; and its ``AutoResumer`` matches
only dataset, epochs and optimiser fields, so a 4-view run could resume an 8-view
checkpoint, and skips a run of another shape without saying why. All three are extended here
rather than copied.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
from omegaconf import DictConfig
from solo.utils.auto_resumer import AutoResumer
from solo.utils.checkpointer import Checkpointer
from solo.utils.misc import omegaconf_select

from solo_clamp import internals
from solo_clamp.checkpoints import CheckpointError, load_checkpoint
from solo_clamp.methods import facts_of, known
from solo_clamp.training.faults import CheckpointWriteError, ResumeWarning
from solo_clamp.training.rng import collect_rng_states, set_rng_states

DEFAULT_KEEP_LAST = 2

RUN_SHAPE_FIELDS = ("method", "backbone.name", "data.num_large_crops", "data.num_small_crops")
"""Fields every method's run shape includes; the method adds its ``facts.shape_fields``."""


def run_shape_fields(cfg: DictConfig) -> list[str]:
    """The fields a checkpoint's run must share with ``cfg`` to be resumed: views, backbone,
    the method's shape fields (``MethodFacts.shape_fields``, under ``method_kwargs``), seed."""
    method = cfg.get("method")
    own = facts_of(method).shape_fields if method in known() else ()
    return [*RUN_SHAPE_FIELDS, *(f"method_kwargs.{name}" for name in own), "seed"]


def write_error_message(path: Path, err: OSError, previous: Optional[Path]) -> str:
    cause = err.strerror or str(err)
    kept = (
        f"the previous checkpoint '{previous}' is intact"
        if previous
        else "no earlier checkpoint of this run was written"
    )
    return (
        f"cannot write '{path}' ({cause}); {kept}. Free space or fix permissions in "
        f"'{path.parent}', then run again with auto_resume.enabled=True."
    )


class AtomicCheckpointer(Checkpointer):
    """solo-learn's Checkpointer, but each checkpoint is written to a temporary file and
    renamed into place, so an interrupted or failed save leaves the previous checkpoint
    usable; the newest ``keep_last`` checkpoints of the run are kept (all with ``keep_prev``).

    Each checkpoint stores the global RNG states (``solo_clamp.training.rng``), restored when
    the resumed run starts its next epoch, so that it sees the same data order and
    augmentations as an uninterrupted run. A mid-epoch checkpoint (:meth:`save_mid_epoch`)
    also stores the states the epoch's data iterator was created from and the number of
    batches done: the resumed run recreates that iterator and replays those batches' data
    loading (no training) to continue exactly where the interrupted run stopped.
    """

    def __init__(
        self,
        cfg: DictConfig,
        logdir: os.PathLike,
        frequency: int = 1,
        keep_prev: bool = False,
        keep_last: int = DEFAULT_KEEP_LAST,
        replay_data: bool = True,
    ):
        internals.require_tested_version("lightning")
        internals.require_tested_version("solo-learn")  # Checkpointer's attributes are used
        super().__init__(cfg, logdir=logdir, frequency=frequency, keep_prev=keep_prev)
        self.keep_last = keep_last
        self.replay_data = replay_data  # False for DALI, whose iterators cannot be replayed
        self.last_saved_step: Optional[int] = None
        self.last_save_time = time.monotonic()
        self._written: list[Path] = []
        self._state: dict[str, Any] = {}
        self._pending: Optional[dict[str, Any]] = None
        self._setup_rng: Optional[dict[str, Any]] = None
        self._epoch_start_rng: Optional[dict[str, Any]] = None

    def state_dict(self) -> dict[str, Any]:
        return self._state or {"rng_states": collect_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict if "rng_states" in state_dict else None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning creates epoch 0's data iterator before on_train_epoch_start (solo-learn's
        # configure_optimizers already asks for it), from the states as they are here (the
        # sanity check in between runs under isolate_rng).
        self._setup_rng = collect_rng_states()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.last_save_time = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pending, self._pending = self._pending, None
        if pending and "batches_done" in pending and self.replay_data:
            self._epoch_start_rng = pending["epoch_start_rng_states"]
            set_rng_states(self._epoch_start_rng)
            internals.replay_epoch_batches(trainer, int(pending["batches_done"]))
            set_rng_states(pending["rng_states"])
            return
        if pending:
            set_rng_states(pending["rng_states"])
        if internals.resuming_mid_epoch(trainer):
            self._epoch_start_rng = None  # resumed mid-epoch without a stored position
        elif trainer.current_epoch == 0:
            self._epoch_start_rng = self._setup_rng
        else:  # Lightning creates this epoch's iterator right after this hook
            self._epoch_start_rng = collect_rng_states()

    def save_args(self, trainer: pl.Trainer) -> None:
        try:
            super().save_args(trainer)
        except OSError as err:
            raise CheckpointWriteError(
                write_error_message(self.path / "args.json", err, None)
            ) from err

    def save(self, trainer: pl.Trainer) -> None:
        """The end-of-epoch checkpoint, ``<name>-<run>-ep=<epoch>.ckpt``."""
        if trainer.sanity_checking:
            return
        final = self.path / self.ckpt_placeholder.format(trainer.current_epoch)
        self._write(trainer, final, {"rng_states": collect_rng_states()})

    def save_mid_epoch(self, trainer: pl.Trainer, rng_states: dict[str, Any]) -> Path:
        """A checkpoint of the state after the last completed step,
        ``<name>-<run>-ep=<epoch>-step=<global step>.ckpt``.

        Args:
            rng_states: the global RNG states right after that step (before any later batch
                was loaded).
        """
        state: dict[str, Any] = {"rng_states": rng_states}
        if internals.epoch_in_progress(trainer) and self._epoch_start_rng is not None:
            state["epoch_start_rng_states"] = self._epoch_start_rng
            state["batches_done"] = internals.batches_completed(trainer)
        name = self.ckpt_placeholder.format(trainer.current_epoch)
        final = self.path / name.replace(".ckpt", f"-step={trainer.global_step}.ckpt")
        self._write(trainer, final, state)
        return final

    def _write(self, trainer: pl.Trainer, final: Path, state: dict[str, Any]) -> None:
        partial = final.with_name(final.name + ".partial")
        error: Optional[OSError] = None
        passed_barrier = False
        self._state = state
        try:
            trainer.save_checkpoint(partial)
            passed_barrier = True
            if trainer.is_global_zero:
                with open(partial, "rb") as handle:  # on disk before the rename
                    os.fsync(handle.fileno())
                os.replace(partial, final)
        except OSError as err:
            error = err
        finally:
            self._state = {}
        if trainer.world_size > 1:
            if not passed_barrier:  # rank 0 failed inside save_checkpoint, before its barrier
                trainer.strategy.barrier("Trainer.save_checkpoint")
            failed = trainer.strategy.reduce_boolean_decision(error is not None, all=False)
            if failed and error is None:
                error = OSError(f"rank 0 could not write {partial}")
        if error is not None:
            if trainer.is_global_zero:
                with contextlib.suppress(OSError):
                    partial.unlink(missing_ok=True)
            raise CheckpointWriteError(write_error_message(final, error, self.last_ckpt)) from error
        self.last_ckpt = final
        self.last_saved_step = trainer.global_step
        self.last_save_time = time.monotonic()
        self._prune(trainer, final)

    def _prune(self, trainer: pl.Trainer, newest: Path) -> None:
        if newest in self._written:
            self._written.remove(newest)
        self._written.append(newest)
        while len(self._written) > self.keep_last and not self.keep_prev:
            oldest = self._written.pop(0)
            if trainer.is_global_zero:
                with contextlib.suppress(OSError):  # a later save reports a full disk
                    oldest.unlink(missing_ok=True)


def verify_checkpoint(path: os.PathLike) -> None:
    """Raises CheckpointError unless ``path`` loads with the project's safe loader
    (``solo_clamp.checkpoints.load_checkpoint``) and holds the training state a resume needs."""
    checkpoint = load_checkpoint(path)
    for key in ("optimizer_states", "loops"):
        if key not in checkpoint:
            raise CheckpointError(
                f"{path}: not a training checkpoint (no {key!r}): training cannot resume from it."
            )


def first_usable(candidates: list[Path], field: str) -> Optional[Path]:
    """The first of ``candidates`` (newest first) that :func:`verify_checkpoint` accepts; each
    one skipped is reported with a :class:`ResumeWarning` naming its path and the reason."""
    for path in candidates:
        try:
            verify_checkpoint(path)
        except CheckpointError as err:
            reason = str(err).removeprefix(f"{path}: ")
            warnings.warn(
                f"{field}: skipping unusable checkpoint '{path}': {reason}",
                ResumeWarning,
                stacklevel=2,
            )
            continue
        return path
    return None


def newest_first(run_dir: Path) -> list[Path]:
    """The ``.ckpt`` files of a run directory, newest first."""
    return sorted(run_dir.glob("*.ckpt"), key=os.path.getmtime, reverse=True)


def first_mismatch(previous: DictConfig, cfg: DictConfig, fields: list[str]) -> Optional[str]:
    """The first of ``fields`` that differs between a previous run's cfg and ``cfg``, said as
    ``"<field> is X there, Y in this run"``; None when they all match (absent = None)."""
    for field in fields:
        before, now = omegaconf_select(previous, field, None), omegaconf_select(cfg, field, None)
        if before != now:
            return f"{field} is {before!r} there, {now!r} in this run"
    return None


class RunShapeAutoResumer(AutoResumer):
    """AutoResumer that also requires the run shape (:func:`run_shape_fields`: views,
    backbone, the method's shape fields, seed) to match before resuming a checkpoint. A run of
    the same ``name`` that differs is refused with a :class:`ResumeWarning` naming the first
    differing field."""

    def should_match(self, cfg: DictConfig) -> list[str]:
        """Ours first: a mismatch is named by its most specific field (``backbone.name``, not
        ``backbone``), then solo-learn's ``SHOULD_MATCH``."""
        return [*run_shape_fields(cfg), *AutoResumer.SHOULD_MATCH]

    def matching_checkpoints(self, cfg: DictConfig) -> list[tuple[Path, Optional[Any]]]:
        """``(checkpoint, wandb run id)`` for every ``.ckpt`` younger than ``max_hours`` of
        the runs whose ``args.json`` matches ``cfg``, newest first (a run of the same name
        that does not match: a :class:`ResumeWarning` naming the field)."""
        now = datetime.now()
        found = []
        for directory, _, files in os.walk(self.checkpoint_dir):
            checkpoints = [Path(directory) / f for f in files if f.endswith(".ckpt")]
            args_file = Path(directory) / "args.json"
            if not checkpoints or not args_file.exists():
                continue
            try:
                previous = DictConfig(json.loads(args_file.read_text()))
            except (OSError, ValueError):
                continue
            mismatch = first_mismatch(previous, cfg, self.should_match(cfg))
            if mismatch is not None:
                if omegaconf_select(previous, "name", None) == cfg.get("name"):
                    warnings.warn(
                        f"auto_resume: not resuming the run in '{directory}' (same "
                        f"name, other settings): {mismatch}.",
                        ResumeWarning,
                        stacklevel=2,
                    )
                continue
            run_id = omegaconf_select(previous, "wandb_run_id", None)
            for checkpoint in checkpoints:
                try:
                    created = datetime.fromtimestamp(os.path.getmtime(checkpoint))
                except OSError:
                    continue
                if now - created < self.max_hours:
                    found.append((created, checkpoint, run_id))
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [(checkpoint, run_id) for _, checkpoint, run_id in found]

    def find_checkpoint(self, cfg: DictConfig) -> tuple[Optional[Path], Optional[Any]]:
        """The newest matching checkpoint (not verified) and its run's wandb id."""
        matches = self.matching_checkpoints(cfg)
        return matches[0] if matches else (None, None)
