"""Verified, cached, locked downloads of a zoo entry's weights file.

A shipped ``file`` resolves locally (verified, no network); otherwise the file is downloaded
into the cache (``$SOLO_CLAMP_CACHE``, default ``pooch.os_cache("solo-clamp")``):

* ``<cache>/<name>-<sha256[:12]>.safetensors.part`` receives the bytes. An interrupted
  download leaves it in place and the next attempt resumes it with an HTTP ``Range``
  request (see :mod:`solo_clamp.zoo.fetch`).
* The ``.part`` file is hashed before ``os.replace`` moves it into place, so the final name
  only ever holds verified bytes; a file that fails the check is deleted.
* A lock file (``filelock``, a dependency of torch) serialises concurrent downloads of the
  same entry; the ``.part`` name is fixed (so it can be resumed) and written by the lock
  holder only, while Hugging Face copies go through unique temporary names.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import pooch
from filelock import FileLock, Timeout  # a dependency of torch

from solo_clamp.io import PathLike
from solo_clamp.zoo.errors import DownloadError, HashMismatchError
from solo_clamp.zoo.fetch import describe_error, fetch_hf, fetch_url_with_retries
from solo_clamp.zoo.files import verify_file
from solo_clamp.zoo.index import IndexLike, lookup
from solo_clamp.zoo.manifest import ZooEntry

CACHE_ENV = "SOLO_CLAMP_CACHE"


def cache_dir(path: Optional[PathLike] = None) -> Path:
    """The download cache: ``path``, else ``$SOLO_CLAMP_CACHE``, else pooch's OS cache."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(pooch.os_cache("solo-clamp"))


def _download_entry(
    entry: ZooEntry,
    final: Path,
    *,
    progress: bool,
    timeout: float,
    attempts: int,
    retry_wait: float,
) -> None:
    """Fills ``final`` from the entry's sources in order (the caller holds the lock)."""
    part = final.with_name(final.name + ".part")
    errors: list[str] = []
    only_mismatches = True
    for source in entry.sources:
        for fresh_retry in (False, True):
            resumed = part.exists()
            try:
                if source.url:
                    fetch_url_with_retries(
                        source.url,
                        part,
                        entry.size,
                        progress=progress,
                        timeout=timeout,
                        desc=entry.name,
                        attempts=attempts,
                        retry_wait=retry_wait,
                    )
                else:
                    fetch_hf(source, part)
                verify_file(part, entry.sha256, entry.size)
            except HashMismatchError as err:
                part.unlink(missing_ok=True)
                if resumed and not fresh_retry:
                    continue  # the stale prefix may be the culprit: once more from byte 0
                errors.append(f"{source.describe()}: {describe_error(err)}")
                break
            except Exception as err:  # noqa: BLE001 - every source error is reported
                only_mismatches = False
                errors.append(f"{source.describe()}: {describe_error(err)}")
                break
            os.replace(part, final)
            return
    listing = "\n  ".join(errors)
    if only_mismatches:
        raise HashMismatchError(
            f"{entry.name}: the downloaded file does not match the "
            f"manifest (size {entry.size}, sha256 {entry.sha256}); "
            f"nothing was kept:\n  {listing}"
        )
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
