"""One run's training: its solo-learn cfg, the Trainer and the per-epoch curve callback."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from solo_clamp.compare.data import ComparisonData, KnnProbe, augmentation_sets
from solo_clamp.compare.plan import RunSpec
from solo_clamp.methods import facts_of

# ``projector_scale`` applies to the projector's (and BYOL's predictor's) widths only: e.g.
# ManifoldCLR's block_dim (operator blocks on the backbone's features) and vi_hidden_dim (its
# coefficient networks) are not projector widths.
_SCALED_PREFIXES = ("proj_", "pred_")


def _scaled_kwargs(kwargs: DictConfig, scale: float) -> dict[str, Any]:
    out = OmegaConf.to_container(kwargs, resolve=True)
    for key, value in out.items():
        if key.startswith(_SCALED_PREFIXES) and key.endswith("_dim") and isinstance(value, int):
            out[key] = max(1, round(value * scale))
    return out


def build_solo_cfg(cfg: DictConfig, spec: RunSpec, data: ComparisonData) -> DictConfig:
    """The run's pretraining cfg in solo-learn's layout, before solo-learn's ``parse_cfg``;
    ``spec.setting`` (tuning) replaces the recipe's ``optimizer.lr`` and CLAMP's ``rs``."""
    recipe = cfg.recipes[spec.method]
    if spec.setting is not None:
        recipe = OmegaConf.merge(recipe, {"optimizer": {"lr": spec.setting.lr}})
        if spec.setting.rs is not None:
            recipe.method_kwargs.rs = spec.setting.rs
    trainer = cfg.get("trainer") or {}
    solo = {
        "name": spec.run_id,
        "method": spec.method,
        "backbone": OmegaConf.to_container(cfg.backbone, resolve=True),
        "method_kwargs": _scaled_kwargs(recipe.method_kwargs, cfg.get("projector_scale", 1.0)),
        "data": {
            "dataset": data.solo_dataset,
            "train_path": data.train_path,
            "val_path": None,
            "format": "image_folder",
            "num_workers": int(cfg.data.get("num_workers", 0)),
        },
        "augmentations": [OmegaConf.to_container(a) for a in augmentation_sets(cfg, spec.views)],
        "optimizer": {
            **OmegaConf.to_container(recipe.optimizer, resolve=True),
            "batch_size": spec.batch_size,
        },
        "scheduler": OmegaConf.to_container(cfg.scheduler, resolve=True),
        "checkpoint": {"enabled": False},
        "auto_resume": {"enabled": False},
        "wandb": {"enabled": False},
        "knn_eval": {"enabled": False},
        "performance": {"disable_channel_last": not trainer.get("channels_last", False)},
        "seed": spec.seed,
        "max_epochs": spec.max_epochs,
        "max_steps": spec.steps,
        "accelerator": trainer.get("accelerator", "cpu"),
        "devices": trainer.get("devices", 1),
        "precision": trainer.get("precision", 32),
        "log_every_n_steps": int(trainer.get("log_every_n_steps", 10)),
        "enable_model_summary": False,
        "enable_progress_bar": bool(trainer.get("progress_bar", True)),
        "num_sanity_val_steps": 0,
    }
    if "momentum" in recipe:
        solo["momentum"] = OmegaConf.to_container(recipe.momentum, resolve=True)
    solo_cfg = OmegaConf.create(solo)
    OmegaConf.set_struct(solo_cfg, False)
    return solo_cfg


def lr_and_rs(cfg: DictConfig, spec: RunSpec) -> tuple[float, Optional[float]]:
    """The run's learning rate (per 256 images) and, for CLAMP, its ``rs``."""
    recipe = cfg.recipes[spec.method]
    setting = spec.setting
    lr = setting.lr if setting is not None else float(recipe.optimizer.lr)
    if setting is not None and setting.rs is not None:
        return lr, setting.rs
    return lr, (float(recipe.method_kwargs.rs) if spec.method == "clamp" else None)


def parse(solo_cfg: DictConfig) -> DictConfig:
    """solo-learn's ``parse_cfg`` (per-256 learning rates scaled, crops counted)."""
    from solo.args.pretrain import parse_cfg

    from solo_clamp.training.common import parse_solo_cfg

    return parse_solo_cfg(solo_cfg, parse_cfg)


def _curve_callback(
    probe: Optional[KnnProbe], loss_key: str, every_n_epochs: int, fail_on_divergence: bool
):
    from lightning.pytorch.callbacks import Callback

    class CurveRecorder(Callback):
        """Per-epoch mean of the method's SSL loss and kNN top-1 on the probe set
        (epoch 0: before the first step). Time spent in the probe is kept apart.
        ``fail_on_divergence``: a non-finite training loss raises FloatingPointError (as CLAMP
        does for non-finite embeddings; solo-learn's methods would train on with NaN)."""

        def __init__(self) -> None:
            self.curve: list[dict[str, Any]] = []
            self.probe_s = 0.0
            self._losses: list[float] = []
            self._step_times: list[float] = []
            self._last = None

        def _knn(self, pl_module) -> Optional[float]:
            if probe is None:
                return None
            start = time.perf_counter()
            value = probe(pl_module.backbone)
            self.probe_s += time.perf_counter() - start
            return value

        def on_train_start(self, trainer, pl_module) -> None:
            knn = self._knn(pl_module)
            self.curve.append({"epoch": 0, "step": 0, "loss": None, "knn_top1": knn})
            self._last = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if fail_on_divergence and loss is not None and not torch.isfinite(loss).all():
                raise FloatingPointError(
                    f"non-finite training loss ({float(loss)}) at global step "
                    f"{trainer.global_step}: training diverged."
                )
            now = time.perf_counter()
            self._step_times.append(now - self._last)
            self._last = now
            value = trainer.callback_metrics.get(
                f"{loss_key}_step", trainer.callback_metrics.get(loss_key)
            )
            if value is not None:
                self._losses.append(float(value))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            epoch = trainer.current_epoch + 1
            last = 0 < trainer.max_steps <= trainer.global_step or epoch >= trainer.max_epochs
            want = epoch % every_n_epochs == 0 or last
            loss = statistics.fmean(self._losses) if self._losses else None
            self._losses = []
            self.curve.append(
                {
                    "epoch": epoch,
                    "step": int(trainer.global_step),
                    "loss": loss,
                    "knn_top1": self._knn(pl_module) if want else None,
                }
            )
            self._last = time.perf_counter()

        @property
        def step_times(self) -> list[float]:
            return list(self._step_times)

    return CurveRecorder()


def train_loader(solo_cfg: DictConfig, seed: int, held_out: Sequence[int] = ()):
    """solo-learn's dataset and N-crop pipelines; a seeded shuffle shared by all methods;
    the ``held_out`` images (tuning's validation split) left out."""
    from torch.utils.data import DataLoader, Subset

    from solo_clamp.training.common import solo_pretrain_dataset

    dataset = solo_pretrain_dataset(solo_cfg)
    if held_out:
        excluded = set(held_out)
        dataset = Subset(dataset, [i for i in range(len(dataset)) if i not in excluded])
    workers = solo_cfg.data.num_workers
    return DataLoader(
        dataset,
        batch_size=solo_cfg.optimizer.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed),
    )


@dataclass
class TrainedRun:
    backbone: torch.nn.Module
    solo_cfg: DictConfig
    curve: list[dict[str, Any]]
    train_s: float
    curve_s: float
    step_times: list[float] = field(default_factory=list)


def train(
    cfg: DictConfig,
    spec: RunSpec,
    data: ComparisonData,
    probe: Optional[KnnProbe],
    fail_on_divergence: bool = False,
) -> TrainedRun:
    """Builds the method from ``solo.methods.METHODS`` and fits it; returns its backbone.
    ``fail_on_divergence``: a non-finite loss, or backbone weight or statistic at the end,
    raises FloatingPointError."""
    from lightning.pytorch import seed_everything
    from solo.methods import METHODS
    from solo.utils.misc import make_contiguous

    import solo_clamp
    from solo_clamp.training.common import build_trainer

    solo_clamp.register()
    solo_cfg = parse(build_solo_cfg(cfg, spec, data))
    seed_everything(spec.seed, workers=True)
    model = METHODS[spec.method](solo_cfg)  # fills the method's defaults into solo_cfg
    make_contiguous(model)
    if not solo_cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)
    loader = train_loader(solo_cfg, spec.seed, data.held_out)
    recorder = _curve_callback(
        probe, facts_of(spec.method).loss_key, cfg.curves.every_n_epochs, fail_on_divergence
    )
    trainer = build_trainer(solo_cfg, [], [recorder])
    start = time.perf_counter()
    trainer.fit(model, loader)
    elapsed = time.perf_counter() - start
    if trainer.interrupted:  # Lightning swallows Ctrl-C: the run must not count as finished
        raise KeyboardInterrupt
    if fail_on_divergence and not all(
        t.isfinite().all() for t in model.backbone.state_dict().values() if t.is_floating_point()
    ):
        raise FloatingPointError("non-finite backbone weights after training: training diverged.")
    return TrainedRun(
        model.backbone.cpu(),
        solo_cfg,
        recorder.curve,
        elapsed - recorder.probe_s,
        recorder.probe_s,
        recorder.step_times,
    )
