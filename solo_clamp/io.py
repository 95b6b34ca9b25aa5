"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

Every write goes to a temporary file in the target's folder (same file system, so the final
``os.replace`` is atomic); an exception leaves the old file untouched and no temporary file.
The new file gets the permissions a plain ``open(path, "w")`` would give it (those of the file
it replaces, else the umask's), not ``mkstemp``'s owner-only ones.
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

import torch

PathLike = Union[str, os.PathLike]


def _plain_write_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # the only way to read it is to set it: restored at once
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (its folder is created) that replaces ``path`` with
    ``os.replace`` when the block succeeds; it is removed in any case.

    Example::

        with atomic_path("index.yaml") as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, _plain_write_mode(path))
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_below_marker(page: PathLike, marker: str, generated: str) -> None:
    """Writes a page whose lower part a tool generates: the page's hand-written text above
    ``marker`` (all of an existing page without one) is kept, then ``marker`` and
    ``generated`` byte for byte, atomically."""
    page = Path(page)
    above = ""
    if page.exists():
        text = page.read_text(encoding="utf-8")
        above = text.split(marker)[0] if marker in text else text + "\n"
    atomic_write_text(page, f"{above}{marker}\n\n{generated}")


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)``, atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
