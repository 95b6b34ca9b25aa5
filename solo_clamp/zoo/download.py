"""A zoo entry's weights file (safetensors, never a pickle): verified, cached, locked and
resumable downloads through pooch, and reading it.

:func:`pooch.retrieve` fetches each file into the cache with ``known_hash="sha256:..."``: it
writes a temporary file and moves it into place only when the hash matches, so the final name
holds verified bytes only. What pooch lacks is added here: resuming (its
:class:`~pooch.HTTPDownloader` with a ``Range`` header, the bytes of a cut download kept in
``<file>.part``), retries, several sources, a lock file (``filelock``, a dependency of torch)
around each entry's download, and Hugging Face sources (``huggingface_hub``, the hub extra).
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
import torch
from filelock import FileLock, Timeout
from requests.exceptions import ChunkedEncodingError
from safetensors.torch import load_file

from solo_clamp.errors import DownloadError, HashMismatchError, ZooError
from solo_clamp.io import PathLike
from solo_clamp.version import __version__
from solo_clamp.zoo.entry import SourceItem, ZooEntry, source_name
from solo_clamp.zoo.manifest import IndexLike, lookup

CACHE_ENV = "SOLO_CLAMP_CACHE"
USER_AGENT = f"solo-clamp/{__version__}"
Downloader = Callable[[str, str, Any], None]  # pooch's: (url, output_file, pooch)


def verify_file(path: PathLike, sha256: str, size: Optional[int] = None) -> None:
    """Checks a file's size (when given) and sha256; a :class:`HashMismatchError` names the
    file, the expected and the actual values."""
    actual_size = os.path.getsize(path)
    if size is not None and actual_size != size:
        raise HashMismatchError(f"{path}: size {actual_size} bytes, expected {size}.")
    actual = pooch.file_hash(str(path), alg="sha256")
    if actual != sha256:
        raise HashMismatchError(f"{path}: sha256 {actual}, expected {sha256}.")


def cache_dir(path: Optional[PathLike] = None) -> Path:
    """The download cache: ``path``, else ``$SOLO_CLAMP_CACHE``, else pooch's OS cache."""
    path = path or os.environ.get(CACHE_ENV)
    return Path(path).expanduser() if path else Path(pooch.os_cache("solo-clamp"))


def read_weights(path: PathLike, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """Reads a safetensors weights file, casting floating tensors to ``dtype``."""
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise ZooError(f"{path}: not a readable safetensors file: {err}") from err
    cast = dtype is not None
    return {k: v.to(dtype) if cast and v.is_floating_point() else v for k, v in state.items()}


def _resuming_downloader(part: Path, size: int, progress: bool, timeout: float) -> Downloader:
    """pooch's HTTP downloader appending to ``part`` from its length (``Range: bytes=N-``); it
    hands ``part`` to pooch once it holds ``size`` bytes, else raises ChunkedEncodingError (a
    transient error), and a HashMismatchError when the server announces another size."""

    def download(url: str, output_file: str, pooch_: Any = None) -> None:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if 0 < offset < size:
            headers["Range"] = f"bytes={offset}-"

        def check_size(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            if response.status_code in (200, 206):
                start = offset if response.status_code == 206 else 0
                fh.truncate(start)  # a 200 answers with the whole file: start over
                length = response.headers.get("Content-Length", "")
                served = start + int(length) if length.isdigit() else size
                if served != size:
                    raise HashMismatchError(
                        f"{url} serves {served} bytes, the manifest says {size}."
                    )

        try:
            with open(part, "ab") as fh:
                if offset != size:
                    pooch.HTTPDownloader(
                        progressbar=progress,
                        chunk_size=1 << 14,  # pooch flushes each chunk; its default is 1 KiB
                        timeout=timeout,
                        headers=headers,
                        hooks={"response": check_size},
                    )(url, fh, pooch_)
        except requests.HTTPError as err:
            if err.response is None or err.response.status_code != 416 or not offset:
                raise
            part.unlink()  # the server cannot continue our .part: from byte 0
            return download(url, output_file, pooch_)
        finally:
            if part.exists() and not part.stat().st_size:
                part.unlink()
        got = part.stat().st_size if part.exists() else 0
        if got < size:
            raise ChunkedEncodingError(f"the connection closed after {got} of {size} bytes")
        os.replace(part, output_file)

    return download


def _hf_downloader(source: SourceItem) -> Downloader:
    """A pooch downloader copying a Hugging Face file (the hub has its own cache and resume)."""

    def download(url: str, output_file: str, pooch_: Any = None) -> None:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as err:
            message = "huggingface_hub is not installed: pip install 'solo-clamp[hub]'"
            raise DownloadError(message) from err
        local = hf_hub_download(
            source["hf_repo"], source["hf_filename"], revision=source.get("hf_revision")
        )
        shutil.copyfile(local, output_file)

    return download


def _is_transient(err: Exception) -> bool:
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return err.response.status_code >= 500 or err.response.status_code in (408, 429)
    return isinstance(err, (requests.ConnectionError, requests.Timeout, ChunkedEncodingError))


def _fetch(
    source: SourceItem, entry: ZooEntry, final: Path, attempts: int, retry_wait: float, **kw: Any
) -> None:
    """Fills ``final`` from one source. Transient errors are retried (resuming) up to
    ``attempts`` times, ``retry_wait`` seconds times the attempt number apart; a resumed file
    that fails the hash is fetched once more from byte 0 (its kept prefix may be stale)."""
    part = final.with_name(final.name + ".part")
    if isinstance(source, str):
        downloader = _resuming_downloader(part, entry.size, **kw)
    else:
        downloader = _hf_downloader(source)
    attempt, fresh_retry = 1, False
    while True:
        resumed = part.exists()
        try:
            try:
                pooch.retrieve(
                    source_name(source),
                    known_hash=f"sha256:{entry.sha256}",
                    fname=final.name,
                    path=final.parent,
                    downloader=downloader,
                )
                return
            except ValueError as err:  # pooch's refusal of the hash (it deleted the file)
                raise HashMismatchError(str(err)) from err
        except HashMismatchError:
            part.unlink(missing_ok=True)
            if not resumed or fresh_retry:
                raise
            fresh_retry = True
        except Exception as err:
            if attempt >= attempts or not _is_transient(err):
                raise
            time.sleep(retry_wait * attempt)
            attempt += 1


def _describe(err: Exception) -> str:
    """One line for the listing of failed sources."""
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTPError: HTTP {err.response.status_code} {err.response.reason}"
    text = (str(err) or type(err).__name__).splitlines()[0]
    return text if isinstance(err, ZooError) else f"{type(err).__name__}: {text}"


def _download_entry(entry: ZooEntry, final: Path, **kw: Any) -> None:
    """Fills ``final`` from the entry's sources in order (the caller holds the lock)."""
    failures: list[str] = []  # messages, not the errors: those hold their connections open
    mismatches = 0
    for source in entry.sources:
        try:
            return _fetch(source, entry, final, **kw)
        except Exception as err:  # noqa: BLE001 - every source's error is reported
            mismatches += isinstance(err, HashMismatchError)
            failures.append(f"{source_name(source)}: {_describe(err)}")
    listing = "; ".join(failures)
    if mismatches == len(failures):
        raise HashMismatchError(
            f"{entry.name}: the downloaded file does not match the manifest (size {entry.size}, "
            f"sha256 {entry.sha256}); nothing was kept: {listing}"
        )
    part = final.with_name(final.name + ".part")
    partial = f" (partial data kept in {part} for a later resume)" if part.exists() else ""
    raise DownloadError(f"{entry.name}: every source failed{partial}: {listing}")


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
    """The verified local weights file of a zoo model: the shipped file (no network), else the
    cached copy, else a download from the sources in order (``attempts`` tries each).

    Raises:
        UnknownModelError: ``name`` is not in the manifest (lists the available names).
        HashMismatchError: a shipped file, or every downloaded copy, fails the sha256 check.
        DownloadError: every source failed (lists each source and its error).
    """
    idx, entry = lookup(name, index)
    shipped = idx.shipped_path(entry)
    if shipped is not None:
        verify_file(shipped, entry.sha256, entry.size)
        return shipped
    if not entry.sources:
        raise DownloadError(
            f"{entry.name}: its shipped file {idx.root / str(entry.file)} is missing and the "
            "entry has no sources."
        )
    final = cache_dir(cache) / entry.cache_name
    final.parent.mkdir(parents=True, exist_ok=True)
    if _verified(final, entry):  # without the lock: a read-only cache serves too
        return final
    lock = FileLock(f"{final}.lock", timeout=lock_timeout)
    try:
        with lock:  # the holder alone writes the .part file; the others find its result
            if not _verified(final, entry):
                kw = {"progress": progress, "timeout": timeout}
                _download_entry(entry, final, attempts=attempts, retry_wait=retry_wait, **kw)
    except Timeout as err:
        raise DownloadError(
            f"{entry.name}: another download holds {lock.lock_file} since more than "
            f"{lock_timeout:.0f} s."
        ) from err
    return final
