"""solo-learn method classes. Importing this package requires solo-learn and registers CLAMP,
ManifoldCLR and solo-learn's SimCLR, BYOL and VICReg with
:func:`~solo_clamp.methods.registry.register_method`, the one path into solo-learn's own table,
``solo.methods.METHODS``, and solo-clamp's table of facts: ``method: clamp`` (or
``manifoldclr``) then works in any solo-learn program that imports it (or calls
:func:`solo_clamp.register`).

:func:`facts_of` gives what solo-clamp's programs need to know about a method
(:class:`~solo_clamp.methods.facts.MethodFacts`), :func:`known` the methods that have facts.
"""

import warnings

with warnings.catch_warnings():  # solo-learn's and timm's import-time deprecation noise
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", UserWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    from solo_clamp.methods import baselines  # noqa: F401 - registers SimCLR, BYOL, VICReg
    from solo_clamp.methods.clamp import CLAMP
    from solo_clamp.methods.facts import MethodFacts, ViewRule
    from solo_clamp.methods.manifoldclr import ManifoldCLR
    from solo_clamp.methods.registry import facts_of, known, register_method, unregister_method

__all__ = [
    "CLAMP",
    "ManifoldCLR",
    "MethodFacts",
    "ViewRule",
    "facts_of",
    "known",
    "register_method",
    "unregister_method",
]
