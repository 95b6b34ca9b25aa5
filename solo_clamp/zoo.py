"""Model zoo: a manifest of pretrained backbones, verified downloads, loading and publishing.

The manifest is one YAML file (``zoo/index.yaml`` in the repository, documented in
``zoo/README.md``)::

    version: 1
    models:
      - name: clamp-mnist-resnet18          # [a-z0-9][a-z0-9._-]*
        method: clamp
        backbone: {name: resnet18, kwargs: {}, cifar_stem: false}
        dataset: mnist
        epochs: 100
        views: 4
        evaluation:                         # optional; knn and/or linear
          knn: {top1: 98.9, command: "solo-clamp knn ..."}
        config: {...}                       # the training cfg (args.json)
        file: clamp-mnist-resnet18.safetensors   # optional, relative to the manifest
        size: 22360000                      # bytes
        sha256: 64 hex digits
        sources:                            # optional when ``file`` is shipped
          - https://example.org/clamp-mnist-resnet18.safetensors
          - {hf_repo: org/repo, hf_filename: clamp-mnist-resnet18.safetensors}
        format: safetensors-fp16            # or safetensors-fp32

Weights are backbone-only safetensors files (never pickles). A shipped ``file`` resolves
locally (verified, no network); otherwise the file is downloaded into the cache
(``$SOLO_CLAMP_CACHE``, default ``pooch.os_cache("solo-clamp")``):

* ``<cache>/<name>-<sha256[:12]>.safetensors.part`` receives the bytes. An interrupted
  download leaves it in place and the next attempt resumes it with an HTTP ``Range``
  request (pooch cannot resume, hence the small urllib downloader below).
* The ``.part`` file is hashed before ``os.replace`` moves it into place, so the final name
  only ever holds verified bytes; a file that fails the check is deleted.
* A lock file (``filelock``, a dependency of torch) serialises concurrent downloads of the
  same entry; the ``.part`` name is fixed (so it can be resumed) and written by the lock
  holder only, while Hugging Face copies go through unique temporary names.

solo-learn is imported only by :func:`build_backbone` (and so by :func:`load`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import pooch
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from solo_clamp.version import __version__

SCHEMA_VERSION = 1
FORMATS: dict[str, torch.dtype] = {
    "safetensors-fp16": torch.float16,
    "safetensors-fp32": torch.float32,
}
DTYPES: dict[str, str] = {"fp16": "safetensors-fp16", "fp32": "safetensors-fp32"}
EVALUATIONS = ("knn", "linear")
REQUIRED_FIELDS = ("name", "method", "backbone", "dataset", "epochs", "views", "size",
                   "sha256", "format")
OPTIONAL_FIELDS = ("evaluation", "config", "file", "sources")
CIFAR_DATASETS = ("cifar10", "cifar100")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
INDEX_ENV = "SOLO_CLAMP_ZOO_INDEX"
CACHE_ENV = "SOLO_CLAMP_CACHE"
USER_AGENT = f"solo-clamp/{__version__}"
CHUNK_BYTES = 1 << 16
INDEX_HEADER = (
    "# solo-clamp model zoo manifest: schema in zoo/README.md.\n"
    "# Add a model with: solo-clamp zoo publish CKPT --name NAME [--dtype fp16] ...\n"
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_EPOCH_RE = re.compile(r"-ep=(\d+)\.ckpt$")
PathLike = Union[str, os.PathLike]


class ZooError(Exception):
    """A user-facing zoo error (the CLI prints it and exits with status 2)."""


class ManifestError(ZooError, ValueError):
    """The manifest (or a value meant for it) is invalid; the message names the field."""


class UnknownModelError(ZooError, LookupError):
    """No manifest entry has the requested name; the message lists the available names."""


class DownloadError(ZooError):
    """Every source of an entry failed; the message lists each source and its error."""


class HashMismatchError(DownloadError):
    """A file's sha256 (or size) differs from the manifest's; the bad file is not kept."""


class _TransientError(Exception):
    """A download stopped early in a way worth retrying (resuming) from the same source."""


# --------------------------------------------------------------------------- manifest


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
class BackboneSpec:
    """How to rebuild the backbone: solo-learn's name and kwargs, and the CIFAR stem flag."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    cifar_stem: bool = False


@dataclass(frozen=True)
class Evaluation:
    """A top-1 accuracy (percent) and the command that measured it."""

    top1: float
    command: str


@dataclass(frozen=True)
class ZooEntry:
    """One model of the manifest (see the module docstring for the fields)."""

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
            "backbone": {"name": self.backbone.name, "kwargs": dict(self.backbone.kwargs),
                         "cifar_stem": self.backbone.cifar_stem},
            "dataset": self.dataset,
            "epochs": self.epochs,
            "views": self.views,
            "evaluation": {k: {"top1": v.top1, "command": v.command}
                           for k, v in self.evaluation.items()},
        }
        if self.file is not None:
            out["file"] = self.file
        out.update(size=self.size, sha256=self.sha256, format=self.format)
        out["sources"] = [s.to_manifest() for s in self.sources]
        out["config"] = self.config
        return out


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


def _require_mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where}: expected a mapping, got {type(value).__name__} "
                            f"({value!r}).")
    return value


def _check_keys(raw: Mapping[str, Any], where: str, required: Sequence[str],
                optional: Sequence[str] = ()) -> None:
    unknown = sorted(str(k) for k in raw if k not in required and k not in optional)
    if unknown:
        allowed = ", ".join([*required, *optional])
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}; "
                            f"allowed fields: {allowed}.")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ManifestError(f"{where}: missing required field(s) {', '.join(missing)}.")


def check_name(name: Any, where: str = "name") -> str:
    """Checks a model name (it becomes a file name): lowercase letters, digits, ``._-``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ManifestError(f"{where}: {name!r} is not a valid model name; use lowercase "
                            "letters, digits, '.', '_' and '-', starting with a letter or digit.")
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
        raise ManifestError(f"{where}: {url!r} is not an https:// URL (http:// is accepted "
                            f"only for the loopback hosts {', '.join(LOOPBACK_HOSTS)}).")
    return url


def _parse_source(raw: Any, where: str) -> Source:
    if isinstance(raw, str):
        return Source(url=check_url(raw, where))
    if not isinstance(raw, Mapping):
        raise ManifestError(f"{where}: expected an https:// URL or a mapping "
                            f"{{hf_repo, hf_filename[, hf_revision]}}, got {raw!r}.")
    _check_keys(raw, where, ("hf_repo", "hf_filename"), ("hf_revision",))
    revision = raw.get("hf_revision")
    return Source(
        hf_repo=_require_str(raw["hf_repo"], _where(where, "hf_repo")),
        hf_filename=_require_str(raw["hf_filename"], _where(where, "hf_filename")),
        hf_revision=None if revision is None else _require_str(revision,
                                                               _where(where, "hf_revision")),
    )


def _parse_backbone(raw: Any, where: str) -> BackboneSpec:
    raw = _require_mapping(raw, where)
    _check_keys(raw, where, ("name",), ("kwargs", "cifar_stem"))
    name = _require_str(raw["name"], _where(where, "name"))
    kwargs = dict(_require_mapping(raw.get("kwargs") or {}, _where(where, "kwargs")))
    cifar_stem = raw.get("cifar_stem", False)
    if not isinstance(cifar_stem, bool):
        raise ManifestError(f"{_where(where, 'cifar_stem')}: expected true or false, "
                            f"got {cifar_stem!r}.")
    if cifar_stem and not name.startswith("resnet"):
        raise ManifestError(f"{_where(where, 'cifar_stem')}: the CIFAR stem applies to "
                            f"resnet backbones only, not {name!r}.")
    return BackboneSpec(name=name, kwargs=kwargs, cifar_stem=cifar_stem)


def _parse_evaluation(raw: Any, where: str) -> dict[str, Evaluation]:
    raw = _require_mapping(raw or {}, where)
    _check_keys(raw, where, (), EVALUATIONS)
    out = {}
    for kind, value in raw.items():
        here = _where(where, kind)
        value = _require_mapping(value, here)
        _check_keys(value, here, ("top1", "command"))
        top1 = value["top1"]
        if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 100:
            raise ManifestError(f"{here}.top1: expected a percentage in [0, 100], got {top1!r}.")
        out[kind] = Evaluation(top1=float(top1), command=_require_str(value["command"],
                                                                      f"{here}.command"))
    return out


def _check_relative_file(value: Any, where: str) -> str:
    value = _require_str(value, where)
    path = Path(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise ManifestError(f"{where}: {value!r} must be a relative path inside the zoo "
                            "directory (no absolute paths, no '..').")
    return path.as_posix()


def parse_entry(raw: Any, where: str = "entry") -> ZooEntry:
    """Validates one manifest entry and returns it as a :class:`ZooEntry`.

    Raises:
        ManifestError: naming the entry and the offending field.
    """
    raw = _require_mapping(raw, where)
    _check_keys(raw, where, REQUIRED_FIELDS, OPTIONAL_FIELDS)
    name = check_name(raw["name"], _where(where, "name"))
    where = f"{where} ({name})"
    fmt = raw["format"]
    if fmt not in FORMATS:
        raise ManifestError(f"{_where(where, 'format')}: {fmt!r} is not supported; "
                            f"allowed: {', '.join(FORMATS)}.")
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
        config=dict(_require_mapping(raw.get("config") or {}, _where(where, "config"))),
        file=None if file is None else _check_relative_file(file, _where(where, "file")),
        sources=tuple(_parse_source(s, f"{_where(where, 'sources')}[{i}]")
                      for i, s in enumerate(sources)),
    )
    if entry.file is None and not entry.sources:
        raise ManifestError(f"{where}: needs a shipped 'file' or at least one of 'sources'.")
    return entry


def default_index_path() -> Path:
    """``$SOLO_CLAMP_ZOO_INDEX``, else the repository's ``zoo/index.yaml``."""
    env = os.environ.get(INDEX_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "zoo" / "index.yaml"


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
        raise UnknownModelError(f"unknown zoo model {name!r} in {self.path}; "
                                f"available: {available}.")

    def shipped_path(self, entry: ZooEntry) -> Optional[Path]:
        """The shipped file of ``entry`` when it has one and it exists, else None."""
        if entry.file is None:
            return None
        path = self.root / entry.file
        return path if path.is_file() else None


IndexLike = Union[ZooIndex, PathLike, None]


def parse_index(data: Any, path: PathLike = "<manifest>") -> ZooIndex:
    """Validates a loaded manifest (``{version: 1, models: [...]}``; empty is allowed)."""
    path = Path(path)
    if data is None:
        data = {}
    data = _require_mapping(data, str(path))
    _check_keys(data, str(path), (), ("version", "models"))
    version = data.get("version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ManifestError(f"{path}: version: {version!r} is not supported "
                            f"(this solo-clamp reads version {SCHEMA_VERSION}).")
    models = data.get("models") or []
    if not isinstance(models, list):
        raise ManifestError(f"{path}: models: expected a list of entries, got {models!r}.")
    entries: dict[str, ZooEntry] = {}
    for i, raw in enumerate(models):
        entry = parse_entry(raw, f"{path}: models[{i}]")
        if entry.name in entries:
            raise ManifestError(f"{path}: models[{i}].name: duplicate model name "
                                f"{entry.name!r}.")
        entries[entry.name] = entry
    return ZooIndex(path=path, entries=entries)


def load_index(index: IndexLike = None) -> ZooIndex:
    """Reads and validates a manifest: a path, an already-loaded index, or the default."""
    if isinstance(index, ZooIndex):
        return index
    path = Path(index).expanduser() if index is not None else default_index_path()
    if not path.is_file():
        raise ManifestError(f"no zoo manifest at {path}: pass --index PATH (index=...) or "
                            f"set ${INDEX_ENV}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML: {err}") from err
    return parse_index(data, path)


def write_index(index: ZooIndex) -> None:
    """Writes ``index`` to its path atomically (temporary file + ``os.replace``)."""
    data = {"version": SCHEMA_VERSION,
            "models": [e.to_manifest() for e in index.entries.values()]}
    text = INDEX_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    _atomic_write_bytes(index.path, text.encode("utf-8"))


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- verification


def sha256_file(path: PathLike) -> str:
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: PathLike, sha256: str, size: Optional[int] = None) -> None:
    """Checks a file's size (when given) and sha256.

    Raises:
        HashMismatchError: naming the file, the expected and the actual values.
    """
    actual_size = os.path.getsize(path)
    if size is not None and actual_size != size:
        raise HashMismatchError(f"{path}: size {actual_size} bytes, expected {size}.")
    actual = sha256_file(path)
    if actual != sha256:
        raise HashMismatchError(f"{path}: sha256 {actual}, expected {sha256}.")


# --------------------------------------------------------------------------- downloads


def cache_dir(path: Optional[PathLike] = None) -> Path:
    """The download cache: ``path``, else ``$SOLO_CLAMP_CACHE``, else pooch's OS cache."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(pooch.os_cache("solo-clamp"))


def _fetch_url(url: str, part: Path, size: int, *, progress: bool, timeout: float,
               desc: str) -> None:
    """Downloads ``url`` into ``part``, resuming from its current length (HTTP Range).

    Raises:
        HashMismatchError: the server serves more (or other) bytes than the manifest's size.
        _TransientError: the connection ended early (``part`` keeps what arrived).
        urllib.error.HTTPError, OSError, http.client.HTTPException: as urllib raises them.
    """
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        part.unlink()
        offset = 0
    if offset == size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            raise
        part.unlink()  # the server cannot continue our .part: start over
        return _fetch_url(url, part, size, progress=progress, timeout=timeout, desc=desc)
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: it sends the whole file
        elif offset:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink()
                raise _TransientError(f"unexpected Content-Range {content_range!r} for a "
                                      f"request from byte {offset}")
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and offset + int(length) != size:
            part.unlink(missing_ok=True)
            raise HashMismatchError(f"{url} serves {offset + int(length)} bytes, the manifest "
                                    f"says {size}.")
        written = offset
        with open(part, "ab" if offset else "wb") as fh, tqdm(
            total=size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, disable=not progress, leave=False,
        ) as bar:
            while chunk := response.read(CHUNK_BYTES):
                written += len(chunk)
                if written > size:
                    fh.close()
                    part.unlink()
                    raise HashMismatchError(f"{url} serves more than the manifest's {size} "
                                            "bytes.")
                fh.write(chunk)
                bar.update(len(chunk))
    if written < size:
        raise _TransientError(f"connection closed after {written} of {size} bytes")


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    return isinstance(err, (_TransientError, OSError, http.client.HTTPException))


def _fetch_url_with_retries(url: str, part: Path, entry: ZooEntry, *, progress: bool,
                            timeout: float, attempts: int, retry_wait: float) -> None:
    for attempt in range(1, attempts + 1):
        try:
            _fetch_url(url, part, entry.size, progress=progress, timeout=timeout,
                       desc=entry.name)
            return
        except Exception as err:
            if attempt == attempts or not _is_retryable(err):
                raise
            time.sleep(retry_wait * attempt)


def _fetch_hf(source: Source, part: Path, cache: Path) -> None:
    """Downloads a Hugging Face file (its own cache, resume and progress bar) into ``part``."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise DownloadError("huggingface_hub is not installed: pip install "
                            "'solo-clamp[hub]'") from err
    local = hf_hub_download(repo_id=source.hf_repo, filename=source.hf_filename,
                            revision=source.hf_revision)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{part.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(local, tmp)
        os.replace(tmp, part)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _describe_error(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, urllib.error.HTTPError):
        text = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, urllib.error.URLError):
        text = f"{err.reason}"
    return f"{type(err).__name__}: {text}" if not isinstance(err, ZooError) else text


def _download_entry(entry: ZooEntry, final: Path, *, progress: bool, timeout: float,
                    attempts: int, retry_wait: float) -> None:
    """Fills ``final`` from the entry's sources in order (the caller holds the lock)."""
    part = final.with_name(final.name + ".part")
    errors: list[str] = []
    only_mismatches = True
    for source in entry.sources:
        for fresh_retry in (False, True):
            resumed = part.exists()
            try:
                if source.url:
                    _fetch_url_with_retries(source.url, part, entry, progress=progress,
                                            timeout=timeout, attempts=attempts,
                                            retry_wait=retry_wait)
                else:
                    _fetch_hf(source, part, final.parent)
                verify_file(part, entry.sha256, entry.size)
            except HashMismatchError as err:
                part.unlink(missing_ok=True)
                if resumed and not fresh_retry:
                    continue  # the stale prefix may be the culprit: once more from byte 0
                errors.append(f"{source.describe()}: {_describe_error(err)}")
                break
            except Exception as err:  # noqa: BLE001 - every source error is reported
                only_mismatches = False
                errors.append(f"{source.describe()}: {_describe_error(err)}")
                break
            os.replace(part, final)
            return
    listing = "\n  ".join(errors)
    if only_mismatches:
        raise HashMismatchError(f"{entry.name}: the downloaded file does not match the "
                                f"manifest (size {entry.size}, sha256 {entry.sha256}); "
                                f"nothing was kept:\n  {listing}")
    partial = f" (partial data kept in {part} for a later resume)" if part.exists() else ""
    raise DownloadError(f"{entry.name}: every source failed{partial}:\n  {listing}")


def download(name: Union[str, ZooEntry], index: IndexLike = None, *,
             cache: Optional[PathLike] = None, progress: bool = True, timeout: float = 30.0,
             attempts: int = 3, retry_wait: float = 1.0, lock_timeout: float = 3600.0) -> Path:
    """The verified local weights file of a zoo model, downloading it when needed.

    A shipped file (``file`` beside the manifest) is verified and returned without any
    network access. Otherwise the cached copy is returned when it verifies; else the
    sources are tried in order (``attempts`` tries each, resuming with HTTP Range).

    Raises:
        UnknownModelError: ``name`` is not in the manifest (lists the available names).
        HashMismatchError: a shipped file, or every downloaded copy, fails the sha256 check.
        DownloadError: every source failed (lists each source and its error).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts!r}.")
    idx = load_index(index)
    entry = idx.get(name) if isinstance(name, str) else name
    shipped = idx.shipped_path(entry)
    if shipped is not None:
        verify_file(shipped, entry.sha256, entry.size)
        return shipped
    if not entry.sources:
        raise DownloadError(f"{entry.name}: its shipped file {idx.root / str(entry.file)} is "
                            "missing and the entry has no sources.")
    folder = cache_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / entry.cache_name
    if _verified(final, entry):
        return final
    from filelock import FileLock, Timeout  # a dependency of torch

    lock = FileLock(str(final) + ".lock", timeout=lock_timeout)
    try:
        with lock:
            if not _verified(final, entry):
                _download_entry(entry, final, progress=progress, timeout=timeout,
                                attempts=attempts, retry_wait=retry_wait)
    except Timeout as err:
        raise DownloadError(f"{entry.name}: another download holds {lock.lock_file} since "
                            f"more than {lock_timeout:.0f} s.") from err
    return final


def _verified(path: Path, entry: ZooEntry) -> bool:
    """True when ``path`` holds the entry's bytes; a corrupted copy is deleted."""
    if not path.is_file():
        return False
    try:
        verify_file(path, entry.sha256, entry.size)
    except HashMismatchError as err:
        warnings.warn(f"removing a corrupted cached file: {err}", stacklevel=3)
        path.unlink(missing_ok=True)
        return False
    return True


# --------------------------------------------------------------------------- loading


def read_weights(path: PathLike, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """Reads a safetensors weights file (no pickle), casting floating tensors to ``dtype``."""
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise ZooError(f"{path}: not a readable safetensors file: {err}") from err
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    return state


def build_backbone(spec: BackboneSpec, method: str = "clamp") -> torch.nn.Module:
    """Builds a solo-learn backbone as ``BaseMethod`` does: ``fc`` replaced by Identity for
    resnets, and the CIFAR stem (3x3 conv, stride 1, padding 2; no max-pool) when flagged.

    Raises:
        ModuleNotFoundError: solo-learn is not installed.
        ZooError: the backbone name is unknown to solo-learn (lists the known ones).
    """
    from solo_clamp import SOLO_MISSING_MESSAGE, solo_available

    if not solo_available():
        raise ModuleNotFoundError(SOLO_MISSING_MESSAGE, name="solo")
    from solo.methods.base import BaseMethod

    builders = BaseMethod._BACKBONES
    if spec.name not in builders:
        raise ZooError(f"backbone.name: {spec.name!r} is not a solo-learn backbone; "
                       f"known: {', '.join(sorted(builders))}.")
    backbone = builders[spec.name](method, **dict(spec.kwargs))
    if spec.name.startswith("resnet"):
        backbone.fc = torch.nn.Identity()
        if spec.cifar_stem:
            backbone.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2,
                                             bias=False)
            backbone.maxpool = torch.nn.Identity()
    return backbone


def load(name: Union[str, ZooEntry], index: IndexLike = None, *,
         cache: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu",
         dtype: torch.dtype = torch.float32, progress: bool = True) -> torch.nn.Module:
    """A zoo model's backbone with its weights, in eval mode, ready for feature extraction.

    Example::

        backbone = solo_clamp.zoo.load("clamp-mnist-resnet18")
        feats = backbone(images)  # (N, features_dim)
    """
    idx = load_index(index)
    entry = idx.get(name) if isinstance(name, str) else name
    path = download(entry, idx, cache=cache, progress=progress)
    backbone = build_backbone(entry.backbone, entry.method)
    state = read_weights(path, dtype=dtype)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ZooError(f"{entry.name}: the weights do not fit backbone {entry.backbone.name} "
                       f"(cifar_stem={entry.backbone.cifar_stem}): {err}") from err
    return backbone.to(device=device, dtype=dtype).eval()


# --------------------------------------------------------------------------- publishing


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """:func:`solo_clamp.checkpoints.load_checkpoint`, with its errors as :class:`ZooError`."""
    from solo_clamp.checkpoints import CheckpointError
    from solo_clamp.checkpoints import load_checkpoint as load_safely

    try:
        return load_safely(path)
    except CheckpointError as err:
        raise ZooError(str(err)) from err


def backbone_state(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype,
                   where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The ``backbone.*`` tensors without the prefix, floating ones cast to ``dtype``."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.") and isinstance(value, torch.Tensor):
            value = value.detach().to("cpu")
            if value.is_floating_point():  # checked before the cast: fp16 math is slow on CPU
                limit = torch.finfo(dtype).max
                if value.numel() and not (torch.isfinite(value).all()
                                          and value.abs().amax() <= limit):
                    raise ZooError(f"{where}: {key} has values that are not finite in {dtype} "
                                   "(publish with --dtype fp32).")
                value = value.to(dtype)
            out[key[len("backbone."):]] = value.clone().contiguous()
    if not out:
        prefixes = sorted({k.split(".", 1)[0] for k in state_dict})
        raise ZooError(f"{where}: no 'backbone.*' weights; the state_dict has: "
                       f"{', '.join(prefixes) or 'nothing'}.")
    return out


def _cfg_get(cfg: Mapping[str, Any], dotted: str, where: Path) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ZooError(f"{where}: missing '{dotted}' (a solo-learn args.json has it).")
        node = node[part]
    return node


def _views(cfg: Mapping[str, Any]) -> int:
    data = cfg.get("data") or {}
    views = int(data.get("num_large_crops") or 0) + int(data.get("num_small_crops") or 0)
    if views < 1:
        views = sum(int(a.get("num_crops", 0)) for a in cfg.get("augmentations") or [])
    return max(views, 1)


def _epochs(ckpt_path: Path, cfg: Mapping[str, Any]) -> int:
    """solo-learn names checkpoints ``...-ep=N.ckpt`` with N the 0-based epoch just ended."""
    match = _EPOCH_RE.search(ckpt_path.name)
    if match:
        return int(match.group(1)) + 1
    return int(cfg.get("max_epochs") or 1)


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def publish(ckpt: PathLike, name: str, index: IndexLike = None, *,
            out_dir: Optional[PathLike] = None, dtype: str = "fp16",
            args_path: Optional[PathLike] = None, epochs: Optional[int] = None,
            evaluation: Optional[Mapping[str, Mapping[str, Any]]] = None,
            sources: Iterable[Union[str, Mapping[str, str]]] = (), overwrite: bool = False,
            check: bool = True) -> ZooEntry:
    """Publishes a pretrain checkpoint: writes ``<name>.safetensors`` (backbone only) into
    ``out_dir`` (default: the manifest's folder) and adds the entry to the manifest.

    Args:
        ckpt: the Lightning ``.ckpt`` (or a run directory: its newest ``.ckpt``);
            ``args.json`` (solo-learn's saved cfg) sits beside it unless ``args_path`` is
            given.
        name: the model name.
        index: the manifest to update (created when missing); default :func:`default_index_path`.
        out_dir: where the weights go; outside the manifest's folder the entry gets no
            ``file`` and needs ``sources``.
        dtype: ``fp16`` or ``fp32``.
        epochs: epochs trained; default from the ``-ep=N`` checkpoint name, else max_epochs.
        evaluation: e.g. ``{"knn": {"top1": 97.5, "command": "solo-clamp knn ..."}}``.
        sources: download URLs / ``{hf_repo, hf_filename}`` mappings for the file.
        overwrite: replace an existing entry and weights file of the same name.
        check: rebuild the backbone with solo-learn (when installed) and load the weights
            strictly before anything is written.

    Raises:
        ManifestError, ZooError: with the offending field or file named.
    """
    name = check_name(name, "--name")
    if dtype not in DTYPES:
        raise ManifestError(f"--dtype: {dtype!r} is not supported; allowed: "
                            f"{', '.join(DTYPES)}.")
    from solo_clamp.checkpoints import resolve_checkpoint

    try:
        ckpt = resolve_checkpoint(ckpt)  # a run directory means its newest .ckpt
    except FileNotFoundError as err:
        raise ZooError(str(err)) from err
    args_file = Path(args_path) if args_path is not None else ckpt.parent / "args.json"
    if not args_file.is_file():
        raise ZooError(f"{args_file} not found: solo-learn writes args.json beside the "
                       "checkpoint (or pass --args PATH).")
    try:
        cfg = json.loads(args_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ZooError(f"{args_file}: not valid JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise ZooError(f"{args_file}: expected a JSON object (the training cfg).")
    cfg.pop("wandb_run_id", None)

    if isinstance(index, ZooIndex):
        index_path = index.path
    else:
        index_path = Path(index) if index is not None else default_index_path()
    idx = load_index(index_path) if index_path.is_file() else ZooIndex(index_path, {})
    if name in idx.entries and not overwrite:
        raise ManifestError(f"--name: {name!r} is already in {idx.path}; pass --overwrite to "
                            "replace it.")
    folder = Path(out_dir) if out_dir is not None else idx.root
    target = folder / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise ZooError(f"{target} exists; pass --overwrite to replace it.")
    sources = list(sources)
    inside = _is_inside(target, idx.root)
    if not inside and not sources:
        raise ManifestError(f"--out: {folder} is outside the manifest's folder {idx.root}, so "
                            "the file is not shipped: give --source URL or --hf-repo and "
                            "--hf-filename so the entry can be downloaded.")
    for i, source in enumerate(sources):
        _parse_source(source, f"--source[{i}]")

    fmt = DTYPES[dtype]
    state = backbone_state(load_checkpoint(ckpt)["state_dict"], FORMATS[fmt], str(ckpt))
    dataset = str(_cfg_get(cfg, "data.dataset", args_file))
    backbone_name = str(_cfg_get(cfg, "backbone.name", args_file))
    spec = BackboneSpec(
        name=backbone_name,
        kwargs=dict((cfg.get("backbone") or {}).get("kwargs") or {}),
        cifar_stem=backbone_name.startswith("resnet") and dataset in CIFAR_DATASETS,
    )
    method = str(_cfg_get(cfg, "method", args_file))
    if check:
        _check_loads(spec, method, state)

    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"name": name, "method": method, "backbone": backbone_name, "format": fmt,
                "dataset": dataset, "solo_clamp_version": __version__}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)

    raw = {
        "name": name, "method": method,
        "backbone": {"name": spec.name, "kwargs": spec.kwargs, "cifar_stem": spec.cifar_stem},
        "dataset": dataset,
        "epochs": epochs if epochs is not None else _epochs(ckpt, cfg),
        "views": _views(cfg),
        "evaluation": dict(evaluation or {}),
        "config": cfg,
        "size": target.stat().st_size,
        "sha256": sha256_file(target),
        "format": fmt,
        "sources": sources,
    }
    if inside:
        raw["file"] = target.resolve().relative_to(idx.root.resolve()).as_posix()
    try:
        entry = parse_entry(raw, f"entry {name!r}")
    except ManifestError:
        target.unlink(missing_ok=True)
        raise
    entries = dict(idx.entries)
    entries[name] = entry
    write_index(ZooIndex(idx.path, entries))
    return entry


def _check_loads(spec: BackboneSpec, method: str, state: Mapping[str, torch.Tensor]) -> None:
    from solo_clamp import solo_available

    if not solo_available():
        warnings.warn("solo-learn is not installed: the published weights were not test-loaded.",
                      stacklevel=3)
        return
    backbone = build_backbone(spec, method)
    try:
        backbone.load_state_dict({k: v.float() if v.is_floating_point() else v
                                  for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        raise ZooError(f"the checkpoint's backbone does not load into {spec.name} "
                       f"(cifar_stem={spec.cifar_stem}): {err}") from err


def weights_metadata(path: PathLike) -> dict[str, str]:
    """The metadata stored in a safetensors header (written by :func:`publish`)."""
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def find_by_sha256(index: ZooIndex, sha256: str) -> Optional[ZooEntry]:
    """The entry whose file has this sha256, if any."""
    return next((e for e in index.entries.values() if e.sha256 == sha256), None)


__all__ = [
    "BackboneSpec", "DownloadError", "Evaluation", "HashMismatchError", "ManifestError",
    "Source", "UnknownModelError", "ZooEntry", "ZooError", "ZooIndex", "backbone_state",
    "build_backbone", "cache_dir", "check_name", "default_index_path", "download",
    "find_by_sha256", "load", "load_checkpoint", "load_index", "parse_entry", "parse_index",
    "publish", "read_weights", "sha256_file", "verify_file", "weights_metadata", "write_index",
]
