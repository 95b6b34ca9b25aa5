"""The manifest file: locating, reading, validating and atomically writing ``index.yaml``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from solo_clamp.io import PathLike, atomic_path
from solo_clamp.zoo.errors import ManifestError, UnknownModelError
from solo_clamp.zoo.manifest import ZooEntry, check_keys, parse_entry, require_mapping

SCHEMA_VERSION = 1
INDEX_ENV = "SOLO_CLAMP_ZOO_INDEX"
INDEX_HEADER = (
    "# solo-clamp model zoo manifest: schema in zoo/README.md.\n"
    "# Add a model with: solo-clamp zoo publish CKPT --name NAME [--dtype fp16] ...\n"
)


def default_index_path() -> Path:
    """``$SOLO_CLAMP_ZOO_INDEX``, else the shipped manifest, the package resource
    ``solo_clamp/zoo/index.yaml``: in the repository a link to ``zoo/index.yaml``, resolved so
    that the shipped weights beside it are found (the wheel holds the manifest only)."""
    env = os.environ.get(INDEX_ENV)
    if env:
        return Path(env).expanduser()
    return Path(files(__package__).joinpath("index.yaml")).resolve()


@dataclass
class ZooIndex:
    """A parsed manifest: its path (shipped files are relative to its folder) and entries."""

    path: Path
    entries: dict[str, ZooEntry]

    @property
    def root(self) -> Path:
        """The folder shipped files are relative to."""
        return self.path.parent

    def names(self) -> list[str]:
        """The entry names, in manifest order."""
        return list(self.entries)

    def get(self, name: str) -> ZooEntry:
        """The entry called ``name``.

        Raises:
            UnknownModelError: listing the available names.
        """
        if name in self.entries:
            return self.entries[name]
        available = ", ".join(self.entries) or "none (the manifest is empty)"
        raise UnknownModelError(
            f"unknown zoo model {name!r} in {self.path}; available: {available}."
        )

    def shipped_path(self, entry: ZooEntry) -> Optional[Path]:
        """The shipped file of ``entry`` when it has one and it exists, else None."""
        if entry.file is None:
            return None
        path = self.root / entry.file
        return path if path.is_file() else None


IndexLike = Union[ZooIndex, PathLike, None]


def index_path(index: IndexLike = None) -> Path:
    """The manifest's path: an index's own, a given path, else :func:`default_index_path`."""
    if isinstance(index, ZooIndex):
        return index.path
    return Path(index).expanduser() if index is not None else default_index_path()


def parse_index(data: Any, path: PathLike = "<manifest>") -> ZooIndex:
    """Validates a loaded manifest (``{version: 1, models: [...]}``; empty is allowed)."""
    path = Path(path)
    if data is None:
        data = {}
    data = require_mapping(data, str(path))
    check_keys(data, str(path), (), ("version", "models"))
    version = data.get("version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: version: {version!r} is not supported "
            f"(this solo-clamp reads version {SCHEMA_VERSION})."
        )
    models = data.get("models") or []
    if not isinstance(models, list):
        raise ManifestError(f"{path}: models: expected a list of entries, got {models!r}.")
    entries: dict[str, ZooEntry] = {}
    for i, raw in enumerate(models):
        entry = parse_entry(raw, f"{path}: models[{i}]")
        if entry.name in entries:
            raise ManifestError(f"{path}: models[{i}].name: duplicate model name {entry.name!r}.")
        entries[entry.name] = entry
    return ZooIndex(path=path, entries=entries)


def load_index(index: IndexLike = None) -> ZooIndex:
    """Reads and validates a manifest: a path, an already-loaded index, or the default."""
    if isinstance(index, ZooIndex):
        return index
    path = index_path(index)
    if not path.is_file():
        raise ManifestError(
            f"no zoo manifest at {path}: pass --index PATH (index=...) or set ${INDEX_ENV}."
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML: {err}") from err
    return parse_index(data, path)


def lookup(name: Union[str, ZooEntry], index: IndexLike = None) -> tuple[ZooIndex, ZooEntry]:
    """The loaded manifest and its entry ``name`` (an entry is passed through)."""
    idx = load_index(index)
    return idx, idx.get(name) if isinstance(name, str) else name


def write_index(index: ZooIndex) -> None:
    """Writes ``index`` to its path atomically (temporary file + ``os.replace``)."""
    data = {"version": SCHEMA_VERSION, "models": [e.to_manifest() for e in index.entries.values()]}
    text = INDEX_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    with atomic_path(index.path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def find_by_sha256(index: ZooIndex, sha256: str) -> Optional[ZooEntry]:
    """The entry whose file has this sha256, if any."""
    return next((e for e in index.entries.values() if e.sha256 == sha256), None)
