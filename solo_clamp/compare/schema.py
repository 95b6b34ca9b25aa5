"""The comparison config's schema: :class:`ComparisonConfig`, pydantic dataclasses whose strict
types and ranges :func:`solo_clamp.validation.validated` checks (each error one sentence naming
the field) and whose defaults fill what a config leaves out (:func:`defaults`).

What a type cannot say (choices, cross-field rules) stays with ``config.validate_config``."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Annotated, Any, Dict, List, Optional

from pydantic import Field, StrictBool, StrictInt, StrictStr
from pydantic.dataclasses import dataclass

from solo_clamp.validation import CLOSED, Count, Index, Number

BUDGETS = ("equal_epochs", "equal_compute")


@dataclass(config=CLOSED)
class DataConfig:
    root: StrictStr = "datasets"
    source: Optional[StrictStr] = None
    train_path: Optional[StrictStr] = None
    val_path: Optional[StrictStr] = None
    train_per_class: Optional[Count] = None
    val_per_class: Optional[Count] = None
    seed: StrictInt = 0
    num_workers: Index = 0


@dataclass(config=CLOSED)
class BackboneConfig:
    name: StrictStr = "resnet18"
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass(config=CLOSED)
class TrainerConfig:
    accelerator: StrictStr = "cpu"
    devices: Any = 1  # Lightning's: a count, a list of ids or "auto"
    precision: Any = 32  # Lightning's: 32, "16-mixed", ...
    channels_last: StrictBool = False
    progress_bar: StrictBool = True
    log_every_n_steps: StrictInt = 10
    threads: Optional[Count] = None


@dataclass(config=CLOSED)
class CurvesConfig:
    per_class: Optional[Count] = 50
    every_n_epochs: Count = 1


@dataclass(config=CLOSED)
class LinearConfig:
    epochs: Count = 100
    lr: Number = 0.01
    weight_decay: Number = 1e-5


@dataclass(config=CLOSED)
class FeatureAugmentConfig:
    samples: Index = 0  # per labelled image, methods that have one


@dataclass(config=CLOSED)
class FewLabelConfig:  # linear probes (evaluation.linear's settings) on draws from the kNN bank
    enabled: StrictBool = False
    per_class: Count = 5
    draws: Count = 5
    seed: StrictInt = 0
    feature_augment: FeatureAugmentConfig = field(default_factory=FeatureAugmentConfig)


@dataclass(config=CLOSED)
class EvaluationConfig:
    k: Count = 20
    temperature: Number = 0.07
    distance: StrictStr = "cosine"
    batch_size: Count = 256
    device: StrictStr = "auto"
    train_per_class: Optional[Count] = None
    val_per_class: Optional[Count] = None
    linear: LinearConfig = field(default_factory=LinearConfig)
    few_label: FewLabelConfig = field(default_factory=FewLabelConfig)


@dataclass(config=CLOSED)
class FloorsConfig:  # raw pixels once; the untrained backbone once per seed of `seeds`
    raw_pixel_size: Optional[Count] = None


@dataclass(config=CLOSED)
class TuningConfig:  # fair tuning: compare/tuning.py, which checks the grid
    enabled: StrictBool = False
    lr_multipliers: Any = None  # a list, or method -> list
    method_kwargs: Optional[Dict[str, Any]] = field(default_factory=dict)  # method -> kwarg -> list
    val_per_class: Count = 50
    epochs: Count = 4
    seed: StrictInt = 0
    only: StrictBool = False  # stop after tuning: validation scores only, no final (test) runs
    curves: StrictBool = False  # trials record validation kNN every curves.every_n_epochs
    max_extensions: Index = 2  # bracketing: lr steps past an edge of the grid


@dataclass(config=CLOSED)
class TransferConfig:  # a dataset the runs do not train on (compare/strength.py)
    # mnist, fashion_mnist or image_folder; null: no transfer scores
    dataset: Optional[StrictStr] = None
    source: Optional[StrictStr] = None  # idx directory (as data.source)
    train_path: Optional[StrictStr] = None  # image_folder: its two splits
    val_path: Optional[StrictStr] = None
    train_per_class: Optional[Count] = 500  # the bank (kNN, few-label draws)
    val_per_class: Optional[Count] = 200  # the transfer test images
    seed: StrictInt = 0


@dataclass(config=CLOSED)
class GeometryConfig:  # the encoder against the projector, per run (compare/strength.py)
    enabled: StrictBool = False
    per_class: Count = 50  # held-out test images per class, views measured
    # augmented views per image, the run's training augmentations
    views: Annotated[StrictInt, Field(ge=2)] = 8
    seed: StrictInt = 0  # the views' random draws (the same for every run)
    transfer: TransferConfig = field(default_factory=TransferConfig)


@dataclass(config=CLOSED, kw_only=True)
class ComparisonConfig:
    """A comparison config (scripts/compare/fashion_mnist.yaml); the fields without a default
    are required. ``recipes`` (per method: solo-learn's fields and ``views``),
    ``augmentations`` and ``scheduler`` are solo-learn's, free-form; ``variants``: the strength
    axis (compare/strength.py checks it)."""

    dataset: StrictStr = "fashion_mnist"
    data: DataConfig = field(default_factory=DataConfig)
    budgets: List[StrictStr] = field(default_factory=lambda: list(BUDGETS))
    seeds: List[StrictInt] = field(default_factory=lambda: [0])
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    projector_scale: Number = 1.0
    # One warm-up for every method: warmup_epochs of the `epochs` budget, scaled to each run's
    # length (run_cfg.solo_cfg); recipes may not set their own.
    scheduler: Dict[str, Any] = field(
        default_factory=lambda: {"name": "warmup_cosine", "warmup_epochs": 0}
    )
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    curves: CurvesConfig = field(default_factory=CurvesConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    floors: FloorsConfig = field(default_factory=FloorsConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    quick: StrictBool = False
    variants: Any = None
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    methods: List[StrictStr]
    recipes: Dict[str, Any]
    augmentations: List[Any]
    epochs: Count
    batch_size: Count


def defaults(schema: type) -> dict[str, Any]:
    """The defaults of ``schema`` as plain data, without its required fields."""
    out = {}
    for entry in dataclasses.fields(schema):
        if entry.default is not dataclasses.MISSING:
            out[entry.name] = entry.default
        elif entry.default_factory is not dataclasses.MISSING:
            made = entry.default_factory()
            out[entry.name] = dataclasses.asdict(made) if dataclasses.is_dataclass(made) else made
    return out
