"""Each run's solo-learn cfg: ``run.yaml`` <- the entry's recipe <- the run's own values."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from solo.args.pretrain import parse_cfg

from solo_clamp.compare.data import ComparisonData, augmentation_sets
from solo_clamp.compare.plan import RunSpec, method_of
from solo_clamp.configs import config_dir
from solo_clamp.methods import facts_of
from solo_clamp.training.common import parse_solo_cfg

RUN_YAML = config_dir("compare") / "run.yaml"
"""The skeleton every run's solo-learn cfg starts from (``scripts/compare/run.yaml``)."""

if not OmegaConf.has_resolver("compare.not"):  # run.yaml: disable_channel_last
    OmegaConf.register_new_resolver("compare.not", lambda value: not value)


def _scaled_kwargs(method: str, kwargs: DictConfig, scale: float) -> dict[str, Any]:
    """``kwargs`` with the projector's (and BYOL's predictor's) widths times ``projector_scale``:
    the fields ``method``'s facts name in ``projector_width_fields`` (e.g. not ManifoldCLR's
    block_dim or vi_hidden_dim)."""
    widths = set(facts_of(method).projector_width_fields)
    out = OmegaConf.to_container(kwargs, resolve=True)
    for key, value in out.items():
        if key in widths and isinstance(value, int):
            out[key] = max(1, round(value * scale))
    return out


def solo_cfg(cfg: DictConfig, spec: RunSpec, data: ComparisonData) -> DictConfig:
    """The run's pretraining cfg in solo-learn's layout, before solo-learn's ``parse_cfg``:
    ``run.yaml`` (its ``${study.*}`` fields read from the comparison config) <- the entry's
    recipe (``recipes.<entry>`` without ``views`` and ``method``) <- the run's own values:
    name, method, seed, data, views, batch size, steps, and ``spec.setting``'s lr and
    ``method_kwargs``."""
    root = OmegaConf.create({"study": cfg, "run": OmegaConf.load(RUN_YAML)})
    OmegaConf.resolve(root)
    recipe = cfg.recipes[spec.method]
    recipe = OmegaConf.masked_copy(
        recipe, [key for key in recipe if key not in ("views", "method")]
    )
    setting = spec.setting
    kwargs = OmegaConf.merge(recipe.method_kwargs, setting.tuned if setting else {})
    own = {
        "name": spec.run_id,
        "method": method_of(cfg, spec.method),
        "seed": spec.seed,
        "data": {"dataset": data.solo_dataset, "train_path": data.train_path},
        "augmentations": [
            OmegaConf.to_container(a) for a in augmentation_sets(cfg, spec.views, spec.variant)
        ],
        "method_kwargs": _scaled_kwargs(
            method_of(cfg, spec.method), kwargs, cfg.get("projector_scale", 1.0)
        ),
        "optimizer": {"batch_size": spec.batch_size, **({"lr": setting.lr} if setting else {})},
        "max_epochs": spec.max_epochs,
        "max_steps": spec.steps,
    }
    composed = OmegaConf.merge(root.run, recipe, own)
    OmegaConf.set_struct(composed, False)
    # One warm-up policy for every method: the same fraction of every run, i.e. the study's
    # scheduler.warmup_epochs of its `epochs`-epoch budget, scaled to this run's length.
    warmup = float(cfg.scheduler.get("warmup_epochs") or 0)
    composed.scheduler.warmup_epochs = float(f"{warmup * spec.epochs / cfg.epochs:.6g}")
    return composed


def parse(solo: DictConfig) -> DictConfig:
    """solo-learn's ``parse_cfg`` (per-256 learning rates scaled, crops counted)."""
    return parse_solo_cfg(solo, parse_cfg)
