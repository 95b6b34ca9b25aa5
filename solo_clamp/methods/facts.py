"""What solo-clamp's programs know about a method, kept with the method's class.

Every method module (``solo_clamp/methods/<name>.py``) gives its class a ``facts``
(:class:`MethodFacts`) and registers it with :func:`~solo_clamp.methods.registry.register_method`:
the name it is known by in ``solo.methods.METHODS``, the ``method_kwargs`` schema (a dataclass:
defaults, types, unknown keys refused, range checks in ``__post_init__``), the views it takes,
the loss and statistics it logs (its ``training_step`` logs through these very keys), the fields
that fix a run's shape, those that are projector widths, and the hooks geometry (its held-out
transport check) and few-label probes use. Preflight, auto-resume, compare, geometry and
few-label read these through :func:`solo_clamp.methods.facts_of`; none keeps a table of its
own or branches on a method's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from solo_clamp.errors import ConfigError
from solo_clamp.views import count_views

_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class ViewRule:
    """How many views per image (large + small crops) a method takes, and why."""

    minimum: int = 2
    maximum: Optional[int] = None
    why: str = ""

    def allows(self, views: int) -> bool:
        return self.minimum <= views and (self.maximum is None or views <= self.maximum)

    @property
    def wanted(self) -> str:
        """The rule in words, e.g. ``exactly 2`` or ``at least 2``."""
        if self.maximum == self.minimum:
            return f"exactly {self.minimum}"
        if self.maximum is None:
            return f"at least {self.minimum}"
        return f"{self.minimum} to {self.maximum}"

    def check(self, views: int, method: str) -> None:
        """Raises ValueError unless ``views`` (the crops per image of a cfg) fits the rule."""
        if self.allows(views):
            return
        why = f" ({self.why})" if self.why else ""
        raise ConfigError(
            f"method={method} takes {self.wanted} views per image{why}: the crops per image "
            "(data.num_large_crops + data.num_small_crops, or the sum of "
            f"augmentations[*].num_crops) must be {self.wanted}, got {views!r}."
        )


@dataclass(frozen=True)
class MethodFacts:
    """What the programs need from a method (see the module docstring)."""

    name: str
    """The method's key in ``solo.methods.METHODS`` (``method:`` of a cfg)."""
    loss_key: str
    """The self-supervised loss the method logs (without the online classifier's): the key its
    ``training_step`` passes to ``self.log``."""
    views: ViewRule = ViewRule()
    kwargs_schema: Optional[type] = None
    """A dataclass of the ``method_kwargs``; None: the method checks them itself."""
    stat_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The statistics the ``training_step`` logs beside the loss: statistic -> metric key (the
    step logs ``{key: stats[name]}`` from this very mapping)."""
    curve_stats: tuple[str, ...] = ()
    """The statistics of :attr:`stat_keys` that the geometry report draws per epoch, by the
    names of its curves (``neighbours``, ``mean_radius``); empty: the method logs none."""
    shape_fields: tuple[str, ...] = ()
    """``method_kwargs`` fields that change the model's shape or objective: a run of another
    value is not resumed from this one's checkpoints."""
    projector_width_fields: tuple[str, ...] = ()
    """``method_kwargs`` fields that are widths of the projector (or predictor): a comparison's
    ``projector_scale`` scales these and no others."""
    radius_scale: Optional[Callable[[DictConfig], tuple[float, float]]] = None
    """``method_kwargs -> (rs, max_range)`` for the geometry's sub-manifold radii; None: the
    unscaled radius with no range cap."""
    feature_augmenter: Optional[Callable[[DictConfig, Mapping[str, Any]], Any]] = None
    """``(run cfg, checkpoint) -> augmenter`` with ``augment(z, samples, generator)``
    (few-label feature augmentation), or None for a run without a trained one (an ablation);
    None here: the method has none."""
    learned_transport: Optional[Callable[[Any, Mapping[str, Any]], Any]] = None
    """``(the run's built method, its checkpoint) -> LearnedTransport``
    (:class:`solo_clamp.geometry.transport.LearnedTransport`: operators, posterior and prior in
    eval mode) for the geometry report's held-out transport check, or None for a run whose
    operators are off; None here: the method has no transport operators."""
    diagnose: Optional[Callable[[Mapping[str, float], DictConfig], list[str]]] = None
    """``(final epoch metrics, method_kwargs) -> problems``: one sentence per problem (what
    diverged, its value and the stated bound), printed at the end of the run's report; None:
    nothing to check."""

    def __post_init__(self) -> None:
        """Refuses facts that contradict themselves: a curve that is not a logged statistic,
        a shape or width field that is not a field of the kwargs schema."""
        if not self.name or not self.loss_key:
            raise ValueError(f"MethodFacts needs a name and a loss_key, got {self!r}.")
        unlogged = [name for name in self.curve_stats if name not in self.stat_keys]
        if unlogged:
            raise ValueError(
                f"method {self.name!r}: curve_stats {unlogged} are not in stat_keys "
                f"{sorted(self.stat_keys)}."
            )
        if self.kwargs_schema is not None:
            fields = {f.name for f in dataclasses.fields(self.kwargs_schema)}
            for what in ("shape_fields", "projector_width_fields"):
                unknown = [name for name in getattr(self, what) if name not in fields]
                if unknown:
                    raise ValueError(
                        f"method {self.name!r}: {what} {unknown} are not fields of "
                        f"{self.kwargs_schema.__name__} {sorted(fields)}."
                    )

    @property
    def curve_keys(self) -> dict[str, str]:
        """The geometry report's curves: curve name -> the metric key the method logs."""
        return {name: self.stat_keys[name] for name in self.curve_stats}

    def check(self, cfg: DictConfig) -> DictConfig:
        """Checks a cfg's views against :attr:`views` and completes and checks its
        ``method_kwargs`` with :attr:`kwargs_schema` (in place); returns ``cfg``."""
        self.views.check(count_views(cfg), self.name)
        if self.kwargs_schema is not None:
            cfg.method_kwargs = check_kwargs(
                self.kwargs_schema, cfg.get("method_kwargs"), self.name
            )
        return cfg


def field_error(name: str, message: str) -> ConfigError:
    """The error every kwargs check raises: ``method_kwargs.<name> <message>``."""
    return ConfigError(f"method_kwargs.{name} {message}")


def require(ok: bool, name: str, rule: str, value: Any) -> None:
    """Raises ``method_kwargs.<name> must be <rule>, got <value>`` unless ``ok``."""
    if not ok:
        raise field_error(name, f"must be {rule}, got {value!r}.")


RULES: dict[str, Callable[[Any], bool]] = {
    "an integer >= 1": lambda value: value >= 1,
    "an integer >= 0": lambda value: value >= 0,
    "> 0": lambda value: value > 0,
    ">= 0": lambda value: value >= 0,
    "> 0 or null": lambda value: value is None or value > 0,
}
"""The range rules of :func:`require_each`, by the words its message gives them."""


def require_each(kwargs: Any, names: tuple[str, ...], rule: str) -> None:
    """:func:`require` the :data:`RULES` ``rule`` of each field of ``names`` of the ``kwargs``
    dataclass, in order."""
    for name in names:
        value = getattr(kwargs, name)
        require(RULES[rule](value), name, rule, value)


def _type_word(schema: type, name: str) -> str:
    hints = {f.name: f.type for f in dataclasses.fields(schema)}
    text = str(hints.get(name, ""))
    for kind, word in _TYPE_WORDS.items():
        if kind.__name__ in text:
            return word + (" or null" if "Optional" in text or "None" in text else "")
    return "of the field's type"


def check_kwargs(schema: type, kwargs: Any, method: str) -> DictConfig:
    """``kwargs`` merged over ``schema``'s defaults, typed and range-checked.

    Args:
        schema: a dataclass whose ``__post_init__`` checks ranges and cross-field rules with
            :func:`require` / :func:`field_error`.
        kwargs: the cfg's ``method_kwargs`` (a mapping, a DictConfig or None).
        method: the method's name, for messages.

    Returns:
        The completed ``method_kwargs`` as a plain (non-struct) DictConfig.

    Raises:
        ValueError: an unknown, missing or ill-typed field, or a value out of range, named as
            ``method_kwargs.<field>``.
    """
    if kwargs is None:
        kwargs = {}
    if OmegaConf.is_config(kwargs):
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    fields = sorted(f.name for f in dataclasses.fields(schema))
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown method_kwargs for method={method}: {unknown}; the fields are {fields}."
        )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), kwargs)
    except ValidationError as err:
        name = str(err.full_key)
        raise field_error(
            name, f"must be {_type_word(schema, name)}, got {kwargs.get(name)!r}."
        ) from None
    except ConfigKeyError as err:  # pragma: no cover - unknown keys are caught above
        raise ConfigError(f"method_kwargs: {err.msg}") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise field_error(missing[0], f"is required for method={method}.")
    try:
        OmegaConf.to_object(merged)  # runs the schema's __post_init__ checks
    except OmegaConfBaseException as err:
        raise ConfigError(f"method_kwargs: {err.msg}") from None
    return OmegaConf.create(OmegaConf.to_container(merged))
