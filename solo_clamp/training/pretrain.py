"""CLAMP (or ManifoldCLR) pretraining on solo-learn's machinery (what ``main_pretrain.py``
and ``solo-clamp pretrain`` run).

Differences from solo-learn's own ``main_pretrain.py``, each for a reason:

* any number of large crops (solo-learn asserts exactly two; CLAMP uses 4-16 views);
* early, named errors for bad input before any heavy work (``preflight``);
* an optional ``prepare_data`` node that builds the MNIST / Fashion-MNIST ImageFolder;
* CSV logging into the run's checkpoint directory (``csv.enabled``), atomic checkpoints
  and verified, run-shape-aware auto-resume (``solo_clamp.training.resume``);
* on SIGTERM / SIGUSR1 a mid-epoch checkpoint and exit status 143, and optional
  time-based checkpoints (``solo_clamp.training.preemption``);
* an optional ``evaluate.knn`` node: kNN top-1 on a held-out split for the trained backbone
  and its two floors, the same backbone at initialisation and raw pixels, and how spread the
  backbones' features are (mean cosine, effective rank), printed and written to ``knn.json``
  in the run directory; the report ends with the run's problems, if any (a method's diverged
  training, collapsed features): ``solo_clamp.training.pretrain_report``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from solo.args.pretrain import parse_cfg
from solo.data.classification_dataloader import prepare_data
from solo.data.pretrain_dataloader import (
    FullTransformPipeline,
    NCropAugmentation,
    prepare_dataloader,
)
from solo.methods import METHODS
from solo.utils.misc import make_contiguous

import solo_clamp
from solo_clamp.data import prepare_image_folder
from solo_clamp.data.robust import check_enough_images, guard_train_dataset
from solo_clamp.errors import CheckpointError, ConfigError, DivergedError
from solo_clamp.training.checks import check_field_types, num_processes, preflight
from solo_clamp.training.common import (
    build_trainer,
    loggers_and_callbacks,
    parse_solo_cfg,
    solo_pretrain_dataset,
)
from solo_clamp.training.preemption import (
    PreemptionCheckpoints,
    keep_workers_through_stop_signals,
)
from solo_clamp.training.pretrain_report import (
    collapse_problems,
    format_knn_report,
    knn_report,
    training_problems,
)
from solo_clamp.training.resume import (
    AtomicCheckpointer,
    ResumeWarning,
    RunShapeAutoResumer,
    first_usable,
    newest_first,
    verify_checkpoint,
)

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def _apply_prepare_data(cfg: DictConfig) -> None:
    node = cfg.get("prepare_data")
    if not node:
        return
    prepared = prepare_image_folder(
        name=node.name,
        root=node.get("root", "datasets"),
        source=node.get("source"),
        train_per_class=node.get("train_per_class"),
        val_per_class=node.get("val_per_class"),
        seed=node.get("seed", 0),
        val_from=node.get("val_from", "test"),
    )
    cfg.data.dataset = "custom"
    cfg.data.train_path = str(prepared.train)
    if cfg.get("evaluate") and cfg.evaluate.get("knn"):
        knn = cfg.evaluate.knn
        if not knn.get("val_path"):
            knn.split = "validation" if node.get("val_from") == "train" else "test"
        knn.train_path = knn.get("train_path") or str(prepared.train)
        knn.val_path = knn.get("val_path") or str(prepared.val)


def _train_dataloader(cfg: DictConfig):
    if cfg.data.format == "dali":
        from solo.data.dali_dataloader import PretrainDALIDataModule, build_transform_pipeline_dali

        pipelines = [
            NCropAugmentation(
                build_transform_pipeline_dali(cfg.data.dataset, aug, dali_device=cfg.dali.device),
                aug.num_crops,
            )
            for aug in cfg.augmentations
        ]
        return PretrainDALIDataModule(
            dataset=cfg.data.dataset,
            train_data_path=cfg.data.train_path,
            transforms=FullTransformPipeline(pipelines),
            num_large_crops=cfg.data.num_large_crops,
            num_small_crops=cfg.data.num_small_crops,
            num_workers=cfg.data.num_workers,
            batch_size=cfg.optimizer.batch_size,
            no_labels=cfg.data.no_labels,
            data_fraction=cfg.data.fraction,
            dali_device=cfg.dali.device,
            encode_indexes_into_labels=cfg.dali.encode_indexes_into_labels,
        )
    dataset = solo_pretrain_dataset(cfg)
    dataset = guard_train_dataset(dataset, cfg.data.get("on_bad_image"))
    check_enough_images(dataset, cfg.optimizer.batch_size, num_processes(cfg))
    loader = prepare_dataloader(
        dataset, batch_size=cfg.optimizer.batch_size, num_workers=cfg.data.num_workers
    )
    keep_workers_through_stop_signals(loader)
    return loader


def _val_dataloader(cfg: DictConfig):
    if cfg.data.val_path is None:
        return None
    _, val_loader = prepare_data(
        cfg.data.dataset,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format="image_folder" if cfg.data.format == "dali" else cfg.data.format,
        batch_size=cfg.optimizer.batch_size,
        num_workers=cfg.data.num_workers,
    )
    return val_loader


def _resume_path(cfg: DictConfig) -> tuple[Optional[str], Optional[str]]:
    """The checkpoint to resume from, verified with the safe loader: ``resume_from_checkpoint``
    (a file, or a run directory: its newest usable checkpoint), else with ``auto_resume`` the
    newest usable checkpoint of a run of the same shape. Unusable ones are skipped with a
    ``ResumeWarning`` naming the file and the reason."""
    if cfg.resume_from_checkpoint is not None:
        path = Path(cfg.resume_from_checkpoint)
        del cfg.resume_from_checkpoint
        if not path.is_dir():
            try:
                verify_checkpoint(path)
            except CheckpointError as err:
                raise CheckpointError(f"resume_from_checkpoint: {err}") from err
            return str(path), None
        candidates = newest_first(path)
        chosen = first_usable(candidates, "resume_from_checkpoint")
        if chosen is None:
            raise CheckpointError(
                f"resume_from_checkpoint={str(path)!r}: no usable .ckpt file in "
                f"this directory ({len(candidates)} found)."
            )
        print(f"Resuming from the newest usable checkpoint of the run: '{chosen}'")
        return str(chosen), None
    if not cfg.auto_resume.enabled:
        return None, None
    resumer = RunShapeAutoResumer(
        checkpoint_dir=os.path.join(cfg.checkpoint.dir, cfg.method),
        max_hours=cfg.auto_resume.max_hours,
    )
    matches = resumer.matching_checkpoints(cfg)
    chosen = first_usable([checkpoint for checkpoint, _ in matches], "auto_resume")
    if chosen is None:
        if matches:
            warnings.warn(
                f"auto_resume: none of the {len(matches)} checkpoints that match the "
                "run can be loaded: starting fresh.",
                ResumeWarning,
                stacklevel=2,
            )
        return None, None
    print(f"Resuming from previous checkpoint that matches the run: '{chosen}'")
    return str(chosen), dict(matches)[chosen]


def _fit(cfg: DictConfig, trainer, model, train_data, val_loader, ckpt_path, preemption) -> None:
    """``trainer.fit`` with the stop-signal handlers installed; a stop signal ends it with
    ``TrainingPreempted`` (exit status 143) once the mid-epoch checkpoint is written, a
    method's ``FloatingPointError`` (non-finite embeddings or losses) with
    :class:`~solo_clamp.errors.DivergedError`."""
    with warnings.catch_warnings(), preemption.signal_handlers():
        if cfg.data.format != "dali":  # the checkpointer replays the data position itself
            warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before")
        try:
            if cfg.data.format == "dali":
                train_data.val_dataloader = lambda: val_loader
                trainer.fit(model, ckpt_path=ckpt_path, datamodule=train_data)
            else:
                trainer.fit(model, train_data, val_loader, ckpt_path=ckpt_path)
        except SIGTERMException:
            raise preemption.preempted(trainer) from None
        except FloatingPointError as err:  # the methods' divergence checks (methods/)
            if isinstance(err, DivergedError):
                raise
            raise DivergedError(str(err)) from err


def run_pretrain(cfg: DictConfig) -> dict[str, Any]:
    """Pretrains ``cfg.method`` (CLAMP, ManifoldCLR, or solo-learn's SimCLR) from a
    Hydra/OmegaConf config in solo-learn's layout.

    Returns:
        A summary: run directory, last checkpoint, and the kNN report when enabled.
    """
    solo_clamp.register()
    OmegaConf.set_struct(cfg, False)
    check_field_types(cfg)  # before the data is prepared
    _apply_prepare_data(cfg)
    preflight(cfg)
    cfg = parse_solo_cfg(cfg, parse_cfg)
    # The data first: unreadable or too few images fail before the model is built.
    train_data = _train_dataloader(cfg)
    val_loader = _val_dataloader(cfg)
    seed_everything(cfg.seed)

    try:
        model = METHODS[cfg.method](cfg)
    except ValueError as err:  # a method's own cfg checks in its constructor (methods/)
        raise ConfigError(str(err)) from err
    make_contiguous(model)
    if not cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)

    ckpt_path, wandb_run_id = _resume_path(cfg)
    loggers, callbacks, run_dir = loggers_and_callbacks(cfg, model, wandb_run_id)
    checkpointer = next((c for c in callbacks if isinstance(c, AtomicCheckpointer)), None)
    preemption = PreemptionCheckpoints(checkpointer, cfg.checkpoint.get("every_minutes"))
    trainer = build_trainer(cfg, loggers, [*callbacks, preemption])
    default_threads = torch.get_num_threads()
    if cfg.performance.get("num_threads"):
        # Compute threads plus loader workers beyond the core count can make OpenMP
        # spin-wait on a loaded machine; on an idle 2-core one, 2 threads + 1 worker ran a
        # 1-epoch main job in 70 s against 80 s for 1 + 1, so each config sets its own.
        torch.set_num_threads(int(cfg.performance.num_threads))
    _fit(cfg, trainer, model, train_data, val_loader, ckpt_path, preemption)

    torch.set_num_threads(default_threads)  # evaluation runs without loader workers
    problems = training_problems(cfg, trainer.callback_metrics)
    summary: dict[str, Any] = {"run_dir": run_dir, "problems": problems}
    if checkpointer is not None and checkpointer.last_ckpt and trainer.is_global_zero:
        summary["run_dir"] = str(checkpointer.path)
        summary["checkpoint"] = str(checkpointer.last_ckpt)
    if cfg.get("evaluate") and cfg.evaluate.get("knn") and trainer.is_global_zero:
        report = knn_report(cfg, model.backbone)
        problems += collapse_problems(report, cfg.method, type(model).__name__)
        report["problems"] = problems
        summary["knn"] = report
        Path(summary["run_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(summary["run_dir"]) / "knn.json").write_text(json.dumps(report, indent=2))
        print(format_knn_report(report, cfg.method, type(model).__name__))
    elif problems and trainer.is_global_zero:
        print("\n".join(problems))
    return summary
