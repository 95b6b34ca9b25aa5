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
  training, collapsed features).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

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
from solo_clamp.evaluation import (
    FLOORS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RawPixels,
    eval_transform,
    extract_features,
    image_folder_loader,
    knn_accuracy,
    untrained_backbone,
)
from solo_clamp.geometry.features import COLLAPSE_EFFECTIVE_RANK, collapsed, feature_spread
from solo_clamp.methods import facts_of
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


def knn_report(cfg: DictConfig, trained_backbone: torch.nn.Module) -> dict[str, Any]:
    """kNN top-1/top-5 of the trained backbone (keys ``<method>_knn_top1/5``) and of its two
    floors (:mod:`solo_clamp.evaluation`), measured the same way (same bank, same held-out
    images, same k, T and distance): the same backbone at initialisation, and raw pixels (the
    normalised evaluation image, flattened)."""
    node = cfg.evaluate.knn
    aug = cfg.augmentations[0]
    transform = eval_transform(
        aug.crop_size, aug.get("mean", IMAGENET_MEAN), aug.get("std", IMAGENET_STD)
    )
    batch_size = node.get("batch_size", 256)
    train_loader = image_folder_loader(Path(node.train_path), transform, batch_size)
    val_loader = image_folder_loader(Path(node.val_path), transform, batch_size)
    results: dict[str, Any] = {
        "k": node.get("k", 20),
        "temperature": node.get("T", 0.07),
        "distance": node.get("distance", "cosine"),
        "split": node.get("split", "held-out"),
        "seed": cfg.seed,
        "crop_size": aug.crop_size,
        "train_images": len(train_loader.dataset),
        "test_images": len(val_loader.dataset),
    }
    extractors = {
        "untrained": untrained_backbone(cfg, cfg.seed),
        "raw_pixels": RawPixels(aug.crop_size),
        cfg.method: trained_backbone,
    }
    for label, extractor in extractors.items():
        extractor = extractor.cpu()
        train = extract_features(extractor, train_loader, desc=f"{label} bank features")
        test = extract_features(extractor, val_loader, desc=f"{label} {results['split']} features")
        top1, top5 = knn_accuracy(
            *train,
            *test,
            k=results["k"],
            temperature=results["temperature"],
            distance=results["distance"],
        )
        results[f"{label}_knn_top1"] = top1
        results[f"{label}_knn_top5"] = top5
        if label != "raw_pixels":
            spread = feature_spread(train[0])
            results[f"{label}_mean_cosine"] = spread["mean_cosine"]
            results[f"{label}_effective_rank"] = spread["effective_rank"]
    results["floors_beaten"] = [
        floor
        for floor in FLOORS
        if results[f"{cfg.method}_knn_top1"] > results[f"{floor}_knn_top1"]
    ]
    return results


def format_knn_report(report: dict[str, Any], method: str, name: str) -> str:
    """The report's printed lines: the three kNN top-1 numbers, then the verdict on each floor
    (``name`` is the method as printed, ``method`` its key prefix in the report)."""
    clamp = report[f"{method}_knn_top1"]
    numbers = ", ".join(
        f"{label} {report[f'{floor}_knn_top1']:.2f}%" for floor, label in FLOORS.items()
    )
    lines = [
        f"kNN top-1 (k={report['k']}, {report['distance']}, T={report['temperature']}; bank "
        f"{report['train_images']} training images; training seed {report.get('seed')}) on "
        f"{report['test_images']} "
        f"{report['split']} images: {name} {clamp:.2f}% vs {numbers}"
    ]
    below = [floor for floor in FLOORS if floor not in report["floors_beaten"]]
    for floor in below:
        gap = clamp - report[f"{floor}_knn_top1"]
        lines.append(f"{name} is BELOW the {FLOORS[floor]} floor ({gap:+.2f} points).")
    if not below:
        gaps = ", ".join(
            f"{clamp - report[f'{floor}_knn_top1']:+.2f} points over {label}"
            for floor, label in FLOORS.items()
        )
        lines.append(f"{name} beats both floors ({gaps}).")
    return "\n".join([*lines, *report.get("problems", [])])


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


def collapse_problems(report: dict[str, Any], method: str, name: str) -> list[str]:
    """A sentence when the trained backbone's bank features have collapsed
    (:func:`solo_clamp.geometry.features.collapsed`), with the untrained backbone's values
    beside."""
    keys = ("mean_cosine", "effective_rank")
    spread = {key: report[f"{method}_{key}"] for key in keys}
    untrained = {key: report[f"untrained_{key}"] for key in keys}
    if not collapsed(spread, untrained):
        return []
    return [
        f"{name}'s features COLLAPSED: effective rank {spread['effective_rank']:.1f} over the "
        f"bank images (bound {COLLAPSE_EFFECTIVE_RANK:g}, the untrained backbone "
        f"{untrained['effective_rank']:.1f}), mean cosine {spread['mean_cosine']:.2f} "
        f"(untrained {untrained['mean_cosine']:.2f})."
    ]


def training_problems(cfg: DictConfig, metrics: Mapping[str, Any]) -> list[str]:
    """What the method's ``facts.diagnose`` finds in the final epoch's logged metrics (e.g.
    ManifoldCLR's diverged posterior), one sentence each; empty when nothing is wrong."""
    diagnose = facts_of(cfg.method).diagnose
    if diagnose is None:
        return []
    values = {key: float(value) for key, value in metrics.items()}
    return diagnose(values, cfg.method_kwargs)
