"""Verified, cached, locked downloads of a zoo entry's weights file, through pooch.

A shipped ``file`` resolves locally (verified, no network). Otherwise :func:`pooch.retrieve`
fetches it into the cache (``$SOLO_CLAMP_CACHE``, default ``pooch.os_cache("solo-clamp")``) as
``<name>-<sha256[:12]>.safetensors``, its sources tried in order:

* pooch checks ``known_hash="sha256:..."`` on a temporary file and moves it into place only
  when it matches; a file that fails is deleted, so the final name only holds verified bytes.
* :class:`ResumingDownloader` (pooch's :class:`~pooch.HTTPDownloader` plus a ``Range`` header)
  keeps the bytes of a cut download in ``<file>.part``; the next try, in this call or a later
  one, asks for the rest. A resumed file that fails the hash is fetched once more from byte 0.
* A lock file (``filelock``, a dependency of torch) serialises concurrent downloads of an entry:
  the ``.part`` file is written by the lock holder only.
* ``hf_repo`` sources go through ``huggingface_hub.hf_hub_download`` (the ``hub`` extra).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pooch
import requests
from filelock import FileLock, Timeout  # a dependency of torch

from solo_clamp.io import PathLike
from solo_clamp.version import __version__
from solo_clamp.zoo.errors import DownloadError, HashMismatchError, ZooError
from solo_clamp.zoo.index import IndexLike, lookup
from solo_clamp.zoo.manifest import Source, ZooEntry

CACHE_ENV = "SOLO_CLAMP_CACHE"
USER_AGENT = f"solo-clamp/{__version__}"
TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class TransientError(Exception):
    """A download stopped early (the ``.part`` file keeps what arrived): worth a retry."""


def sha256_file(path: PathLike) -> str:
    """The sha256 hex digest of a file."""
    return pooch.file_hash(str(path), alg="sha256")


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


def cache_dir(path: Optional[PathLike] = None) -> Path:
    """The download cache: ``path``, else ``$SOLO_CLAMP_CACHE``, else pooch's OS cache."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(pooch.os_cache("solo-clamp"))


class ResumingDownloader:
    """A pooch downloader that resumes: the bytes go to ``part``, appended from its length
    (``Range: bytes=N-``), and move to pooch's temporary file once all ``size`` arrived.

    Raises:
        HashMismatchError: the server announces another size than the manifest's.
        TransientError: the body ended early (``part`` keeps what arrived).
        requests.RequestException: as pooch's :class:`~pooch.HTTPDownloader` raises it.
    """

    def __init__(self, part: Path, size: int, *, progress: bool, timeout: float):
        self.part, self.size, self.progress, self.timeout = part, size, progress, timeout

    def __call__(self, url: str, output_file: str, pooch_: Any = None) -> None:
        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if 0 < offset < self.size:
            headers["Range"] = f"bytes={offset}-"
        try:
            with open(self.part, "ab") as fh:

                def check(response: requests.Response, *args: Any, **kwargs: Any) -> None:
                    if response.status_code not in (200, 206):
                        return
                    start = offset if response.status_code == 206 else 0
                    fh.truncate(start)  # a 200 answers with the whole file: start over
                    length = response.headers.get("Content-Length", "")
                    if length.isdigit() and start + int(length) != self.size:
                        raise HashMismatchError(
                            f"{url} serves {start + int(length)} bytes, the manifest says "
                            f"{self.size}."
                        )

                if offset != self.size:
                    pooch.HTTPDownloader(
                        progressbar=self.progress,
                        chunk_size=1 << 14,
                        timeout=self.timeout,
                        headers=headers,
                        hooks={"response": check},
                    )(url, fh, pooch_)
        except requests.HTTPError as err:
            if err.response is None or err.response.status_code != 416 or not offset:
                raise
            self.part.unlink()  # the server cannot continue our .part: from byte 0
            return self(url, output_file, pooch_)
        finally:
            if self.part.exists() and not self.part.stat().st_size:
                self.part.unlink()
        got = self.part.stat().st_size if self.part.exists() else 0
        if got < self.size:
            raise TransientError(f"the connection closed after {got} of {self.size} bytes")
        os.replace(self.part, output_file)


def _hf_downloader(source: Source) -> Callable[..., None]:
    """A pooch downloader copying a Hugging Face file (its own cache and resume)."""

    def download(url: str, output_file: str, pooch_: Any = None) -> None:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as err:
            raise DownloadError(
                "huggingface_hub is not installed: pip install 'solo-clamp[hub]'"
            ) from err
        local = hf_hub_download(
            repo_id=source.hf_repo, filename=source.hf_filename, revision=source.hf_revision
        )
        shutil.copyfile(local, output_file)

    return download


def _retrieve(url: str, entry: ZooEntry, final: Path, downloader: Callable[..., None]) -> None:
    """:func:`pooch.retrieve` into ``final``, its hash refusal as a :class:`HashMismatchError`."""
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{entry.sha256}",
            fname=final.name,
            path=final.parent,
            downloader=downloader,
        )
    except ValueError as err:  # pooch's refusal of the hash (it deleted the file)
        if isinstance(err, ZooError):
            raise
        raise HashMismatchError(str(err)) from err


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return err.response.status_code >= 500 or err.response.status_code in (408, 429)
    return isinstance(err, (TransientError, *TRANSIENT))


def _fetch_source(
    source: Source, entry: ZooEntry, final: Path, *, attempts: int, retry_wait: float, **kw: Any
) -> None:
    """Fills ``final`` from one source: transient errors are retried (resuming) up to
    ``attempts`` times, ``retry_wait`` seconds times the attempt number apart."""
    if source.url is None:
        return _retrieve(source.describe(), entry, final, _hf_downloader(source))
    part = final.with_name(final.name + ".part")
    downloader = ResumingDownloader(part, entry.size, **kw)
    attempt, fresh_retry = 1, False
    while True:
        resumed = part.exists()
        try:
            return _retrieve(source.url, entry, final, downloader)
        except HashMismatchError:
            part.unlink(missing_ok=True)
            if not resumed or fresh_retry:
                raise
            fresh_retry = True  # the stale prefix may be the culprit: once more from byte 0
        except Exception as err:
            if attempt >= attempts or not _is_retryable(err):
                raise
            time.sleep(retry_wait * attempt)
            attempt += 1


def describe_error(err: BaseException) -> str:
    """A one-line description of a source's error, for the listing of failed sources."""
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTPError: HTTP {err.response.status_code} {err.response.reason}"
    text = (str(err) or type(err).__name__).splitlines()[0]
    return text if isinstance(err, ZooError) else f"{type(err).__name__}: {text}"


def _download_entry(entry: ZooEntry, final: Path, **kw: Any) -> None:
    """Fills ``final`` from the entry's sources in order (the caller holds the lock)."""
    errors: list[str] = []
    only_mismatches = True
    for source in entry.sources:
        try:
            return _fetch_source(source, entry, final, **kw)
        except Exception as err:  # noqa: BLE001 - every source's error is reported
            only_mismatches &= isinstance(err, HashMismatchError)
            errors.append(f"{source.describe()}: {describe_error(err)}")
    listing = "\n  ".join(errors)
    if only_mismatches:
        raise HashMismatchError(
            f"{entry.name}: the downloaded file does not match the manifest (size {entry.size}, "
            f"sha256 {entry.sha256}); nothing was kept:\n  {listing}"
        )
    part = final.with_name(final.name + ".part")
    partial = f" (partial data kept in {part} for a later resume)" if part.exists() else ""
    raise DownloadError(f"{entry.name}: every source failed{partial}:\n  {listing}")


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


def download(
    name: Union[str, ZooEntry],
    index: IndexLike = None,
    *,
    cache: Optional[PathLike] = None,
    progress: bool = True,
    timeout: float = 30.0,
    attempts: int = 3,
    retry_wait: float = 1.0,
    lock_timeout: float = 3600.0,
) -> Path:
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
    idx, entry = lookup(name, index)
    shipped = idx.shipped_path(entry)
    if shipped is not None:
        verify_file(shipped, entry.sha256, entry.size)
        return shipped
    if not entry.sources:
        raise DownloadError(
            f"{entry.name}: its shipped file {idx.root / str(entry.file)} is "
            "missing and the entry has no sources."
        )
    folder = cache_dir(cache)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / entry.cache_name
    if _verified(final, entry):
        return final
    lock = FileLock(str(final) + ".lock", timeout=lock_timeout)
    try:
        with lock:
            if not _verified(final, entry):
                _download_entry(
                    entry,
                    final,
                    progress=progress,
                    timeout=timeout,
                    attempts=attempts,
                    retry_wait=retry_wait,
                )
    except Timeout as err:
        raise DownloadError(
            f"{entry.name}: another download holds {lock.lock_file} since "
            f"more than {lock_timeout:.0f} s."
        ) from err
    return final
