"""The zoo manifest, ``index.yaml``: reading and validating it (its entries:
:mod:`~solo_clamp.zoo.entry`), finding it, and writing it. Every error names the file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, Optional, Union

import pydantic
import yaml

from solo_clamp.errors import ManifestError, UnknownModelError
from solo_clamp.io import PathLike, atomic_write_text
from solo_clamp.validation import CLOSED, validated
from solo_clamp.zoo.entry import ZooEntry, parse_entry

SCHEMA_VERSION = 1
INDEX_ENV = "SOLO_CLAMP_ZOO_INDEX"
INDEX_HEADER = (
    "# solo-clamp model zoo manifest: schema in zoo/README.md.\n"
    "# Add a model with: solo-clamp zoo publish CKPT --name NAME [--dtype fp16] ...\n"
)


@dataclass
class ZooIndex:
    """A parsed manifest: its path (shipped files are relative to its folder) and entries."""

    path: Path
    entries: dict[str, ZooEntry]

    @property
    def root(self) -> Path:
        return self.path.parent

    def get(self, name: str) -> ZooEntry:
        """The entry called ``name``; an :class:`UnknownModelError` lists the available ones."""
        if name not in self.entries:
            available = ", ".join(self.entries) or "none (the manifest is empty)"
            raise UnknownModelError(
                f"unknown zoo model {name!r} in {self.path}; available: {available}."
            )
        return self.entries[name]

    def shipped_path(self, entry: ZooEntry) -> Optional[Path]:
        """The shipped file of ``entry`` when it has one and it exists."""
        path = self.root / entry.file if entry.file is not None else None
        return path if path is not None and path.is_file() else None


IndexLike = Union[ZooIndex, PathLike, None]


@pydantic.dataclasses.dataclass(config=CLOSED)
class _Layout:
    """A manifest's top level; each entry is checked on its own (its name goes in messages)."""

    version: Literal[1] = SCHEMA_VERSION
    models: Optional[list[Any]] = None


def default_index_path() -> Path:
    """``$SOLO_CLAMP_ZOO_INDEX``, else the package resource ``solo_clamp/zoo/index.yaml``: in
    the repository a link to ``zoo/index.yaml``, resolved so that the shipped weights beside it
    are found (the wheel holds the manifest only)."""
    env = os.environ.get(INDEX_ENV)
    return Path(env).expanduser() if env else Path(files(__package__) / "index.yaml").resolve()


def index_path(index: IndexLike = None) -> Path:
    """The manifest's path: an index's own, a given path, else :func:`default_index_path`."""
    if isinstance(index, ZooIndex):
        return index.path
    return Path(index).expanduser() if index is not None else default_index_path()


def load_index(index: IndexLike = None) -> ZooIndex:
    """Reads and validates a manifest (``{version: 1, models: [...]}``; empty is allowed): a
    path, an index already loaded, or the default one."""
    if isinstance(index, ZooIndex):
        return index
    path = index_path(index)
    if not path.is_file():
        raise ManifestError(
            f"no zoo manifest at {path}: pass --index PATH (index=...) or set ${INDEX_ENV}."
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML: {err}") from err
    layout = validated(_Layout, data, f"{path}:", ManifestError)
    entries: dict[str, ZooEntry] = {}
    for i, raw in enumerate(layout.models or []):
        entry = parse_entry(raw, f"{path}: models[{i}]")
        if entry.name in entries:
            raise ManifestError(f"{path}: models[{i}].name: duplicate model name {entry.name!r}.")
        entries[entry.name] = entry
    return ZooIndex(path, entries)


def lookup(name: Union[str, ZooEntry], index: IndexLike = None) -> tuple[ZooIndex, ZooEntry]:
    """The loaded manifest and its entry ``name`` (an entry is passed through)."""
    idx = load_index(index)
    return idx, idx.get(name) if isinstance(name, str) else name


def write_index(index: ZooIndex) -> None:
    """Writes ``index`` to its path atomically."""
    data = {"version": SCHEMA_VERSION, "models": [e.to_manifest() for e in index.entries.values()]}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    atomic_write_text(index.path, INDEX_HEADER + text)
