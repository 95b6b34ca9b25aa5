"""A zoo manifest entry: its fields (:class:`ZooEntry`, in the manifest's order; documented once,
in ``zoo/README.md``) as a typed schema that pydantic checks, each error naming the entry and the
field (:func:`solo_clamp.validation.validated`)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import MISSING, asdict, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

import torch
from pydantic import AfterValidator, Discriminator, Field, StrictStr, Tag
from pydantic.dataclasses import dataclass
from typing_extensions import NotRequired, TypedDict

from solo_clamp.errors import ManifestError
from solo_clamp.validation import CLOSED, Count, Number, validated

FORMATS = {"safetensors-fp16": torch.float16, "safetensors-fp32": torch.float32}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _model_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(
            "must be a model name: lowercase letters, digits, '.', '_' and '-', starting with "
            f"a letter or digit, got {name!r}"
        )
    return name


def _non_blank(text: str) -> str:
    if not text.strip():
        raise ValueError(f"must be a non-empty string, got {text!r}")
    return text


def _https(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    if not parts.netloc or (parts.scheme != "https" and not loopback):
        raise ValueError(
            "must be an https:// URL (http:// is accepted only for the loopback hosts "
            f"{', '.join(LOOPBACK_HOSTS)}), got {url!r}"
        )
    return url


def _relative(path: str) -> str:
    if Path(path).is_absolute() or ".." in Path(path).parts or "\\" in path:
        raise ValueError(
            "must be a relative path inside the zoo directory (no absolute paths, no '..'), "
            f"got {path!r}"
        )
    return Path(path).as_posix()


Text = Annotated[StrictStr, AfterValidator(_non_blank)]
ModelName = Annotated[StrictStr, AfterValidator(_model_name)]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]


class HubSource(TypedDict):
    """A Hugging Face file: ``{hf_repo, hf_filename[, hf_revision]}`` (no revision: main)."""

    __pydantic_config__ = CLOSED  # type: ignore[misc]
    hf_repo: Text
    hf_filename: Text
    hf_revision: NotRequired[Optional[Text]]


SourceItem = Annotated[
    Union[
        Annotated[Annotated[StrictStr, AfterValidator(_https)], Tag("<url>")],
        Annotated[HubSource, Tag("<hub>")],
    ],
    Discriminator(lambda raw: "<url>" if isinstance(raw, str) else "<hub>"),
]
"""A ``sources`` item: an ``https://`` URL (``http://`` on a loopback host only) or a
:class:`HubSource`."""


def source_name(source: Union[str, Mapping[str, Any]]) -> str:
    """A source as messages name it: its URL, or ``hf://<repo>/<filename>[@<revision>]``."""
    if isinstance(source, str):
        return source
    revision = f"@{source['hf_revision']}" if source.get("hf_revision") else ""
    return f"hf://{source['hf_repo']}/{source['hf_filename']}{revision}"


@dataclass(frozen=True, config=CLOSED)
class BackboneSpec:
    """How to rebuild a backbone: solo-learn's name and kwargs, and the CIFAR stem flag
    (:func:`solo_clamp.backbones.build_backbone` builds it)."""

    name: Text
    kwargs: dict[str, Any] = field(default_factory=dict)
    cifar_stem: bool = Field(default=False, strict=True)

    def __post_init__(self) -> None:
        if self.cifar_stem and not self.name.startswith("resnet"):
            raise ValueError(
                f"must name a resnet with cifar_stem: true (a resnet stem), got {self.name!r}"
            )


@dataclass(frozen=True, config=CLOSED)
class Evaluation:
    """A top-1 accuracy (percent) and the command that measured it."""

    top1: Annotated[Number, Field(ge=0, le=100)]
    command: Text


@dataclass(frozen=True, kw_only=True, config=CLOSED)
class ZooEntry:
    """One model of the manifest (its fields: ``zoo/README.md``, "Manifest schema")."""

    name: ModelName
    method: Text
    backbone: BackboneSpec
    dataset: Text
    epochs: Count
    views: Count
    evaluation: dict[Literal["knn", "linear"], Evaluation] = field(default_factory=dict)
    file: Optional[Annotated[Text, AfterValidator(_relative)]] = None
    size: Count
    sha256: Sha256
    format: Literal["safetensors-fp16", "safetensors-fp32"]
    sources: tuple[SourceItem, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.file is None and not self.sources:
            raise ValueError("needs a shipped 'file' or at least one of 'sources'")

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


def check_name(name: Any, where: str = "name") -> str:
    """A model name (it becomes a file name): lowercase letters, digits, ``._-``."""
    return validated(ModelName, name, where, ManifestError)


def parse_entry(raw: Any, where: str = "entry") -> ZooEntry:
    """Validates one manifest entry; a :class:`ManifestError` names the entry and the field
    (an optional field may be null: its default)."""
    if isinstance(raw, Mapping):
        where = f"{where} ({check_name(raw.get('name'), f'{where}.name')})"
        raw = {k: v for k, v in raw.items() if v is not None or k in REQUIRED_FIELDS}
    return validated(ZooEntry, raw, where, ManifestError)
