"""The one way a method joins solo-clamp: :func:`register_method`, a class decorator (as timm's
``register_model``) that puts the class in solo-learn's table, ``solo.methods.METHODS``, and its
:class:`~solo_clamp.methods.facts.MethodFacts` in solo-clamp's, both under ``facts.name``.

A method of solo-clamp carries its facts as the class attribute ``facts``; solo-learn's own
classes (SimCLR, BYOL, VICReg) are registered with their facts given to the call, so that no
attribute is set on a class of solo-learn's. Programs read the facts with :func:`facts_of`.
"""

from __future__ import annotations

from typing import Optional, TypeVar

from solo.methods import METHODS
from solo.methods.base import BaseMethod

from solo_clamp.methods.facts import MethodFacts

M = TypeVar("M", bound=type)

_REGISTERED: dict[str, tuple[type, MethodFacts]] = {}
"""``name -> (class, facts)`` of every registered method."""


def register_method(cls: M, facts: Optional[MethodFacts] = None) -> M:
    """Registers ``cls`` as ``METHODS[facts.name]`` with its facts; returns ``cls`` unchanged.

    Args:
        cls: a subclass of solo-learn's ``BaseMethod``.
        facts: the class's facts; None (the decorator's use): its ``facts`` attribute.

    Raises:
        TypeError: ``cls`` is not a ``BaseMethod``, or has no facts.
        ValueError: the name is already another class's, in ``METHODS`` or here.
    """
    if not (isinstance(cls, type) and issubclass(cls, BaseMethod)):
        raise TypeError(f"register_method takes a solo-learn BaseMethod subclass, got {cls!r}.")
    own = getattr(cls, "facts", None)
    facts = own if facts is None else facts
    if not isinstance(facts, MethodFacts):
        raise TypeError(f"{cls.__name__} has no MethodFacts (a `facts` class attribute).")
    if own is not None and own is not facts:
        raise ValueError(f"{cls.__name__}.facts differs from the facts it is registered with.")
    for holder in (METHODS.get(facts.name), _REGISTERED.get(facts.name, (None,))[0]):
        if holder is not None and holder is not cls:
            raise ValueError(
                f"method {facts.name!r} is already {holder.__module__}.{holder.__qualname__}; "
                f"{cls.__qualname__} needs another name."
            )
    METHODS[facts.name] = cls
    _REGISTERED[facts.name] = (cls, facts)
    return cls


def unregister_method(name: str) -> None:
    """Takes a method registered with :func:`register_method` out of both tables (a test's,
    or a plugin's that replaces it)."""
    cls, _ = _REGISTERED.pop(name)
    if METHODS.get(name) is cls:
        del METHODS[name]


def facts_of(method: str) -> MethodFacts:
    """The facts of ``METHODS[method]``.

    Raises:
        ValueError: ``method`` is not in ``METHODS``, solo-clamp knows nothing of it, or
            ``METHODS[method]`` is no longer the class its facts were registered with.
    """
    cls = METHODS.get(method)
    if cls is None:
        raise ValueError(f"method {method!r} is not a solo-learn method; known: {known()}.")
    registered = _REGISTERED.get(method)
    if registered is None:
        raise ValueError(
            f"method {method!r} has no solo-clamp facts (register it with register_method): "
            f"the methods solo-clamp can run are {known()}."
        )
    if registered[0] is not cls:
        raise ValueError(
            f"METHODS[{method!r}] is {cls.__qualname__}, not {registered[0].__qualname__} that "
            "its facts describe: register the new class with register_method."
        )
    return registered[1]


def known() -> list[str]:
    """The registered methods still in ``METHODS``, sorted."""
    return sorted(name for name, (cls, _) in _REGISTERED.items() if METHODS.get(name) is cls)
