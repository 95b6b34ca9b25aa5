"""File helpers shared by the zoo: atomic replacement and sha256 verification."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from solo_clamp.zoo.errors import HashMismatchError

PathLike = Union[str, os.PathLike]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (its folder is created) that replaces ``path`` with
    ``os.replace`` when the block succeeds; it is removed in any case."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


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
