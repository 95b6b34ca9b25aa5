"""The YAML configs shipped with solo-clamp, located with :mod:`importlib.resources`.

In the repository, ``pretrain``, ``linear`` and ``compare`` here are symbolic links to
``scripts/pretrain``, ``scripts/linear`` and ``scripts/compare``, where solo-learn users expect
the YAML files; the wheel holds copies of those YAML files (and none of the scripts).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

KINDS = ("pretrain", "linear", "compare")


def config_dir(kind: str) -> Path:
    """The folder of the shipped ``kind`` configs: ``pretrain``, ``linear`` or ``compare``
    (links resolved, so that messages name ``scripts/<kind>`` in a repository checkout)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    return Path(files(__name__).joinpath(kind)).resolve()
