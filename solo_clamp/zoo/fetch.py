"""Fetching one source into a ``.part`` file: resumable HTTP (``Range``) or Hugging Face.

pooch cannot resume an interrupted download, hence this small urllib downloader: the
``.part`` file keeps what arrived and the next request asks for the rest.
"""

from __future__ import annotations

import http.client
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from solo_clamp.io import atomic_path
from solo_clamp.version import __version__
from solo_clamp.zoo.errors import DownloadError, HashMismatchError, ZooError
from solo_clamp.zoo.manifest import Source

USER_AGENT = f"solo-clamp/{__version__}"
CHUNK_BYTES = 1 << 16


class TransientError(Exception):
    """A download stopped early in a way worth retrying (resuming) from the same source."""


def fetch_url(
    url: str, part: Path, size: int, *, progress: bool, timeout: float, desc: str
) -> None:
    """Downloads ``url`` into ``part``, resuming from its current length (HTTP Range).

    Raises:
        HashMismatchError: the server serves more (or other) bytes than the manifest's size.
        TransientError: the connection ended early (``part`` keeps what arrived).
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
        return fetch_url(url, part, size, progress=progress, timeout=timeout, desc=desc)
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: it sends the whole file
        elif offset:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink()
                raise TransientError(
                    f"unexpected Content-Range {content_range!r} for a request from byte {offset}"
                )
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and offset + int(length) != size:
            part.unlink(missing_ok=True)
            raise HashMismatchError(
                f"{url} serves {offset + int(length)} bytes, the manifest says {size}."
            )
        written = offset
        with (
            open(part, "ab" if offset else "wb") as fh,
            tqdm(
                total=size,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                written += len(chunk)
                if written > size:
                    fh.close()
                    part.unlink()
                    raise HashMismatchError(f"{url} serves more than the manifest's {size} bytes.")
                fh.write(chunk)
                bar.update(len(chunk))
    if written < size:
        raise TransientError(f"connection closed after {written} of {size} bytes")


def _is_retryable(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    return isinstance(err, (TransientError, OSError, http.client.HTTPException))


def fetch_url_with_retries(
    url: str,
    part: Path,
    size: int,
    *,
    progress: bool,
    timeout: float,
    desc: str,
    attempts: int,
    retry_wait: float,
) -> None:
    """:func:`fetch_url`, retried (resuming) up to ``attempts`` times on transient errors,
    waiting ``retry_wait`` seconds times the attempt number in between."""
    for attempt in range(1, attempts + 1):
        try:
            fetch_url(url, part, size, progress=progress, timeout=timeout, desc=desc)
            return
        except Exception as err:
            if attempt == attempts or not _is_retryable(err):
                raise
            time.sleep(retry_wait * attempt)


def fetch_hf(source: Source, part: Path) -> None:
    """Downloads a Hugging Face file (its own cache, resume and progress bar) into ``part``,
    copied through a unique temporary name beside it."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise DownloadError(
            "huggingface_hub is not installed: pip install 'solo-clamp[hub]'"
        ) from err
    local = hf_hub_download(
        repo_id=source.hf_repo, filename=source.hf_filename, revision=source.hf_revision
    )
    with atomic_path(part) as tmp:
        shutil.copyfile(local, tmp)


def describe_error(err: BaseException) -> str:
    """A one-line description of a source's error, for the listing of failed sources."""
    text = str(err) or type(err).__name__
    if isinstance(err, urllib.error.HTTPError):
        text = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, urllib.error.URLError):
        text = f"{err.reason}"
    return f"{type(err).__name__}: {text}" if not isinstance(err, ZooError) else text
