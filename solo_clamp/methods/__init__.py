"""solo-learn method classes. Importing this package requires solo-learn and registers
CLAMP and ManifoldCLR in solo-learn's own table, ``solo.methods.METHODS`` (the one place
that happens), so that ``method: clamp`` (or ``manifoldclr``) works in any solo-learn
program that imports it (or calls :func:`solo_clamp.register`).

:func:`facts_of` gives what solo-clamp's programs need to know about a method
(:class:`~solo_clamp.methods.facts.MethodFacts`): from the class's ``facts``, or for
solo-learn's SimCLR, BYOL and VICReg from :mod:`solo_clamp.methods.baselines`.
"""

import warnings

with warnings.catch_warnings():  # solo-learn's and timm's import-time deprecation noise
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", UserWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from solo.methods import METHODS

    from solo_clamp.methods.baselines import BASELINE_FACTS
    from solo_clamp.methods.clamp import CLAMP
    from solo_clamp.methods.facts import MethodFacts, ViewRule
    from solo_clamp.methods.manifoldclr import ManifoldCLR

OURS = {"clamp": CLAMP, "manifoldclr": ManifoldCLR}


def register() -> None:
    """Puts solo-clamp's methods into ``solo.methods.METHODS`` (idempotent)."""
    METHODS.update(OURS)


def facts_of(method: str) -> MethodFacts:
    """The facts of ``METHODS[method]``: its ``facts`` attribute, or solo-learn's baselines'.

    Raises:
        ValueError: ``method`` is not in ``METHODS``, or solo-clamp knows nothing of it.
    """
    cls = METHODS.get(method)
    if cls is None:
        raise ValueError(f"method {method!r} is not a solo-learn method; known: {known()}.")
    facts = getattr(cls, "facts", None) or BASELINE_FACTS.get(cls)
    if not isinstance(facts, MethodFacts):
        raise ValueError(
            f"method {method!r} has no solo-clamp facts (a `facts` class attribute): the "
            f"methods solo-clamp can run are {known()}."
        )
    return facts


def known() -> list[str]:
    """The methods of ``METHODS`` with facts, sorted."""
    return sorted(
        name
        for name, cls in METHODS.items()
        if isinstance(getattr(cls, "facts", None), MethodFacts) or cls in BASELINE_FACTS
    )


register()

__all__ = ["CLAMP", "ManifoldCLR", "MethodFacts", "ViewRule", "facts_of", "known", "register"]
