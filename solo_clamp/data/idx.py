"""Reading the idx files of MNIST and Fashion-MNIST (gzip or plain)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from solo_clamp.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_idx_file(directory: Path, stem: str) -> Path:
    """The file ``stem`` (e.g. ``train-images-idx3-ubyte``) in ``directory``, gzip or not."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{stem}[.gz] not found in {directory}.")


def read_idx(path: Path) -> np.ndarray:
    """Reads one idx file into an array of its declared dtype and shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(f"{path} is not an idx file (bad magic number).")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=_DTYPES[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: expected {np.prod(shape)} values, got {array.size}.")
    return array.reshape(shape)


def verify_sha256sums(directory: Path, names: list[str]) -> None:
    """Checks ``names`` against ``directory/SHA256SUMS`` when that file exists."""
    sums_file = directory / "SHA256SUMS"
    if not sums_file.exists():
        return
    expected = {}
    for line in sums_file.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            expected[name.strip().lstrip("*")] = digest
    for name in names:
        if name not in expected:
            continue
        digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        if digest != expected[name]:
            raise DataError(f"{directory / name} does not match SHA256SUMS (corrupted file).")
