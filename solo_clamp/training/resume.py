"""Atomic checkpoints and run-shape-aware auto-resume, extending solo-learn's callbacks.

solo-learn's ``Checkpointer`` writes the checkpoint in place, so a kill during the save
can leave a truncated ``.ckpt`` that auto-resume then picks up; and its ``AutoResumer``
matches only dataset, epochs and optimiser fields, so a 4-view run could resume an
8-view checkpoint. Both are extended here rather than copied.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
from omegaconf import DictConfig
from solo.utils.auto_resumer import AutoResumer
from solo.utils.checkpointer import Checkpointer
from solo.utils.misc import omegaconf_select

from solo_clamp.training.rng import collect_rng_states, set_rng_states

RUN_SHAPE_FIELDS = (
    "method",
    "backbone.name",
    "data.num_large_crops",
    "data.num_small_crops",
    "method_kwargs.proj_hidden_dim",
    "method_kwargs.proj_output_dim",
    "method_kwargs.proj_hidden_layers",
    "method_kwargs.rs",
    "method_kwargs.pot_pow",
    "method_kwargs.lw0",
    "method_kwargs.lw1",
    "method_kwargs.min_margin",
    "method_kwargs.max_range",
    "seed",
)


class AtomicCheckpointer(Checkpointer):
    """solo-learn's Checkpointer, but each checkpoint is written to a temporary file and
    renamed into place, so an interrupted save leaves the previous checkpoint usable.

    It also stores the global RNG states with each checkpoint and restores them when the
    resumed run starts its next epoch (``solo_clamp.training.rng``), so that a resumed run
    sees the same data order and augmentations as an uninterrupted one.
    """

    _pending_rng_states: Optional[dict] = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng_states": collect_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_rng_states = state_dict.get("rng_states")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending_rng_states is not None:
            set_rng_states(self._pending_rng_states)
            self._pending_rng_states = None

    def save(self, trainer: pl.Trainer):
        if trainer.sanity_checking:
            return
        final = self.path / self.ckpt_placeholder.format(trainer.current_epoch)
        partial = final.with_name(final.name + ".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, final)
            if self.last_ckpt and self.last_ckpt != final and not self.keep_prev:
                Path(self.last_ckpt).unlink(missing_ok=True)
        self.last_ckpt = final


class RunShapeAutoResumer(AutoResumer):
    """AutoResumer that also requires the run shape (views, backbone, CLAMP's
    hyper-parameters, seed) to match before resuming a checkpoint."""

    SHOULD_MATCH = [*AutoResumer.SHOULD_MATCH, *RUN_SHAPE_FIELDS]

    def find_checkpoint(self, cfg: DictConfig) -> tuple[Optional[Path], Optional[Any]]:
        now = datetime.now()
        candidates = []
        for directory, _, files in os.walk(self.checkpoint_dir):
            checkpoints = sorted(f for f in files if f.endswith(".ckpt"))
            args_file = Path(directory) / "args.json"
            if not checkpoints or not args_file.exists():
                continue
            newest = max((Path(directory) / f for f in checkpoints), key=os.path.getmtime)
            created = datetime.fromtimestamp(os.path.getmtime(newest))
            if now - created < self.max_hours:
                candidates.append((created, newest, args_file))
        for _, checkpoint, args_file in sorted(candidates, reverse=True):
            try:
                previous = DictConfig(json.loads(args_file.read_text()))
            except (OSError, ValueError):
                continue
            if all(
                omegaconf_select(previous, field, None) == omegaconf_select(cfg, field, None)
                for field in self.SHOULD_MATCH
            ):
                return checkpoint, omegaconf_select(previous, "wandb_run_id", None)
        return None, None
