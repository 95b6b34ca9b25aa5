"""The comparison config's schema (:class:`ComparisonConfig`: dataclasses whose annotations
OmegaConf checks, whose defaults fill what a config leaves out) and :func:`checked`, which
turns each of OmegaConf's errors into one :class:`ConfigError` sentence naming the field.

A field's minimum (:func:`at_least`) is checked after its type; what a type cannot say
(choices, cross-field rules) stays with ``config.validate_config``."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from solo_clamp.errors import ConfigError

BUDGETS = ("equal_epochs", "equal_compute")
_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
_ABSENT = object()


def at_least(minimum: int, default: Any = MISSING) -> Any:
    """A dataclass field of integers >= ``minimum`` (or null, where its type is Optional)."""
    return field(default=default, metadata={"minimum": minimum})


@dataclass
class DataConfig:
    root: str = "datasets"
    source: Optional[str] = None
    train_path: Optional[str] = None
    val_path: Optional[str] = None
    train_per_class: Optional[int] = at_least(1, None)
    val_per_class: Optional[int] = at_least(1, None)
    seed: int = 0
    num_workers: int = at_least(0, 0)


@dataclass
class BackboneConfig:
    name: str = "resnet18"
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1  # Lightning's: a count, a list of ids or "auto"
    precision: Any = 32  # Lightning's: 32, "16-mixed", ...
    channels_last: bool = False
    progress_bar: bool = True
    log_every_n_steps: int = 10
    threads: Optional[int] = at_least(1, None)


@dataclass
class CurvesConfig:
    per_class: Optional[int] = at_least(1, 50)
    every_n_epochs: int = at_least(1, 1)


@dataclass
class LinearConfig:
    epochs: int = at_least(1, 100)
    lr: float = 0.01
    weight_decay: float = 1e-5


@dataclass
class FeatureAugmentConfig:
    samples: int = at_least(0, 0)  # per labelled image, methods that have one


@dataclass
class FewLabelConfig:  # linear probes (evaluation.linear's settings) on draws from the kNN bank
    enabled: bool = False
    per_class: int = at_least(1, 5)
    draws: int = at_least(1, 5)
    seed: int = 0
    feature_augment: FeatureAugmentConfig = field(default_factory=FeatureAugmentConfig)


@dataclass
class EvaluationConfig:
    k: int = at_least(1, 20)
    temperature: float = 0.07
    distance: str = "cosine"
    batch_size: int = at_least(1, 256)
    device: str = "auto"
    train_per_class: Optional[int] = at_least(1, None)
    val_per_class: Optional[int] = at_least(1, None)
    linear: LinearConfig = field(default_factory=LinearConfig)
    few_label: FewLabelConfig = field(default_factory=FewLabelConfig)


@dataclass
class FloorsConfig:  # raw pixels once; the untrained backbone once per seed of `seeds`
    raw_pixel_size: Optional[int] = at_least(1, None)


@dataclass
class TuningConfig:  # fair tuning: compare/tuning.py, which checks the grid
    enabled: bool = False
    lr_multipliers: Any = None  # a list, or method -> list
    method_kwargs: Optional[Dict[str, Any]] = field(default_factory=dict)  # method -> kwarg -> list
    val_per_class: int = at_least(1, 50)
    epochs: int = at_least(1, 4)
    seed: int = 0
    only: bool = False  # stop after tuning: validation scores only, no final (test) runs
    curves: bool = False  # trials record validation kNN every curves.every_n_epochs
    max_extensions: int = at_least(0, 2)  # bracketing: lr steps past an edge of the grid


@dataclass
class TransferConfig:  # a dataset the runs do not train on (compare/strength.py)
    dataset: Optional[str] = None  # mnist, fashion_mnist or image_folder; null: no transfer scores
    source: Optional[str] = None  # idx directory (as data.source)
    train_path: Optional[str] = None  # image_folder: its two splits
    val_path: Optional[str] = None
    train_per_class: Optional[int] = at_least(1, 500)  # the transfer bank (kNN, few-label draws)
    val_per_class: Optional[int] = at_least(1, 200)  # the transfer test images
    seed: int = 0


@dataclass
class GeometryConfig:  # the encoder against the projector, per run (compare/strength.py)
    enabled: bool = False
    per_class: int = at_least(1, 50)  # held-out test images per class whose views are measured
    views: int = at_least(2, 8)  # augmented views per image, the run's training augmentations
    seed: int = 0  # the views' random draws (the same for every run)
    transfer: TransferConfig = field(default_factory=TransferConfig)


@dataclass
class ComparisonConfig:
    """A comparison config (scripts/compare/fashion_mnist.yaml); the fields without a default
    are required. ``recipes`` (per method: solo-learn's fields and ``views``),
    ``augmentations`` and ``scheduler`` are solo-learn's, free-form; ``variants``: the strength
    axis (compare/strength.py checks it)."""

    dataset: str = "fashion_mnist"
    data: DataConfig = field(default_factory=DataConfig)
    budgets: List[str] = field(default_factory=lambda: list(BUDGETS))
    seeds: List[int] = field(default_factory=lambda: [0])
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    projector_scale: float = 1.0
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
    quick: bool = False
    variants: Any = None
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    methods: List[str] = MISSING
    recipes: Dict[str, Any] = MISSING
    augmentations: List[Any] = MISSING
    epochs: int = at_least(1)
    batch_size: int = at_least(1)


@dataclass(frozen=True)
class _Field:
    hint: Any  # the annotation, Optional unwrapped
    optional: bool
    minimum: Optional[int]

    def describe(self) -> str:
        """What the field's value must be, e.g. "a positive integer or null"."""
        if typing.get_origin(self.hint) is list:
            item = typing.get_args(self.hint)[0]
            text = f"a list of {_PLURALS[item]}" if item in _PLURALS else "a list"
        elif self.hint is int and self.minimum is not None:
            text = "a positive integer" if self.minimum == 1 else f"an integer >= {self.minimum}"
        else:
            text = _WORDS.get(self.hint, "a mapping")
        return text + (" or null" if self.optional else "")

    def fits_shape(self, value: Any) -> bool:
        """Whether ``value`` is a mapping or a list where the field wants one."""
        if dataclasses.is_dataclass(self.hint) or typing.get_origin(self.hint) is dict:
            return OmegaConf.is_dict(value)
        return OmegaConf.is_list(value) if typing.get_origin(self.hint) is list else True


def _fields(schema: type, prefix: str = "") -> dict[str, _Field]:
    """Every field of ``schema`` and of its sections by dotted path, a section before its own."""
    table = {}
    hints = typing.get_type_hints(schema)
    for entry in dataclasses.fields(schema):
        hint, path = hints[entry.name], prefix + entry.name
        optional = type(None) in typing.get_args(hint)
        if optional:
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        table[path] = _Field(hint, optional, entry.metadata.get("minimum"))
        if dataclasses.is_dataclass(hint):
            table.update(_fields(hint, path + "."))
    return table


def defaults(schema: type) -> dict[str, Any]:
    """The defaults of ``schema`` as plain data, without its required (top-level) fields."""
    fields = OmegaConf.to_container(OmegaConf.structured(schema))
    return {key: value for key, value in fields.items() if value != MISSING}


def _wrong(path: str, field: _Field, value: Any) -> ConfigError:
    return ConfigError(f"{path} must be {field.describe()}, got {value!r}.")


def _converted(raw: Any, typed: Any) -> bool:
    """Whether OmegaConf converted ``raw`` ('yes' or 1 to true, '5' to 5): a value must already
    be of its field's type, where an integer may stand for a number."""
    return type(raw) is not type(typed) and not (type(raw) is int and type(typed) is float)


def check_shapes(schema: type, cfg: DictConfig) -> dict[str, _Field]:
    """Checks that every mapping and list field of ``schema`` is one in ``cfg`` (OmegaConf's
    merge errors on these lose the field's name); returns the fields by path."""
    table = _fields(schema)
    for path, entry in table.items():
        value = OmegaConf.select(cfg, path)
        if value is not None and not entry.fits_shape(value):
            raise _wrong(path, entry, value)
    return table


def checked(schema: type, cfg: DictConfig, name: str) -> DictConfig:
    """``cfg`` merged over ``schema``: every field of its annotated type and at least its
    minimum, no field that ``schema`` lacks, no required field left out; else ConfigError
    naming the field (``name``: the config's, e.g. "comparison config")."""
    table = check_shapes(schema, cfg)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except ConfigKeyError as err:
        parent = err.full_key.rpartition(".")[0]
        known = [p.rpartition(".")[2] for p in table if p.rpartition(".")[0] == parent]
        where = f" under {parent!r}" if parent else ""
        raise ConfigError(
            f"{err.full_key} is not a field of the {name}; fields{where}: {known}."
        ) from None
    except ValidationError as err:
        path = err.full_key.partition("[")[0]  # seeds[1]: the list is named
        if path not in table:  # not expected: the shapes are checked above
            raise ConfigError(f"{err.full_key or name}: {err.msg}") from None
        raise _wrong(path, table[path], OmegaConf.select(cfg, path)) from None
    missing = sorted(OmegaConf.missing_keys(typed))
    if missing:
        raise ConfigError(f"{missing[0]} is missing: the {name} must set it.")
    for path, entry in table.items():
        raw, value = OmegaConf.select(cfg, path, default=_ABSENT), OmegaConf.select(typed, path)
        listed = typing.get_origin(entry.hint) is list
        item = typing.get_args(entry.hint)[0] if listed else entry.hint
        if raw is not _ABSENT and item in _WORDS:
            if any(_converted(a, b) for a, b in (zip(raw, value) if listed else [(raw, value)])):
                raise _wrong(path, entry, raw)
        if entry.minimum is not None and value is not None and value < entry.minimum:
            raise _wrong(path, entry, value)
    return typed
