"""What produced a result: the code (commit, uncommitted changes), the frameworks, the machine
and the data. Every row a study writes carries these columns (:data:`COLUMNS`)."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

import torch

from solo_clamp.internals import installed_version

COLUMNS = ("commit", "dirty", "torch", "solo_learn", "lightning", "cpu", "threads", "data_sha256")
"""The provenance columns of a results row, in order."""

_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str:
    """A git command's output in the checkout holding this package, "" when there is none
    (a wheel install) or git fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(_PACKAGE_DIR), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def code_state() -> dict[str, Any]:
    """``commit`` (the checkout's HEAD, ``unknown`` outside a git checkout) and ``dirty``
    (whether tracked files differ from it; None when unknown), as at this process's first call:
    a long study keeps naming the code it loaded when its checkout moves on meanwhile."""
    return dict(_code_state_at_first_call())


@functools.lru_cache(maxsize=1)
def _code_state_at_first_call() -> tuple[tuple[str, Any], ...]:
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return (("commit", "unknown"), ("dirty", None))
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return (("commit", commit), ("dirty", dirty))


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``; elsewhere :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict[str, Any]:
    """Every provenance column but ``data_sha256``, read now (``threads``: torch's intra-op
    threads at this moment)."""
    return {
        **code_state(),
        "torch": torch.__version__,
        "solo_learn": installed_version("solo-learn"),
        "lightning": installed_version("lightning"),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
    }


def sha256_of_images(groups: Iterable[tuple[str, Iterable[tuple[bytes, int]]]]) -> str:
    """One sha256 over named groups of (image bytes, label), in order: it changes when any
    image, label, membership or order changes."""
    digest = hashlib.sha256()
    for name, items in groups:
        digest.update(f"[{name}]".encode())
        for image, label in items:
            digest.update(hashlib.sha256(image).digest())
            digest.update(str(int(label)).encode() + b";")
    return digest.hexdigest()
