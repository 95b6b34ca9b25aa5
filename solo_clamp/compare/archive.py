"""A comparison's finished work in one file, so that a study outlives the machine it ran on.

``runs.json.gz`` holds every finished ``result.json`` of an output directory (final runs and
floors under ``runs/``, trials and validation floors under ``tuning/``), keyed by that
folder. ``solo-clamp compare --publish DIR`` keeps ``DIR/runs.json.gz`` beside the study page,
refreshed after every finished run or trial, and restores it into a new ``--out`` before
anything trains: a study interrupted on one machine resumes on another from the committed page,
and its report can be rebuilt without training. A restored result counts only where its
settings fingerprint still matches (:func:`solo_clamp.compare.fingerprints.finished_result`);
any other run trains again.

The file is deterministic (sorted keys, no gzip timestamp): the same results give the same bytes.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from solo_clamp.errors import ConfigError
from solo_clamp.io import atomic_path, atomic_write_text

ARCHIVE_NAME = "runs.json.gz"
_KEY = re.compile(r"(runs|tuning)/[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _finished(out: Path) -> dict[str, Any]:
    results = {}
    for path in sorted([*out.glob("runs/*/result.json"), *out.glob("tuning/*/result.json")]):
        try:
            results[path.parent.relative_to(out).as_posix()] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being written by another process: the next save takes it
    return results


def save_archive(out: Path, archive: Path) -> int:
    """Writes every finished result under ``out`` into ``archive`` (atomically), keeping the
    archive's entries that ``out`` lacks; returns the number of entries."""
    results = {**load_archive(archive), **_finished(out)} if archive.exists() else _finished(out)
    text = json.dumps(results, sort_keys=True, separators=(",", ":"))
    with atomic_path(archive) as tmp:
        with (
            tmp.open("wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as handle,
        ):
            handle.write(text.encode("utf-8"))
    return len(results)


def load_archive(archive: Path) -> dict[str, Any]:
    """The archive's results by folder (``runs/<run>``, ``tuning/<trial>``)."""
    try:
        results = json.loads(gzip.decompress(archive.read_bytes()).decode("utf-8"))
    except (OSError, EOFError, ValueError) as error:
        raise ConfigError(f"{archive} is not a comparison archive ({error})") from error
    if not isinstance(results, dict) or not all(
        _KEY.fullmatch(key) and isinstance(value, dict) for key, value in results.items()
    ):
        raise ConfigError(
            f"{archive} is not a comparison archive: expected results keyed runs/<run> or "
            "tuning/<trial>"
        )
    return results


def restore_archive(archive: Path, out: Path) -> list[str]:
    """Writes the archive's results that ``out`` lacks into ``out`` (an existing
    ``result.json`` is never replaced); returns their folders."""
    restored = []
    for key, result in load_archive(archive).items():
        path = out / key / "result.json"
        if not path.exists():
            atomic_write_text(path, json.dumps(result, indent=2))
            restored.append(key)
    return restored
