"""sha256 digests and verification of the zoo's files."""

from __future__ import annotations

import hashlib
import os
from typing import Optional

from solo_clamp.io import PathLike
from solo_clamp.zoo.errors import HashMismatchError


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
