"""A zoo manifest entry: its fields (:class:`ZooEntry`, in the manifest's order; documented once,
in ``zoo/README.md``) and their validation, each error naming the entry and the field."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from solo_clamp.errors import ManifestError

FORMATS = {"safetensors-fp16": torch.float16, "safetensors-fp32": torch.float32}
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


SourceItem = Union[str, Mapping[str, str]]
"""A ``sources`` item as the manifest writes it: a URL or ``{hf_repo, hf_filename[,
hf_revision]}``."""


def source_name(source: SourceItem) -> str:
    """A source as messages name it: its URL, or ``hf://<repo>/<filename>[@<revision>]``."""
    if isinstance(source, str):
        return source
    revision = f"@{source['hf_revision']}" if source.get("hf_revision") else ""
    return f"hf://{source['hf_repo']}/{source['hf_filename']}{revision}"


@dataclass(frozen=True)
class Evaluation:
    """A top-1 accuracy (percent) and the command that measured it."""

    top1: float
    command: str


@dataclass(frozen=True, kw_only=True)
class ZooEntry:
    """One model of the manifest (its fields: ``zoo/README.md``, "Manifest schema")."""

    name: str
    method: str
    backbone: BackboneSpec
    dataset: str
    epochs: int
    views: int
    evaluation: dict[str, Evaluation] = field(default_factory=dict)
    file: Optional[str] = None
    size: int
    sha256: str
    format: str
    sources: tuple[SourceItem, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def cache_name(self) -> str:
        """The file name of the entry in the download cache."""
        return f"{self.name}-{self.sha256[:12]}.safetensors"

    def to_manifest(self) -> dict[str, Any]:
        """The entry as the manifest writes it."""
        out = asdict(self)
        if self.file is None:
            del out["file"]
        return out


REQUIRED_FIELDS = tuple(
    f.name for f in fields(ZooEntry) if f.default is MISSING and f.default_factory is MISSING
)
OPTIONAL_FIELDS = tuple(f.name for f in fields(ZooEntry) if f.name not in REQUIRED_FIELDS)


def checked_mapping(
    value: Any, where: str, required: Sequence[str] = (), optional: Optional[Sequence[str]] = None
) -> Mapping[str, Any]:
    """``value``, checked to be a mapping with the ``required`` keys and, unless ``optional``
    is None (any keys), no others."""
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where}: expected a mapping, got {type(value).__name__} ({value!r}).")
    allowed = [*required, *(optional or ())]
    unknown = sorted(str(k) for k in value if k not in allowed)
    if optional is not None and unknown:
        raise ManifestError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed fields: {', '.join(allowed)}."
        )
    missing = [k for k in required if k not in value]
    if missing:
        raise ManifestError(f"{where}: missing required field(s) {', '.join(missing)}.")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{where}: expected a non-empty string, got {value!r}.")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ManifestError(f"{where}: expected an integer >= 1, got {value!r}.")
    return value


def check_name(name: Any, where: str = "name") -> str:
    """A model name (it becomes a file name): lowercase letters, digits, ``._-``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ManifestError(
            f"{where}: {name!r} is not a valid model name; use lowercase letters, digits, "
            "'.', '_' and '-', starting with a letter or digit."
        )
    return name


def check_sha256(value: Any, where: str = "sha256") -> str:
    """A sha256 digest: 64 lowercase hexadecimal digits."""
    if not isinstance(value, str) or not _SHA256_RE.match(value):
        raise ManifestError(f"{where}: expected 64 lowercase hex digits, got {value!r}.")
    return value


def parse_source(raw: Any, where: str) -> SourceItem:
    """One ``sources`` item: an ``https://`` URL (``http://`` on a loopback host only) or
    ``{hf_repo, hf_filename[, hf_revision]}``."""
    if isinstance(raw, str):
        url = urllib.parse.urlsplit(raw)
        loopback = url.scheme == "http" and url.hostname in LOOPBACK_HOSTS
        if not url.netloc or (url.scheme != "https" and not loopback):
            raise ManifestError(
                f"{where}: {raw!r} is not an https:// URL (http:// is accepted only for the "
                f"loopback hosts {', '.join(LOOPBACK_HOSTS)})."
            )
        return raw
    if not isinstance(raw, Mapping):
        raise ManifestError(
            f"{where}: expected an https:// URL or a mapping "
            f"{{hf_repo, hf_filename[, hf_revision]}}, got {raw!r}."
        )
    raw = checked_mapping(raw, where, ("hf_repo", "hf_filename"), ("hf_revision",))
    given = {k: v for k, v in raw.items() if k != "hf_revision" or v is not None}  # null: main
    return {k: _text(v, f"{where}.{k}") for k, v in given.items()}


def _backbone(raw: Any, where: str) -> BackboneSpec:
    raw = checked_mapping(raw, where, ("name",), ("kwargs", "cifar_stem"))
    kwargs = dict(checked_mapping(raw.get("kwargs") or {}, f"{where}.kwargs"))
    spec = BackboneSpec(_text(raw["name"], f"{where}.name"), kwargs, raw.get("cifar_stem", False))
    if not isinstance(spec.cifar_stem, bool):
        raise ManifestError(f"{where}.cifar_stem: expected true or false, got {spec.cifar_stem!r}.")
    if spec.cifar_stem and not spec.name.startswith("resnet"):
        raise ManifestError(
            f"{where}.cifar_stem: the CIFAR stem applies to resnet backbones only, "
            f"not {spec.name!r}."
        )
    return spec


def _evaluation(raw: Any, where: str) -> dict[str, Evaluation]:
    out = {}
    for kind, value in checked_mapping(raw, where, (), EVALUATIONS).items():
        value = checked_mapping(value, f"{where}.{kind}", ("top1", "command"), ())
        top1 = value["top1"]
        if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 100:
            raise ManifestError(
                f"{where}.{kind}.top1: expected a percentage in [0, 100], got {top1!r}."
            )
        out[kind] = Evaluation(float(top1), _text(value["command"], f"{where}.{kind}.command"))
    return out


def _relative_file(value: Any, where: str) -> str:
    path = Path(_text(value, where))
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ManifestError(
            f"{where}: {value!r} must be a relative path inside the zoo directory "
            "(no absolute paths, no '..')."
        )
    return path.as_posix()


def _format(value: Any, where: str) -> str:
    if value not in tuple(FORMATS):
        raise ManifestError(f"{where}: {value!r} is not supported; allowed: {', '.join(FORMATS)}.")
    return value


def _sources(raw: Any, where: str) -> tuple[SourceItem, ...]:
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: expected a list, got {raw!r}.")
    return tuple(parse_source(item, f"{where}[{i}]") for i, item in enumerate(raw))


_FIELD_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "name": check_name,
    "method": _text,
    "backbone": _backbone,
    "dataset": _text,
    "epochs": _count,
    "views": _count,
    "evaluation": _evaluation,
    "file": _relative_file,
    "size": _count,
    "sha256": check_sha256,
    "format": _format,
    "sources": _sources,
    "config": lambda raw, where: dict(checked_mapping(raw, where)),
}


def parse_entry(raw: Any, where: str = "entry") -> ZooEntry:
    """Validates one manifest entry; a :class:`ManifestError` names the entry and the field
    (an optional field may be null: its default)."""
    raw = checked_mapping(raw, where, REQUIRED_FIELDS, OPTIONAL_FIELDS)
    where = f"{where} ({check_name(raw['name'], f'{where}.name')})"
    entry = ZooEntry(
        **{
            key: _FIELD_PARSERS[key](value, f"{where}.{key}")
            for key, value in raw.items()
            if value is not None or key in REQUIRED_FIELDS
        }
    )
    if entry.file is None and not entry.sources:
        raise ManifestError(f"{where}: needs a shipped 'file' or at least one of 'sources'.")
    return entry
