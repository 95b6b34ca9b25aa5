"""What solo-clamp's programs know about a method, kept with the method's class.

Every method module (``solo_clamp/methods/<name>.py``) gives its class a ``facts``
(:class:`MethodFacts`) and registers it with :func:`~solo_clamp.methods.registry.register_method`:
the name it is known by in ``solo.methods.METHODS``, the ``method_kwargs`` schema (a pydantic
dataclass, :mod:`solo_clamp.validation`: defaults, types, ranges, unknown keys refused), the
views it takes, the loss and statistics it logs (its ``training_step`` logs through these very
keys), the fields that fix a run's shape, those that are projector widths, and the hooks
geometry (its held-out transport check) and few-label probes use. Preflight, auto-resume,
compare, geometry and few-label read these through :func:`solo_clamp.methods.facts_of`; none
keeps a table of its own or branches on a method's name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from solo_clamp.errors import ConfigError
from solo_clamp.validation import validated
from solo_clamp.views import count_views


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
    """A pydantic dataclass of the ``method_kwargs`` (:mod:`solo_clamp.validation`); None: the
    method checks them itself."""
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
            cfg.method_kwargs = check_kwargs(self.kwargs_schema, cfg.get("method_kwargs"))
        return cfg


def check_kwargs(schema: type, kwargs: Any) -> DictConfig:
    """``kwargs`` (the cfg's ``method_kwargs``: a mapping, a DictConfig or None) completed with
    ``schema``'s defaults, typed and range-checked, as a plain (non-struct) DictConfig; a
    ConfigError names ``method_kwargs.<field>``."""
    if OmegaConf.is_config(kwargs):
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    typed = validated(schema, kwargs or {}, "method_kwargs")
    return OmegaConf.create(dataclasses.asdict(typed))
