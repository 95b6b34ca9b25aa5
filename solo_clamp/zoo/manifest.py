"""Manifest entries: the dataclasses, and the validation that turns raw YAML into them.

The schema of an entry (``zoo/index.yaml``) is documented once, in ``zoo/README.md``; the
fields are those of :class:`ZooEntry`, in its order (required first, then optional).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch

from solo_clamp.zoo.errors import ManifestError

FORMATS: dict[str, torch.dtype] = {
    "safetensors-fp16": torch.float16,
    "safetensors-fp32": torch.float32,
}
EVALUATIONS = ("knn", "linear")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BackboneSpec:
    """How to rebuild a backbone: solo-learn's name and kwargs, and the CIFAR stem flag
    (:func:`solo_clamp.backbones.build_backbone` builds it)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    cifar_stem: bool = False

    def to_manifest(self) -> dict[str, Any]:
        """The backbone as the zoo manifest writes it."""
        return asdict(self)


@dataclass(frozen=True)
class Source:
    """One place an entry's file can be downloaded from: a URL or a Hugging Face file."""

    url: Optional[str] = None
    hf_repo: Optional[str] = None
    hf_filename: Optional[str] = None
    hf_revision: Optional[str] = None

    def describe(self) -> str:
        """A one-line name of the source, for messages."""
        if self.url:
            return self.url
        revision = f"@{self.hf_revision}" if self.hf_revision else ""
        return f"hf://{self.hf_repo}/{self.hf_filename}{revision}"

    def to_manifest(self) -> Union[str, dict[str, str]]:
        """The source as written in the manifest."""
        if self.url:
            return self.url
        out = {"hf_repo": str(self.hf_repo), "hf_filename": str(self.hf_filename)}
        if self.hf_revision:
            out["hf_revision"] = self.hf_revision
        return out


@dataclass(frozen=True)
class Evaluation:
    """A top-1 accuracy (percent) and the command that measured it."""

    top1: float
    command: str


@dataclass(frozen=True)
class ZooEntry:
    """One model of the manifest (its fields: ``zoo/README.md``, "Manifest schema")."""

    name: str
    method: str
    backbone: BackboneSpec
    dataset: str
    epochs: int
    views: int
    size: int
    sha256: str
    format: str
    evaluation: dict[str, Evaluation] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    file: Optional[str] = None
    sources: tuple[Source, ...] = ()

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype the weights are stored in."""
        return FORMATS[self.format]

    @property
    def cache_name(self) -> str:
        """The file name of the entry in the download cache."""
        return f"{self.name}-{self.sha256[:12]}.safetensors"

    def to_manifest(self) -> dict[str, Any]:
        """The entry as written in the manifest (field order of the schema)."""
        out: dict[str, Any] = {
            "name": self.name,
            "method": self.method,
            "backbone": self.backbone.to_manifest(),
            "dataset": self.dataset,
            "epochs": self.epochs,
            "views": self.views,
            "evaluation": {
                k: {"top1": v.top1, "command": v.command} for k, v in self.evaluation.items()
            },
        }
        if self.file is not None:
            out["file"] = self.file
        out.update(size=self.size, sha256=self.sha256, format=self.format)
        out["sources"] = [s.to_manifest() for s in self.sources]
        out["config"] = self.config
        return out


REQUIRED_FIELDS = tuple(
    f.name for f in fields(ZooEntry) if f.default is MISSING and f.default_factory is MISSING
)
OPTIONAL_FIELDS = tuple(f.name for f in fields(ZooEntry) if f.name not in REQUIRED_FIELDS)


def _where(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _require_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{where}: expected a non-empty string, got {value!r}.")
    return value


def _require_int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ManifestError(f"{where}: expected an integer >= {minimum}, got {value!r}.")
    return value


def require_mapping(value: Any, where: str) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else a :class:`ManifestError` naming ``where``."""
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where}: expected a mapping, got {type(value).__name__} ({value!r}).")
    return value


def check_keys(
    raw: Mapping[str, Any], where: str, required: Sequence[str], optional: Sequence[str] = ()
) -> None:
    """Rejects unknown and missing fields of ``raw``, listing the allowed ones."""
    unknown = sorted(str(k) for k in raw if k not in required and k not in optional)
    if unknown:
        allowed = ", ".join([*required, *optional])
        raise ManifestError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed fields: {allowed}."
        )
    missing = [k for k in required if k not in raw]
    if missing:
        raise ManifestError(f"{where}: missing required field(s) {', '.join(missing)}.")


def check_name(name: Any, where: str = "name") -> str:
    """Checks a model name (it becomes a file name): lowercase letters, digits, ``._-``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ManifestError(
            f"{where}: {name!r} is not a valid model name; use lowercase "
            "letters, digits, '.', '_' and '-', starting with a letter or digit."
        )
    return name


def check_sha256(value: Any, where: str = "sha256") -> str:
    """Checks a sha256 digest: 64 lowercase hexadecimal digits."""
    if not isinstance(value, str) or not _SHA256_RE.match(value):
        raise ManifestError(f"{where}: expected 64 lowercase hex digits, got {value!r}.")
    return value


def check_url(url: Any, where: str = "url") -> str:
    """Checks a download URL: ``https://``, or ``http://`` on a loopback host only."""
    if not isinstance(url, str):
        raise ManifestError(f"{where}: expected a URL string, got {url!r}.")
    parsed = urllib.parse.urlsplit(url)
    loopback = parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS
    if not parsed.netloc or (parsed.scheme != "https" and not loopback):
        raise ManifestError(
            f"{where}: {url!r} is not an https:// URL (http:// is accepted "
            f"only for the loopback hosts {', '.join(LOOPBACK_HOSTS)})."
        )
    return url


def parse_source(raw: Any, where: str) -> Source:
    """Validates one ``sources`` item: a URL or ``{hf_repo, hf_filename[, hf_revision]}``."""
    if isinstance(raw, str):
        return Source(url=check_url(raw, where))
    if not isinstance(raw, Mapping):
        raise ManifestError(
            f"{where}: expected an https:// URL or a mapping "
            f"{{hf_repo, hf_filename[, hf_revision]}}, got {raw!r}."
        )
    check_keys(raw, where, ("hf_repo", "hf_filename"), ("hf_revision",))
    revision = raw.get("hf_revision")
    return Source(
        hf_repo=_require_str(raw["hf_repo"], _where(where, "hf_repo")),
        hf_filename=_require_str(raw["hf_filename"], _where(where, "hf_filename")),
        hf_revision=None
        if revision is None
        else _require_str(revision, _where(where, "hf_revision")),
    )


def _parse_backbone(raw: Any, where: str) -> BackboneSpec:
    raw = require_mapping(raw, where)
    check_keys(raw, where, ("name",), ("kwargs", "cifar_stem"))
    name = _require_str(raw["name"], _where(where, "name"))
    kwargs = dict(require_mapping(raw.get("kwargs") or {}, _where(where, "kwargs")))
    cifar_stem = raw.get("cifar_stem", False)
    if not isinstance(cifar_stem, bool):
        raise ManifestError(
            f"{_where(where, 'cifar_stem')}: expected true or false, got {cifar_stem!r}."
        )
    if cifar_stem and not name.startswith("resnet"):
        raise ManifestError(
            f"{_where(where, 'cifar_stem')}: the CIFAR stem applies to "
            f"resnet backbones only, not {name!r}."
        )
    return BackboneSpec(name=name, kwargs=kwargs, cifar_stem=cifar_stem)


def _parse_evaluation(raw: Any, where: str) -> dict[str, Evaluation]:
    raw = require_mapping(raw or {}, where)
    check_keys(raw, where, (), EVALUATIONS)
    out = {}
    for kind, value in raw.items():
        here = _where(where, kind)
        value = require_mapping(value, here)
        check_keys(value, here, ("top1", "command"))
        top1 = value["top1"]
        if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 100:
            raise ManifestError(f"{here}.top1: expected a percentage in [0, 100], got {top1!r}.")
        out[kind] = Evaluation(
            top1=float(top1), command=_require_str(value["command"], f"{here}.command")
        )
    return out


def _check_relative_file(value: Any, where: str) -> str:
    value = _require_str(value, where)
    path = Path(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ManifestError(
            f"{where}: {value!r} must be a relative path inside the zoo "
            "directory (no absolute paths, no '..')."
        )
    return path.as_posix()


def parse_entry(raw: Any, where: str = "entry") -> ZooEntry:
    """Validates one manifest entry and returns it as a :class:`ZooEntry`.

    Raises:
        ManifestError: naming the entry and the offending field.
    """
    raw = require_mapping(raw, where)
    check_keys(raw, where, REQUIRED_FIELDS, OPTIONAL_FIELDS)
    name = check_name(raw["name"], _where(where, "name"))
    where = f"{where} ({name})"
    fmt = raw["format"]
    if fmt not in FORMATS:
        raise ManifestError(
            f"{_where(where, 'format')}: {fmt!r} is not supported; allowed: {', '.join(FORMATS)}."
        )
    sources = raw.get("sources") or []
    if not isinstance(sources, list):
        raise ManifestError(f"{_where(where, 'sources')}: expected a list, got {sources!r}.")
    file = raw.get("file")
    entry = ZooEntry(
        name=name,
        method=_require_str(raw["method"], _where(where, "method")),
        backbone=_parse_backbone(raw["backbone"], _where(where, "backbone")),
        dataset=_require_str(raw["dataset"], _where(where, "dataset")),
        epochs=_require_int(raw["epochs"], _where(where, "epochs"), 1),
        views=_require_int(raw["views"], _where(where, "views"), 1),
        size=_require_int(raw["size"], _where(where, "size"), 1),
        sha256=check_sha256(raw["sha256"], _where(where, "sha256")),
        format=fmt,
        evaluation=_parse_evaluation(raw.get("evaluation"), _where(where, "evaluation")),
        config=dict(require_mapping(raw.get("config") or {}, _where(where, "config"))),
        file=None if file is None else _check_relative_file(file, _where(where, "file")),
        sources=tuple(
            parse_source(s, f"{_where(where, 'sources')}[{i}]") for i, s in enumerate(sources)
        ),
    )
    if entry.file is None and not entry.sources:
        raise ManifestError(f"{where}: needs a shipped 'file' or at least one of 'sources'.")
    return entry
