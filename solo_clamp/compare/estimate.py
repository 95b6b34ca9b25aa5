"""``--estimate``: time a few steps per method and extrapolate the plan's duration."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable

import torch
from omegaconf import DictConfig

from solo_clamp.compare.config import torch_threads, validate_config
from solo_clamp.compare.data import build_probe, prepare_data, stratified_indices
from solo_clamp.compare.evaluation import untrained_backbone
from solo_clamp.compare.plan import RunSpec, plan_runs, steps_per_epoch
from solo_clamp.compare.training import train
from solo_clamp.compare.trials import trial_specs


def backbone_throughput(
    backbone: torch.nn.Module, batch: int, crop: int, repeats: int = 3
) -> float:
    """Images per second of forward + backward through ``backbone`` (best of ``repeats``), the
    reference that turns step times measured on a busy machine into ratios."""
    images = torch.randn(batch, 3, crop, crop)
    backbone.train()
    backbone(images).sum().backward()  # warm-up, untimed
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        backbone(images).sum().backward()
        best = min(best, time.perf_counter() - start)
    backbone.zero_grad(set_to_none=True)
    return batch / best


def estimate(cfg: DictConfig, steps: int = 4, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Times ``steps`` training steps of each method (after one untimed step), the evaluation
    forward throughput and a reference (plain backbone forward + backward, before and after),
    then extrapolates the plan's duration at the measured speed: tuning trials (each scored
    on the validation split), final runs (at the recipes' settings: the same steps as at the
    selected ones) and floors.

    ``relative_cost`` of a method = its step time / the reference time for the same number of
    views: what a step costs beyond pushing its views through the backbone (data loading,
    projector, loss, BYOL's momentum encoder); less sensitive to the machine's load than the
    step times themselves.
    """
    validate_config(cfg)
    with torch_threads(cfg):
        return _estimate(cfg, steps, log)


def _estimate(cfg: DictConfig, steps: int, log: Callable[[str], None]) -> dict[str, Any]:
    data = prepare_data(cfg)
    spe = steps_per_epoch(cfg, data)
    plan = plan_runs(cfg, spe)
    probe = build_probe(cfg, data)
    backbone = untrained_backbone(cfg, data, int(cfg.seeds[0]))
    crop = int(cfg.augmentations[0].crop_size)
    reference = [backbone_throughput(backbone, 2 * int(cfg.batch_size), crop)]
    start = time.perf_counter()
    probe(backbone)
    probe_images = len(probe.bank) + len(probe.test)
    forward_ips = probe_images / (time.perf_counter() - start)
    per_step: dict[str, float] = {}
    for method in cfg.methods:
        views = int(cfg.recipes[method].get("views", 2))
        spec = RunSpec(
            method, "equal_epochs", int(cfg.seeds[0]), views, steps + 1, spe, int(cfg.batch_size)
        )
        per_step[method] = statistics.median(train(cfg, spec, data, None).step_times[1:])
        log(f"{method}: {per_step[method]:.2f} s/step ({views} views x {cfg.batch_size} images)")
    reference.append(backbone_throughput(backbone, 2 * int(cfg.batch_size), crop))
    ref_ips = max(reference)  # the less disturbed of the two
    relative = {
        m: per_step[m] * ref_ips / (int(cfg.recipes[m].get("views", 2)) * cfg.batch_size)
        for m in per_step
    }
    bank_images = len(
        stratified_indices(
            data.dataset("train", None).targets, cfg.evaluation.train_per_class, data.held_out
        )
    )
    test_images = len(
        stratified_indices(data.dataset("val", None).targets, cfg.evaluation.val_per_class)
    )
    eval_images = bank_images + test_images
    trials = []
    validation_images = bank_images + len(data.held_out)
    if cfg.tuning.enabled:
        curves = bool(cfg.tuning.get("curves"))
        for spec in trial_specs(cfg, spe):
            points = spec.max_epochs // cfg.curves.every_n_epochs + 2 if curves else 1
            seconds = spec.steps * per_step[spec.method] + points * validation_images / forward_ips
            trials.append({"run_id": spec.run_id, "steps": spec.steps, "seconds": seconds})
    tune_only = cfg.tuning.enabled and cfg.tuning.get("only", False)
    rows = []
    for spec in [] if tune_only else plan:
        curve_points = spec.max_epochs // cfg.curves.every_n_epochs + 2
        seconds = (
            spec.steps * per_step[spec.method]
            + (curve_points * probe_images + eval_images) / forward_ips
        )
        rows.append({"run_id": spec.run_id, "steps": spec.steps, "seconds": seconds})
    floor_images = (validation_images if cfg.tuning.enabled else 0) + (
        0 if tune_only else eval_images
    )  # the validation floors, then the test floors
    floors_s = 2 * floor_images / forward_ips
    return {
        "seconds_per_step": per_step,
        "relative_cost": relative,
        "reference_images_per_s": reference,
        "forward_images_per_s": forward_ips,
        "steps_per_epoch": spe,
        "runs": rows,
        "trials": trials,
        "tuning_s": sum(t["seconds"] for t in trials),
        "floors_s": floors_s,
        "total_s": floors_s + sum(r["seconds"] for r in rows + trials),
    }
