"""One run's training: solo-learn's method and data pipeline, the Lightning Trainer, and its
curves: recorded per epoch (loss, kNN on a probe set held in memory) and drawn for the study."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import Callback
from matplotlib.figure import Figure
from omegaconf import DictConfig
from solo.methods import METHODS
from solo.utils.misc import make_contiguous
from torch.utils.data import DataLoader, Subset

import solo_clamp
from solo_clamp.compare.data import (
    ComparisonData,
    bank_indices,
    eval_split,
    knn_settings,
    stratified_indices,
)
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.run_cfg import parse, solo_cfg
from solo_clamp.evaluation import knn_accuracy
from solo_clamp.methods import facts_of
from solo_clamp.training.common import build_trainer, solo_pretrain_dataset


def _load_tensors(
    dataset, indices: list[int], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False)
    images, labels = zip(*loader)
    return torch.cat(images), torch.cat(labels)


@dataclass
class KnnProbe:
    """A small held-out kNN set held in memory, scored at epoch ends (training curves)."""

    bank: torch.Tensor
    bank_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    k: int = 20
    temperature: float = 0.07
    distance: str = "cosine"
    batch_size: int = 256

    @torch.no_grad()
    def features(self, backbone: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        weights = next(backbone.parameters(), None)  # raw pixels (Flatten) have none
        device = weights.device if weights is not None else torch.device("cpu")
        was_training = backbone.training
        backbone.eval()
        feats = [
            backbone(images[i : i + self.batch_size].to(device)).float().cpu()
            for i in range(0, len(images), self.batch_size)
        ]
        backbone.train(was_training)
        return torch.cat(feats)

    def __call__(self, backbone: torch.nn.Module) -> float:
        top1, _ = knn_accuracy(
            self.features(backbone, self.bank),
            self.bank_labels,
            self.features(backbone, self.test),
            self.test_labels,
            k=self.k,
            temperature=self.temperature,
            distance=self.distance,
        )
        return top1


def build_probe(cfg: DictConfig, data: ComparisonData, validation: bool = False) -> KnnProbe:
    """The training curves' kNN set: ``curves.per_class`` training images per class as the bank
    and as many test images as queries; ``validation``: the tuning's validation score instead
    (bank = the training images left after the hold-out, queries = the held-out images), so a
    trial's curve never reads the test split."""
    train_set = eval_split(cfg, data, "train")
    batch_size = cfg.evaluation.batch_size
    if validation:
        bank = bank_indices(cfg, data, train_set.targets)
        tensors = [
            *_load_tensors(train_set, bank, batch_size),
            *_load_tensors(train_set, list(data.held_out), batch_size),
        ]
    else:
        per_class = cfg.curves.get("per_class")
        test_set = eval_split(cfg, data, "val")
        bank = stratified_indices(train_set.targets, per_class, data.held_out)
        tensors = [
            *_load_tensors(train_set, bank, batch_size),
            *_load_tensors(test_set, stratified_indices(test_set.targets, per_class), batch_size),
        ]
    return KnnProbe(*tensors, **knn_settings(cfg), batch_size=batch_size)


class CurveRecorder(Callback):
    """Per-epoch mean of the method's SSL loss (``loss_key``) and kNN top-1 on the probe set
    (epoch 0: before the first step; then every ``every_n_epochs`` and at the end). Time spent
    in the probe is kept apart. ``fail_on_divergence``: a non-finite training loss raises
    FloatingPointError (as CLAMP does for non-finite embeddings; solo-learn's methods would
    train on with NaN)."""

    def __init__(
        self,
        probe: Optional[KnnProbe],
        loss_key: str,
        every_n_epochs: int,
        fail_on_divergence: bool,
    ) -> None:
        self.probe, self.loss_key = probe, loss_key
        self.every_n_epochs, self.fail_on_divergence = every_n_epochs, fail_on_divergence
        self.curve: list[dict[str, Any]] = []
        self.probe_s = 0.0
        self._losses: list[float] = []

    def _knn(self, pl_module) -> Optional[float]:
        if self.probe is None:
            return None
        start = time.perf_counter()
        value = self.probe(pl_module.backbone)
        self.probe_s += time.perf_counter() - start
        return value

    def on_train_start(self, trainer, pl_module) -> None:
        knn = self._knn(pl_module)
        self.curve.append({"epoch": 0, "step": 0, "loss": None, "knn_top1": knn})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if self.fail_on_divergence and loss is not None and not torch.isfinite(loss).all():
            raise FloatingPointError(
                f"non-finite training loss ({float(loss)}) at global step "
                f"{trainer.global_step}: training diverged."
            )
        value = trainer.callback_metrics.get(
            f"{self.loss_key}_step", trainer.callback_metrics.get(self.loss_key)
        )
        if value is not None:
            self._losses.append(float(value))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        last = 0 < trainer.max_steps <= trainer.global_step or epoch >= trainer.max_epochs
        want = epoch % self.every_n_epochs == 0 or last
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


def train_loader(solo: DictConfig, seed: int, held_out: Sequence[int] = ()):
    """solo-learn's dataset and N-crop pipelines; a seeded shuffle shared by all methods;
    the ``held_out`` images (tuning's validation split) left out."""
    dataset = solo_pretrain_dataset(solo)
    if held_out:
        excluded = set(held_out)
        dataset = Subset(dataset, [i for i in range(len(dataset)) if i not in excluded])
    workers = solo.data.num_workers
    return DataLoader(
        dataset,
        batch_size=solo.optimizer.batch_size,
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
    state: dict[str, torch.Tensor]  # the whole model's (e.g. ManifoldCLR's manifold.*)
    curve: list[dict[str, Any]]
    train_s: float
    curve_s: float
    projector: Optional[torch.nn.Module] = None  # the method's (every method here has one)


def train(
    cfg: DictConfig,
    spec: RunSpec,
    data: ComparisonData,
    probe: Optional[KnnProbe],
    fail_on_divergence: bool = False,
) -> TrainedRun:
    """Builds the method from ``solo.methods.METHODS`` and fits it; returns its backbone and
    the whole model's state (on the CPU). ``fail_on_divergence``: a non-finite loss, or
    backbone weight or statistic at the end, raises FloatingPointError."""
    solo_clamp.register()
    solo = parse(solo_cfg(cfg, spec, data))
    seed_everything(spec.seed, workers=True)
    model = METHODS[solo.method](solo)  # fills the method's defaults into solo
    make_contiguous(model)
    if not solo.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)
    loader = train_loader(solo, spec.seed, data.held_out)
    recorder = CurveRecorder(
        probe, facts_of(solo.method).loss_key, cfg.curves.every_n_epochs, fail_on_divergence
    )
    trainer = build_trainer(solo, [], [recorder])
    start = time.perf_counter()
    trainer.fit(model, loader)
    elapsed = time.perf_counter() - start
    if trainer.interrupted:  # Lightning swallows Ctrl-C: the run must not count as finished
        raise KeyboardInterrupt
    if fail_on_divergence and not all(
        t.isfinite().all() for t in model.backbone.state_dict().values() if t.is_floating_point()
    ):
        raise FloatingPointError("non-finite backbone weights after training: training diverged.")
    model = model.cpu()
    return TrainedRun(
        model.backbone,
        solo,
        {key: value.detach() for key, value in model.state_dict().items()},
        recorder.curve,
        elapsed - recorder.probe_s,
        recorder.probe_s,
        getattr(model, "projector", None),
    )


def plot_curves(
    runs: list[dict[str, Any]], floors: dict[str, Any], out: Path, loss_keys: dict[str, str]
) -> list[Path]:
    """``curves_loss.png`` (SSL loss per epoch, one panel per method; ``loss_keys``: the
    logged loss of each) and ``curves_knn.png`` (probe kNN top-1 vs epochs and vs views seen;
    floors as horizontal lines, on the probe set where they were scored there)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:  # a run of a strength variant (compare.strength) is its own line
        variant = f", {run['variant']}" if run.get("variant") else ""
        groups.setdefault(f"{run['method']} ({run['budget']}{variant})", []).append(run)
    methods = list(dict.fromkeys(r["method"] for r in runs))
    loss_fig = Figure(figsize=(4 * max(len(methods), 1), 3.2))
    loss_axes = loss_fig.subplots(1, max(len(methods), 1), squeeze=False)
    knn_fig = Figure(figsize=(11, 4))
    knn_axes = knn_fig.subplots(1, 2)
    for colour, (name, members) in enumerate(groups.items()):
        style = {"marker": "o", "color": f"C{colour}", "alpha": 0.8}
        ax = loss_axes[0][methods.index(members[0]["method"])]
        for i, run in enumerate(members):
            label = name if i == 0 else None
            points = [(p["epoch"], p["loss"]) for p in run["curve"] if p["loss"] is not None]
            if points:
                ax.plot(*zip(*points), label=label, **style)
            points = [p for p in run["curve"] if p["knn_top1"] is not None]
            accs = [p["knn_top1"] for p in points]
            epochs = [p["step"] / run["steps_per_epoch"] for p in points]
            views = [p["step"] * run["batch_size"] * run["views"] / 1e6 for p in points]
            knn_axes[0].plot(epochs, accs, label=label, **style)
            knn_axes[1].plot(views, accs, label=label, **style)
    for ax, method in zip(loss_axes[0], methods):
        ax.set(title=f"{method}: {loss_keys.get(method, 'loss')}", xlabel="epoch", ylabel="loss")
        ax.legend(fontsize=7)
    for floor, style in (("raw_pixels", ":"), ("untrained", "--")):
        # the curves are scored on the probe set: so is the floor, where it was (the mean
        # over the seeds' untrained backbones)
        members = [r for r in floors.values() if r["method"] == floor]
        values, where = [r.get("probe_knn_top1") for r in members], "probe set"
        if None in values:
            values, where = [r["knn_top1"] for r in members], "eval set"
        if values:
            value = statistics.fmean(values)
            for ax in knn_axes:
                ax.axhline(value, color="grey", linestyle=style, label=f"{floor} ({where})")
    knn_axes[0].set(
        xlabel="epoch", ylabel="kNN top-1 (%) on the probe set", title="kNN top-1 vs epochs"
    )
    knn_axes[1].set(xlabel="views seen (millions)", title="kNN top-1 vs views seen")
    knn_axes[0].legend(fontsize=7)
    paths = [out / "curves_loss.png", out / "curves_knn.png"]
    for fig, path in zip((loss_fig, knn_fig), paths):
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    return paths
