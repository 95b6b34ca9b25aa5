"""CLAMP beside solo-learn's SimCLR, BYOL and VICReg: same data, backbone, views and budget.

One comparison is a YAML file (``scripts/compare/*.yaml``) that names the dataset, the
methods, their recipes (each method's standard hyper-parameters), the shared augmentation
sets, the budget(s), the epochs and the seeds. Every run is one solo-learn method class from
``solo.methods.METHODS``, built from a cfg in solo-learn's parsed layout and trained with a
Lightning ``Trainer``; then its frozen backbone is scored with solo-learn's weighted kNN and a
linear probe (``solo_clamp.evaluation``). Two floors are measured the same way: raw pixels and
the untrained backbone.

Budgets (``B`` images per step for every method, ``E`` = ``epochs``, ``S`` = steps per epoch):

* ``equal_epochs``: every method trains ``E·S`` optimiser steps (the literature's protocol);
  a method with ``V`` views sees ``V/2`` times the views of a 2-view method.
* ``equal_compute``: every method pushes the same number of views through its online backbone,
  ``2·E·S·B``: a method with ``V`` views trains ``round(2·E·S/V)`` steps (``E/2`` epochs for
  ``V = 4``). For 2-view methods both budgets are one and the same run, trained once.
  BYOL's momentum encoder adds forward passes that neither budget counts.

Output directory: ``runs/<run>/{config.yaml, backbone.pt, result.json}``, ``results.csv``
(one row per run), ``results.md`` (mean ± std over seeds, floors, verdicts),
``curves_loss.png``, ``curves_knn.png`` and ``compare_config.yaml``. ``result.json`` is
written last and atomically: a run that has one (with the same settings) is skipped on
restart; any other run starts over.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "scripts" / "compare"
DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100", "imagenet100", "image_folder")
BUDGETS = ("equal_epochs", "equal_compute")
FLOORS = ("raw_pixels", "untrained")
# The self-supervised loss each method logs (its training_step adds the online classifier's).
LOSS_KEYS = {
    "clamp": "train_clamp_loss",
    "simclr": "train_nce_loss",
    "byol": "train_neg_cos_sim",
    "vicreg": "train_vicreg_loss",
}
_IDX_DATASETS = ("fashion_mnist", "mnist")
_TORCHVISION_DATASETS = ("cifar10", "cifar100")
# Every field a comparison config may leave out (a config must give methods, recipes,
# augmentations, epochs and batch_size; see scripts/compare/fashion_mnist.yaml).
DEFAULTS: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "data": {"root": "datasets", "source": None, "train_path": None, "val_path": None,
             "train_per_class": None, "val_per_class": None, "seed": 0, "num_workers": 0},
    "budgets": list(BUDGETS),
    "seeds": [0],
    "backbone": {"name": "resnet18", "kwargs": {}},
    "projector_scale": 1.0,
    "scheduler": {"name": "warmup_cosine", "warmup_epochs": 0},
    "trainer": {"accelerator": "cpu", "devices": 1, "precision": 32, "channels_last": False,
                "progress_bar": True, "log_every_n_steps": 10, "threads": None},
    "curves": {"per_class": 50, "every_n_epochs": 1},
    "evaluation": {"k": 20, "temperature": 0.07, "distance": "cosine", "batch_size": 256,
                   "device": "auto", "train_per_class": None, "val_per_class": None,
                   "linear": {"epochs": 100, "lr": 0.01, "weight_decay": 1e-5}},
    "floors": {"seed": 0, "raw_pixel_size": None},
    "quick": False,
}
RESULT_COLUMNS = (
    "run_id", "method", "budget", "seed", "views", "epochs", "steps", "batch_size",
    "images_seen", "views_seen", "train_s", "curve_s", "eval_s", "knn_top1", "knn_top5",
    "linear_top1",
)


# ----------------------------------------------------------------------------- configuration


def default_config_path(dataset: str = "fashion_mnist") -> Path:
    """The shipped comparison config of ``dataset`` (``scripts/compare/<dataset>.yaml``)."""
    path = CONFIG_DIR / f"{dataset}.yaml"
    if not path.exists():
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ValueError(f"dataset {dataset!r} has no shipped config; shipped: {shipped}.")
    return path


def _read_yaml(path: Path, depth: int = 0) -> DictConfig:
    """Reads one config; ``base: other.yaml`` (relative to it) is merged underneath."""
    if not path.is_file():
        raise ValueError(f"config {str(path)!r} does not exist or is not a file.")
    loaded = OmegaConf.load(path)
    if not isinstance(loaded, DictConfig):
        raise ValueError(f"config {str(path)!r} must be a YAML mapping.")
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    if depth >= 4:
        raise ValueError(f"config {str(path)!r}: base chains deeper than 4 files (a cycle?).")
    return OmegaConf.merge(_read_yaml(path.parent / str(base), depth + 1), loaded)


def load_config(path: Optional[os.PathLike] = None, dataset: Optional[str] = None) -> DictConfig:
    """Loads a comparison config over :data:`DEFAULTS`: ``path``, else the shipped config of
    ``dataset``; with both, ``dataset`` replaces the file's ``dataset``."""
    path = Path(path) if path is not None else default_config_path(dataset or "fashion_mnist")
    cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), _read_yaml(path))
    OmegaConf.set_struct(cfg, False)
    if dataset is not None:
        cfg.dataset = dataset
    return cfg


def apply_quick(cfg: DictConfig) -> DictConfig:
    """The tiny smoke setting: a few images per class (MNIST / Fashion-MNIST; elsewhere only
    the evaluation sets shrink), 2 epochs, small batches, one seed."""
    if cfg.dataset in _IDX_DATASETS:
        cfg.data.train_per_class, cfg.data.val_per_class = 16, 8
    else:
        cfg.evaluation.train_per_class, cfg.evaluation.val_per_class = 16, 8
    cfg.curves.per_class = 4
    cfg.curves.every_n_epochs = 1
    cfg.epochs = 2
    cfg.batch_size = 16
    cfg.seeds = [int(cfg.seeds[0])]
    cfg.evaluation.linear.epochs = 20
    cfg.quick = True
    return cfg


def _positive_int(cfg: DictConfig, key: str, allow_none: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        none = " or null" if allow_none else ""
        raise ValueError(f"{key} must be a positive integer{none}, got {value!r}.")


def validate_config(cfg: DictConfig) -> None:
    """Checks a comparison config; raises ValueError naming the field and the allowed values."""
    if cfg.get("dataset") not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {cfg.get('dataset')!r}.")
    recipes = cfg.get("recipes") or {}
    methods = list(cfg.get("methods") or [])
    if not methods:
        raise ValueError(f"methods must list at least one of {sorted(recipes)}.")
    for method in methods:
        if method not in recipes:
            raise ValueError(
                f"methods: {method!r} has no recipe in this config; allowed: {sorted(recipes)}."
            )
        if method not in LOSS_KEYS:
            raise ValueError(f"methods: {method!r} is not supported; allowed: {sorted(LOSS_KEYS)}.")
    budgets = list(cfg.get("budgets") or [])
    if not budgets or any(b not in BUDGETS for b in budgets):
        raise ValueError(f"budgets must be a non-empty subset of {list(BUDGETS)}, got {budgets}.")
    seeds = list(cfg.get("seeds") or [])
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {seeds}.")
    for key in ("epochs", "batch_size", "curves.every_n_epochs", "evaluation.k",
                "evaluation.batch_size", "evaluation.linear.epochs"):
        _positive_int(cfg, key)
    for key in ("data.train_per_class", "data.val_per_class", "curves.per_class",
                "trainer.threads"):
        _positive_int(cfg, key, allow_none=True)
    scale = cfg.get("projector_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ValueError(f"projector_scale must be in (0, 1], got {scale!r}.")
    augmentations = cfg.get("augmentations")
    if not augmentations:
        raise ValueError("augmentations must list at least one transform set.")
    crop = augmentations[0].get("crop_size")
    if any(aug.get("crop_size") != crop for aug in augmentations):
        raise ValueError("augmentations[*].crop_size must be equal: all views are large crops.")
    for method in methods:
        views = recipes[method].get("views", 2)
        if isinstance(views, bool) or not isinstance(views, int) or views < 2:
            raise ValueError(f"recipes.{method}.views must be an integer >= 2, got {views!r}.")
        if views % len(augmentations):
            raise ValueError(
                f"recipes.{method}.views ({views}) must be a multiple of the number of "
                f"augmentation sets ({len(augmentations)}): each set gives views/sets crops."
            )
        if method in ("vicreg", "byol", "simclr") and views != 2:
            raise ValueError(
                f"recipes.{method}.views must be 2 (solo-learn's recipe), got {views}."
            )
    if cfg.evaluation.get("distance", "cosine") not in ("cosine", "euclidean"):
        raise ValueError(
            f"evaluation.distance must be 'cosine' or 'euclidean', got {cfg.evaluation.distance!r}."
        )
    if cfg.dataset not in _IDX_DATASETS:
        for key in ("data.train_per_class", "data.val_per_class"):
            if OmegaConf.select(cfg, key) is not None:
                raise ValueError(
                    f"{key} applies only to the datasets {list(_IDX_DATASETS)} (prepared "
                    f"subsets), not to {cfg.dataset!r}: use evaluation.train_per_class / "
                    "val_per_class to subsample the evaluation sets."
                )
    if cfg.dataset in ("imagenet100", "image_folder"):
        for key in ("data.train_path", "data.val_path"):
            if not OmegaConf.select(cfg, key):
                raise ValueError(f"{key} is required for dataset {cfg.dataset!r} (an ImageFolder).")


@contextlib.contextmanager
def torch_threads(cfg: DictConfig) -> Iterator[None]:
    """``trainer.threads``: torch's intra-op threads while the comparison runs (null: torch's
    default), restored afterwards. On a CPU shared with other jobs, 1 thread (plus one
    data-loading worker) avoids the OpenMP stalls of a parallel region waiting for a
    descheduled thread."""
    threads = OmegaConf.select(cfg, "trainer.threads")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ComparisonData:
    """Where the images are and how solo-learn names the dataset."""

    name: str
    solo_dataset: str  # solo-learn's data.dataset: custom, cifar10, cifar100, imagenet100
    train_path: str
    val_path: str

    def dataset(self, split: str, transform: Callable):
        """The ``train`` or ``val`` split with ``transform`` (labels as ``.targets``)."""
        if self.solo_dataset in _TORCHVISION_DATASETS:
            import torchvision.datasets

            dataset_class = vars(torchvision.datasets)[self.solo_dataset.upper()]
            return dataset_class(self.train_path, train=split == "train", download=True,
                                 transform=transform)
        from torchvision.datasets import ImageFolder

        return ImageFolder(self.train_path if split == "train" else self.val_path, transform)


def _idx_source(name: str, source: Optional[str]) -> Path:
    """The directory with the idx files of MNIST / Fashion-MNIST, never downloading."""
    from solo_clamp.data.prepare import DATASETS as IDX_SPECS
    from solo_clamp.data.prepare import locate_source

    spec = IDX_SPECS[name]
    if source:
        candidates = [Path(source)]
    else:
        env = os.environ.get(spec.env_var)
        candidates = [Path(env)] if env else []
        candidates += list(spec.default_dirs)
    for directory in candidates:
        try:
            return locate_source(name, source=directory)
        except FileNotFoundError:
            continue
    looked = ", ".join(str(c) for c in candidates)
    if name == "fashion_mnist":
        raise ValueError(
            f"the Fashion-MNIST idx files were not found (looked in {looked}): install them "
            "with `apt-get install dataset-fashion-mnist`, or set $SOLO_CLAMP_FASHION_MNIST_DIR "
            "or data.source to a directory holding them."
        )
    raise ValueError(
        f"the MNIST idx files were not found (looked in {looked}): set $SOLO_CLAMP_MNIST_DIR "
        "or data.source to a directory holding them."
    )


def prepare_data(cfg: DictConfig) -> ComparisonData:
    """Prepares (once) or locates the comparison's images."""
    data = cfg.data
    if cfg.dataset in _IDX_DATASETS:
        from solo_clamp.data import prepare_image_folder

        prepared = prepare_image_folder(
            cfg.dataset, root=data.root, source=_idx_source(cfg.dataset, data.source),
            train_per_class=data.train_per_class, val_per_class=data.val_per_class,
            seed=data.seed,
        )
        return ComparisonData(cfg.dataset, "custom", str(prepared.train), str(prepared.val))
    if cfg.dataset in _TORCHVISION_DATASETS:
        root = str(data.get("root") or "datasets")
        return ComparisonData(cfg.dataset, cfg.dataset, root, root)
    for key in ("train_path", "val_path"):
        if not Path(str(data[key])).is_dir():
            raise ValueError(f"data.{key}={str(data[key])!r} is not a directory.")
    solo_name = "imagenet100" if cfg.dataset == "imagenet100" else "custom"
    return ComparisonData(cfg.dataset, solo_name, str(data.train_path), str(data.val_path))


def stratified_indices(targets: Sequence[int], per_class: Optional[int]) -> list[int]:
    """The first ``per_class`` indices of every class (all indices when None)."""
    if per_class is None:
        return list(range(len(targets)))
    seen: dict[int, int] = {}
    keep = []
    for index, target in enumerate(targets):
        target = int(target)
        if seen.get(target, 0) < per_class:
            seen[target] = seen.get(target, 0) + 1
            keep.append(index)
    return keep


def normalisation(cfg: DictConfig, data: ComparisonData) -> tuple[list[float], list[float]]:
    """Mean and std of the training views (read from solo-learn's own pipeline)."""
    from solo.data.pretrain_dataloader import build_transform_pipeline

    normalize = build_transform_pipeline(data.solo_dataset, augmentation_sets(cfg, 2)[0])
    last = normalize.transforms[-1]
    return [float(v) for v in last.mean], [float(v) for v in last.std]


def augmentation_sets(cfg: DictConfig, views: int) -> list[DictConfig]:
    """The shared transform sets with ``views / sets`` crops each, mean/std filled in."""
    sets = []
    for aug in cfg.augmentations:
        aug = OmegaConf.create(OmegaConf.to_container(aug, resolve=True))
        aug.num_crops = views // len(cfg.augmentations)
        if cfg.dataset in _IDX_DATASETS and "mean" not in aug:
            from solo_clamp.data.prepare import DATASETS as IDX_SPECS

            spec = IDX_SPECS[cfg.dataset]
            aug.mean, aug.std = [spec.mean] * 3, [spec.std] * 3
        sets.append(aug)
    return sets


def _load_tensors(
    dataset, indices: list[int], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    from torch.utils.data import DataLoader, Subset

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
        device = next(backbone.parameters()).device
        was_training = backbone.training
        backbone.eval()
        feats = [backbone(images[i : i + self.batch_size].to(device)).float().cpu()
                 for i in range(0, len(images), self.batch_size)]
        backbone.train(was_training)
        return torch.cat(feats)

    def __call__(self, backbone: torch.nn.Module) -> float:
        from solo_clamp.evaluation import knn_accuracy

        top1, _ = knn_accuracy(
            self.features(backbone, self.bank), self.bank_labels,
            self.features(backbone, self.test), self.test_labels,
            k=self.k, temperature=self.temperature, distance=self.distance,
        )
        return top1


def build_probe(cfg: DictConfig, data: ComparisonData) -> KnnProbe:
    from solo_clamp.evaluation import eval_transform

    mean, std = normalisation(cfg, data)
    transform = eval_transform(cfg.augmentations[0].crop_size, mean, std)
    per_class = cfg.curves.get("per_class")
    tensors = []
    for split in ("train", "val"):
        dataset = data.dataset(split, transform)
        tensors += _load_tensors(dataset, stratified_indices(dataset.targets, per_class),
                                 cfg.evaluation.batch_size)
    ev = cfg.evaluation
    return KnnProbe(*tensors, k=ev.k, temperature=ev.temperature,
                    distance=ev.get("distance", "cosine"), batch_size=ev.batch_size)


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class RunSpec:
    """One training run of the plan."""

    method: str
    budget: str  # the budget that fixed its steps (2-view methods: always equal_epochs)
    seed: int
    views: int
    steps: int
    steps_per_epoch: int
    batch_size: int

    @property
    def run_id(self) -> str:
        return f"{self.method}-{self.budget}-s{self.seed}"

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def max_epochs(self) -> int:
        return math.ceil(self.steps / self.steps_per_epoch)


def run_budget(views: int, budget: str) -> str:
    """The budget whose run serves ``budget`` for a method with ``views`` views."""
    return "equal_epochs" if views == 2 else budget


def plan_runs(cfg: DictConfig, steps_per_epoch: int) -> list[RunSpec]:
    """Seed-major list of distinct runs (an interrupted plan keeps whole seeds first)."""
    runs: dict[str, RunSpec] = {}
    for seed in cfg.seeds:
        for method in cfg.methods:
            views = int(cfg.recipes[method].get("views", 2))
            for budget in cfg.budgets:
                budget = run_budget(views, budget)
                total = cfg.epochs * steps_per_epoch
                steps = total if budget == "equal_epochs" else max(1, round(total * 2 / views))
                spec = RunSpec(method, budget, int(seed), views, int(steps), steps_per_epoch,
                               int(cfg.batch_size))
                runs.setdefault(spec.run_id, spec)
    return list(runs.values())


def steps_per_epoch(cfg: DictConfig, data: ComparisonData) -> int:
    """Optimiser steps per epoch (solo-learn drops the last incomplete batch)."""
    size = len(data.dataset("train", None))
    steps = size // cfg.batch_size
    if steps < 1:
        raise ValueError(
            f"batch_size ({cfg.batch_size}) must not exceed the {size} training images "
            "(raise data.train_per_class or lower batch_size)."
        )
    return steps


# ----------------------------------------------------------------------------- solo-learn cfg


def _scaled_kwargs(kwargs: DictConfig, scale: float) -> dict[str, Any]:
    out = OmegaConf.to_container(kwargs, resolve=True)
    for key, value in out.items():
        if key.endswith("_dim") and isinstance(value, int):
            out[key] = max(1, round(value * scale))
    return out


def build_solo_cfg(cfg: DictConfig, spec: RunSpec, data: ComparisonData) -> DictConfig:
    """The run's pretraining cfg in solo-learn's layout, before solo-learn's ``parse_cfg``."""
    recipe = cfg.recipes[spec.method]
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


def parse(solo_cfg: DictConfig) -> DictConfig:
    """solo-learn's ``parse_cfg`` (per-256 learning rates scaled, crops counted)."""
    from solo.args.pretrain import parse_cfg

    from solo_clamp.training.common import parse_solo_cfg

    return parse_solo_cfg(solo_cfg, parse_cfg)


# ----------------------------------------------------------------------------- training


def _curve_callback(probe: Optional[KnnProbe], loss_key: str, every_n_epochs: int):
    from lightning.pytorch.callbacks import Callback

    class CurveRecorder(Callback):
        """Per-epoch mean of the method's SSL loss and kNN top-1 on the probe set
        (epoch 0: before the first step). Time spent in the probe is kept apart."""

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
            now = time.perf_counter()
            self._step_times.append(now - self._last)
            self._last = now
            value = trainer.callback_metrics.get(f"{loss_key}_step",
                                                 trainer.callback_metrics.get(loss_key))
            if value is not None:
                self._losses.append(float(value))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            epoch = trainer.current_epoch + 1
            last = (0 < trainer.max_steps <= trainer.global_step
                    or epoch >= trainer.max_epochs)
            want = epoch % every_n_epochs == 0 or last
            loss = statistics.fmean(self._losses) if self._losses else None
            self._losses = []
            self.curve.append({
                "epoch": epoch,
                "step": int(trainer.global_step),
                "loss": loss,
                "knn_top1": self._knn(pl_module) if want else None,
            })
            self._last = time.perf_counter()

        @property
        def step_times(self) -> list[float]:
            return list(self._step_times)

    return CurveRecorder()


def train_loader(solo_cfg: DictConfig, seed: int):
    """solo-learn's dataset and N-crop pipelines; a seeded shuffle shared by all methods."""
    from solo.data.pretrain_dataloader import (
        FullTransformPipeline,
        NCropAugmentation,
        build_transform_pipeline,
        prepare_datasets,
    )
    from torch.utils.data import DataLoader

    pipelines = [
        NCropAugmentation(build_transform_pipeline(solo_cfg.data.dataset, aug), aug.num_crops)
        for aug in solo_cfg.augmentations
    ]
    dataset = prepare_datasets(
        solo_cfg.data.dataset, FullTransformPipeline(pipelines),
        train_data_path=solo_cfg.data.train_path, data_format=solo_cfg.data.format,
        no_labels=solo_cfg.data.no_labels, data_fraction=solo_cfg.data.fraction,
    )
    workers = solo_cfg.data.num_workers
    return DataLoader(
        dataset, batch_size=solo_cfg.optimizer.batch_size, shuffle=True, drop_last=True,
        num_workers=workers, persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(seed),
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
    cfg: DictConfig, spec: RunSpec, data: ComparisonData, probe: Optional[KnnProbe]
) -> TrainedRun:
    """Builds the method from ``solo.methods.METHODS`` and fits it; returns its backbone."""
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
    loader = train_loader(solo_cfg, spec.seed)
    recorder = _curve_callback(probe, LOSS_KEYS[spec.method], cfg.curves.every_n_epochs)
    trainer = build_trainer(solo_cfg, [], [recorder])
    start = time.perf_counter()
    trainer.fit(model, loader)
    elapsed = time.perf_counter() - start
    if trainer.interrupted:  # Lightning swallows Ctrl-C: the run must not count as finished
        raise KeyboardInterrupt
    return TrainedRun(model.backbone.cpu(), solo_cfg, recorder.curve,
                      elapsed - recorder.probe_s, recorder.probe_s, recorder.step_times)


# ----------------------------------------------------------------------------- evaluation


def evaluation_device(cfg: DictConfig) -> torch.device:
    name = cfg.evaluation.get("device", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate_features(
    cfg: DictConfig, data: ComparisonData, extractor: torch.nn.Module, seed: int,
    crop_size: Optional[int] = None,
) -> dict[str, float]:
    """kNN top-1/top-5 and linear-probe top-1 of ``extractor``'s features."""
    from torch.utils.data import DataLoader, Subset

    from solo_clamp.evaluation import (
        eval_transform,
        extract_features,
        knn_accuracy,
        linear_probe_accuracy,
    )

    ev = cfg.evaluation
    mean, std = normalisation(cfg, data)
    transform = eval_transform(crop_size or cfg.augmentations[0].crop_size, mean, std)
    device = evaluation_device(cfg)
    extractor = extractor.to(device)
    feats = []
    for split, per_class in (("train", ev.train_per_class), ("val", ev.val_per_class)):
        dataset = data.dataset(split, transform)
        subset = Subset(dataset, stratified_indices(dataset.targets, per_class))
        loader = DataLoader(subset, batch_size=ev.batch_size, shuffle=False,
                            num_workers=int(cfg.data.get("num_workers", 0)))
        feats.append(extract_features(extractor, loader, desc=f"{split} features", device=device))
    (train_x, train_y), (test_x, test_y) = feats
    top1, top5 = knn_accuracy(train_x, train_y, test_x, test_y, k=ev.k,
                              temperature=ev.temperature, distance=ev.get("distance", "cosine"))
    linear = linear_probe_accuracy(train_x, train_y, test_x, test_y, epochs=ev.linear.epochs,
                                   lr=ev.linear.lr, weight_decay=ev.linear.weight_decay, seed=seed)
    return {"knn_top1": top1, "knn_top5": top5, "linear_top1": linear,
            "train_images": len(train_y), "test_images": len(test_y)}


def untrained_backbone(cfg: DictConfig, data: ComparisonData, seed: int) -> torch.nn.Module:
    """The backbone every run of ``seed`` starts from (solo-learn builds it first)."""
    from lightning.pytorch import seed_everything
    from solo.methods import METHODS

    import solo_clamp

    solo_clamp.register()
    method = cfg.methods[0]
    spec = RunSpec(method, "equal_epochs", seed, int(cfg.recipes[method].get("views", 2)), 1, 1,
                   int(cfg.batch_size))
    seed_everything(seed)
    return METHODS[method](parse(build_solo_cfg(cfg, spec, data))).backbone


# ----------------------------------------------------------------------------- persistence


def atomic_write_text(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fingerprint(*parts: Any) -> str:
    """A short hash of the settings that determine a run's result."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Settings that change how a run is displayed or how fast it goes, not its result.
_COSMETIC = ("num_workers", "enable_progress_bar", "log_every_n_steps", "enable_model_summary",
             "device")


def _container(node: Any) -> Any:
    """``node`` as plain data, without the :data:`_COSMETIC` keys (at any depth)."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        return {k: _container(v) for k, v in node.items() if k not in _COSMETIC}
    if isinstance(node, list):
        return [_container(v) for v in node]
    return node


def _eval_settings(cfg: DictConfig) -> dict[str, Any]:
    evaluation = _container(cfg.evaluation)
    evaluation.pop("batch_size", None)
    return {"dataset": cfg.dataset, "data": _container(cfg.data), "evaluation": evaluation}


def run_fingerprint(cfg: DictConfig, spec: RunSpec, data: ComparisonData) -> str:
    return fingerprint(
        _container(build_solo_cfg(cfg, spec, data)), _container(cfg.curves), _eval_settings(cfg)
    )


def floor_fingerprint(cfg: DictConfig, floor: str, data: ComparisonData) -> str:
    settings: list[Any] = [floor, _eval_settings(cfg), cfg.augmentations[0].crop_size]
    if floor == "untrained":
        settings += [_container(cfg.backbone), cfg.floors.seed, cfg.methods[0]]
    else:
        settings.append(cfg.floors.get("raw_pixel_size"))
    return fingerprint(*settings)


def finished_result(run_dir: Path, expected: str) -> Optional[dict[str, Any]]:
    """The stored result of a finished run with the same settings, else None."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return result if result.get("fingerprint") == expected else None


# ----------------------------------------------------------------------------- one run


def execute_run(
    cfg: DictConfig, spec: RunSpec, data: ComparisonData, probe: Optional[KnnProbe], out: Path
) -> dict[str, Any]:
    """Trains, saves the backbone, evaluates and writes ``result.json`` (last, atomically)."""
    run_dir = out / "runs" / spec.run_id
    (run_dir / "result.json").unlink(missing_ok=True)
    trained = train(cfg, spec, data, probe)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(trained.solo_cfg))
    atomic_torch_save(trained.backbone.state_dict(), run_dir / "backbone.pt")
    start = time.perf_counter()
    scores = evaluate_features(cfg, data, trained.backbone, spec.seed)
    result = {
        "run_id": spec.run_id,
        "kind": "ssl",
        **{k: v for k, v in asdict(spec).items()},
        "epochs": spec.epochs,
        "images_seen": spec.steps * spec.batch_size,
        "views_seen": spec.steps * spec.batch_size * spec.views,
        "train_s": trained.train_s,
        "curve_s": trained.curve_s,
        "eval_s": time.perf_counter() - start,
        **scores,
        "curve": trained.curve,
        "fingerprint": run_fingerprint(cfg, spec, data),
    }
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return result


def execute_floor(
    cfg: DictConfig, floor: str, data: ComparisonData, out: Path
) -> dict[str, Any]:
    """Scores raw pixels or the untrained backbone; writes ``result.json`` atomically."""
    run_dir = out / "runs" / f"floor-{floor}"
    seed = int(cfg.floors.seed)
    start = time.perf_counter()
    if floor == "raw_pixels":
        scores = evaluate_features(cfg, data, torch.nn.Flatten(), seed,
                                   crop_size=cfg.floors.get("raw_pixel_size"))
    else:
        backbone = untrained_backbone(cfg, data, seed)
        atomic_torch_save(backbone.state_dict(), run_dir / "backbone.pt")
        scores = evaluate_features(cfg, data, backbone, seed)
    result = {
        "run_id": f"floor-{floor}", "kind": "floor", "method": floor, "budget": "",
        "seed": seed, "views": 0, "steps": 0, "epochs": 0, "batch_size": 0,
        "images_seen": 0, "views_seen": 0, "train_s": 0.0, "curve_s": 0.0,
        "eval_s": time.perf_counter() - start, **scores, "curve": [],
        "fingerprint": floor_fingerprint(cfg, floor, data),
    }
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return result


# ----------------------------------------------------------------------------- report


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], digits: int = 2) -> str:
    mean, std = _mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def write_results_csv(results: list[dict[str, Any]], path: Path) -> None:
    """One row per run (floors included), in :data:`RESULT_COLUMNS` order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".results.csv.", dir=path.parent)
    with os.fdopen(handle, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for result in results:
            writer.writerow({k: result.get(k, "") for k in RESULT_COLUMNS})
    os.replace(tmp, path)


def summary_rows(cfg: DictConfig, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (budget, method), with floor verdicts."""
    floors = {f: results[f"floor-{f}"] for f in FLOORS if f"floor-{f}" in results}
    best_knn = max((r["knn_top1"] for r in floors.values()), default=-math.inf)
    best_linear = max((r["linear_top1"] for r in floors.values()), default=-math.inf)
    rows = []
    for budget in cfg.budgets:
        for method in cfg.methods:
            views = int(cfg.recipes[method].get("views", 2))
            ids = [f"{method}-{run_budget(views, budget)}-s{seed}" for seed in cfg.seeds]
            done = [results[i] for i in ids if i in results]
            if not done:
                continue
            knn = [r["knn_top1"] for r in done]
            linear = [r["linear_top1"] for r in done]
            beats = [name for name, ok in (
                ("kNN", statistics.fmean(knn) > best_knn),
                ("linear", statistics.fmean(linear) > best_linear)) if ok]
            rows.append({
                "budget": budget, "method": method, "views": views,
                "epochs": done[0]["epochs"], "steps": done[0]["steps"],
                "views_seen": done[0]["views_seen"], "seeds": len(done),
                "shared": run_budget(views, budget) != budget,
                "train_s": [r["train_s"] for r in done], "knn": knn, "linear": linear,
                "beats": beats,
            })
    return rows


def write_results_md(cfg: DictConfig, results: dict[str, dict[str, Any]], path: Path) -> None:
    """The comparison table (mean ± std over seeds), the floors and per-run rows."""
    rows = summary_rows(cfg, results)
    floors = [results[f"floor-{f}"] for f in FLOORS if f"floor-{f}" in results]
    lines = [
        f"# CLAMP vs solo-learn on {cfg.dataset}",
        "",
        f"Backbone {cfg.backbone.name}, {cfg.augmentations[0].crop_size} px, batch "
        f"{cfg.batch_size} images, {cfg.epochs} epochs (equal_epochs), seeds "
        f"{list(cfg.seeds)}. kNN: top-1, k={cfg.evaluation.k}, "
        f"{cfg.evaluation.get('distance', 'cosine')}, T={cfg.evaluation.temperature}. "
        f"Linear: probe on frozen, standardised features ({cfg.evaluation.linear.epochs} "
        "full-batch Adam epochs). Wall-clock: training only, mean over seeds.",
        "",
        "| budget | method | views | epochs | views seen | seeds | wall-clock (s) | kNN top-1 "
        "| linear top-1 | beats both floors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        beats = row["beats"]
        verdict = "yes" if len(beats) == 2 else f"{beats[0]} only" if beats else "**no**"
        shared = " (same run as equal_epochs)" if row["shared"] else ""
        lines.append(
            f"| {row['budget']} | {row['method']}{shared} | {row['views']} | "
            f"{row['epochs']:g} | {row['views_seen']:,} | {row['seeds']} | "
            f"{statistics.fmean(row['train_s']):.0f} | {_fmt(row['knn'])} | "
            f"{_fmt(row['linear'])} | {verdict} |"
        )
    crop = cfg.augmentations[0].crop_size
    labels = {"raw_pixels": f"raw pixels ({cfg.floors.raw_pixel_size or crop} px)",
              "untrained": f"untrained {cfg.backbone.name} (seed {cfg.floors.seed})"}
    for floor in floors:
        lines.append(
            f"| floor | {labels[floor['method']]} | – | 0 | 0 | 1 | 0 | "
            f"{floor['knn_top1']:.2f} | {floor['linear_top1']:.2f} | – |"
        )
    losers = sorted({f"{r['method']} ({r['budget']})" for r in rows if len(r["beats"]) < 2})
    same_init = (f" = the initial weights of the seed-{cfg.floors.seed} runs"
                 if cfg.floors.seed in cfg.seeds else "")
    lines += ["", f"Floors: raw pixels and the untrained backbone (seed {cfg.floors.seed}"
              f"{same_init}), scored the same way."]
    if losers:
        lines.append("Not above both floors on both metrics (mean over seeds): "
                     + ", ".join(losers) + ".")
    elif rows and floors:
        lines.append("Every method beats both floors on both metrics (mean over seeds).")
    missing = [r for r in expected_run_ids(cfg) if r not in results]
    if missing:
        lines += ["", f"Unfinished runs (not in the table): {', '.join(missing)}."]
    lines += ["", "## Runs", "",
              "| run | epochs | steps | views seen | train (s) | kNN top-1 | kNN top-5 "
              "| linear top-1 |", "|---|---|---|---|---|---|---|---|"]
    for result in results.values():
        lines.append(
            f"| {result['run_id']} | {result['epochs']:g} | {result['steps']} | "
            f"{result['views_seen']:,} | {result['train_s']:.0f} | {result['knn_top1']:.2f} | "
            f"{result['knn_top5']:.2f} | {result['linear_top1']:.2f} |"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def plot_curves(cfg: DictConfig, results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """``curves_loss.png`` (SSL loss per epoch, one panel per method) and ``curves_knn.png``
    (probe kNN top-1 vs epochs and vs views seen; floors as horizontal lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results.values() if r["kind"] == "ssl"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(f"{run['method']} ({run['budget']})", []).append(run)
    colours = {name: f"C{i}" for i, name in enumerate(groups)}
    paths = []

    methods = list(dict.fromkeys(r["method"] for r in runs)) or ["none"]
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.2), squeeze=False)
    for ax, method in zip(axes[0], methods):
        for name, members in groups.items():
            if not name.startswith(f"{method} "):
                continue
            for i, run in enumerate(members):
                points = [(p["epoch"], p["loss"]) for p in run["curve"] if p["loss"] is not None]
                if points:
                    ax.plot(*zip(*points), marker="o", color=colours[name], alpha=0.8,
                            label=name if i == 0 else None)
        ax.set(title=f"{method}: {LOSS_KEYS.get(method, 'loss')}", xlabel="epoch", ylabel="loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "curves_loss.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, members in groups.items():
        for i, run in enumerate(members):
            points = [p for p in run["curve"] if p["knn_top1"] is not None]
            epochs = [p["step"] / run["steps_per_epoch"] for p in points]
            views = [p["step"] * run["batch_size"] * run["views"] / 1e6 for p in points]
            accs = [p["knn_top1"] for p in points]
            label = name if i == 0 else None
            axes[0].plot(epochs, accs, marker="o", color=colours[name], alpha=0.8, label=label)
            axes[1].plot(views, accs, marker="o", color=colours[name], alpha=0.8, label=label)
    for floor, style in (("raw_pixels", ":"), ("untrained", "--")):
        result = results.get(f"floor-{floor}")
        if result:
            for ax in axes:
                ax.axhline(result["knn_top1"], color="grey", linestyle=style,
                           label=f"{floor} (eval set)")
    axes[0].set(xlabel="epoch", ylabel="kNN top-1 (%) on the probe set",
                title="kNN top-1 vs epochs")
    axes[1].set(xlabel="views seen (millions)", title="kNN top-1 vs views seen")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "curves_knn.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def expected_run_ids(cfg: DictConfig, spe: int = 1) -> list[str]:
    """Ids of every run the plan needs (floors first)."""
    return [f"floor-{f}" for f in FLOORS] + [s.run_id for s in plan_runs(cfg, spe)]


def write_reports(cfg: DictConfig, results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """results.csv, results.md and the two curve figures."""
    write_results_csv(list(results.values()), out / "results.csv")
    write_results_md(cfg, results, out / "results.md")
    return [out / "results.csv", out / "results.md", *plot_curves(cfg, results, out)]


# ----------------------------------------------------------------------------- driver


@dataclass
class ComparisonSummary:
    out: Path
    trained: list[str]
    skipped: list[str]
    files: list[Path]


def run_comparison(
    cfg: DictConfig, out: os.PathLike, log: Callable[[str], None] = print
) -> ComparisonSummary:
    """Runs (or resumes) the whole comparison into ``out`` and writes the reports."""
    validate_config(cfg)
    with torch_threads(cfg):
        return _run_comparison(cfg, Path(out), log)


def _pending(
    cfg: DictConfig, out: Path, data: ComparisonData, plan: list[RunSpec]
) -> tuple[dict[str, dict[str, Any]], list[str], list[tuple[str, Any]]]:
    """Finished results (same settings), their ids, and the runs still to do (floors first)."""
    results: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, Any]] = []
    skipped = []
    for floor in FLOORS:
        done = finished_result(out / "runs" / f"floor-{floor}", floor_fingerprint(cfg, floor, data))
        if done:
            results[done["run_id"]] = done
            skipped.append(done["run_id"])
        else:
            todo.append(("floor", floor))
    for spec in plan:
        done = finished_result(out / "runs" / spec.run_id, run_fingerprint(cfg, spec, data))
        if done:
            results[spec.run_id] = done
            skipped.append(spec.run_id)
        else:
            todo.append(("ssl", spec))
    return results, skipped, todo


def _run_comparison(cfg: DictConfig, out: Path, log: Callable[[str], None]) -> ComparisonSummary:
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare_config.yaml", OmegaConf.to_yaml(cfg))
    data = prepare_data(cfg)
    spe = steps_per_epoch(cfg, data)
    results, skipped, todo = _pending(cfg, out, data, plan_runs(cfg, spe))
    if skipped:
        log(f"skipping {len(skipped)} finished run(s): {', '.join(skipped)}")
    if todo:
        log(f"{len(todo)} run(s) to do: " + ", ".join(
            f"floor-{item}" if kind == "floor" else item.run_id for kind, item in todo))
    probe = build_probe(cfg, data) if any(kind == "ssl" for kind, _ in todo) else None
    trained: list[str] = []
    finished = False
    try:
        with tqdm(total=len(skipped) + len(todo), initial=len(skipped), desc="compare",
                  unit="run", position=0, dynamic_ncols=True) as bar:
            for kind, item in todo:
                name = f"floor-{item}" if kind == "floor" else item.run_id
                bar.set_postfix_str(name)
                if kind == "floor":
                    results[name] = execute_floor(cfg, item, data, out)
                else:
                    results[name] = execute_run(cfg, item, data, probe, out)
                trained.append(name)
                bar.write(f"{name}: kNN top-1 {results[name]['knn_top1']:.2f}, linear top-1 "
                          f"{results[name]['linear_top1']:.2f} "
                          f"({results[name]['train_s']:.0f} s training)")
                bar.update(1)
                gc.collect()
        finished = True
    finally:  # reports of what is finished, also when interrupted
        ordered = {k: results[k] for k in expected_run_ids(cfg, spe) if k in results}
        files = write_reports(cfg, ordered, out) if ordered else []
        if not finished:
            log(f"stopped: {len(ordered)} finished run(s) are saved in {out}; the same command "
                "resumes from there (the unfinished run starts over).")
    return ComparisonSummary(out, trained, skipped, files)


# ----------------------------------------------------------------------------- estimate


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


def estimate(
    cfg: DictConfig, steps: int = 4, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Times ``steps`` training steps of each method (after one untimed step), the evaluation
    forward throughput and a reference (plain backbone forward + backward, before and after),
    then extrapolates the plan's duration at the measured speed.

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
        spec = RunSpec(method, "equal_epochs", int(cfg.seeds[0]), views, steps + 1, spe,
                       int(cfg.batch_size))
        per_step[method] = statistics.median(train(cfg, spec, data, None).step_times[1:])
        log(f"{method}: {per_step[method]:.2f} s/step ({views} views x {cfg.batch_size} images)")
    reference.append(backbone_throughput(backbone, 2 * int(cfg.batch_size), crop))
    ref_ips = max(reference)  # the less disturbed of the two
    relative = {
        m: per_step[m] * ref_ips / (int(cfg.recipes[m].get("views", 2)) * cfg.batch_size)
        for m in per_step
    }
    eval_images = sum(
        len(stratified_indices(data.dataset(split, None).targets, cfg.evaluation.get(key)))
        for split, key in (("train", "train_per_class"), ("val", "val_per_class"))
    )
    rows = []
    for spec in plan:
        curve_points = spec.max_epochs // cfg.curves.every_n_epochs + 2
        seconds = (spec.steps * per_step[spec.method]
                   + (curve_points * probe_images + eval_images) / forward_ips)
        rows.append({"run_id": spec.run_id, "steps": spec.steps, "seconds": seconds})
    floors_s = 2 * eval_images / forward_ips
    return {
        "seconds_per_step": per_step, "relative_cost": relative,
        "reference_images_per_s": reference, "forward_images_per_s": forward_ips,
        "steps_per_epoch": spe, "runs": rows, "floors_s": floors_s,
        "total_s": floors_s + sum(r["seconds"] for r in rows),
    }
