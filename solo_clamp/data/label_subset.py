"""The labelled fraction of a training set for semi-supervised fine-tuning, as a file list.

A subset is drawn per class (stratified) with a seeded generator, or read from a file, and
written out as a list of image paths relative to the dataset's image folder, one per line,
so that a run can be repeated exactly. SimCLR's ImageNet ``1percent.txt`` /
``10percent.txt`` (bare file names such as ``n01440764_10026.JPEG``, the class folder being
the part before ``_``) are read as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from solo_clamp.errors import ConfigError, DataError
from solo_clamp.io import PathLike, atomic_write_text


def stratified_draw(
    labels: Sequence[int],
    fraction: Optional[float] = None,
    per_class: Optional[int] = None,
    seed: Optional[int] = 0,
    *,
    exclude: Optional[Sequence[int]] = None,
    up_to: bool = False,
) -> np.ndarray:
    """Sorted indices of a class-stratified draw: ``per_class`` images of each class, or
    ``fraction`` of each class (rounded, at least one image), none of them in ``exclude``.

    The project's one stratified sampler (fine-tuning's labelled subset, the few-label draws,
    the subsets ``prepare-data`` writes, compare's validation split and scored subsets): each
    class's indices, ``exclude`` left out, are permuted by one
    ``numpy.random.default_rng(seed)``, class after class in the order of the sorted labels,
    and the first ``count`` of each are kept.

    Args:
        seed: None keeps the first ``count`` of each class in index order, no draw: subsets of
            an already drawn set that nest (a smaller count gives a subset of a larger one).
        up_to: a class with fewer than ``per_class`` images gives all of them instead of an
            error.

    Raises:
        ConfigError: not exactly one of ``fraction`` and ``per_class``, a value out of range,
            or (without ``up_to``) a class with fewer than ``per_class`` images.
    """
    if (fraction is None) == (per_class is None):
        raise ConfigError(
            "labels: give exactly one of labels.fraction and labels.per_class (or a labels.file)."
        )
    if fraction is not None and not 0 < fraction <= 1:
        raise ConfigError(f"labels.fraction must be in (0, 1], got {fraction!r}.")
    if per_class is not None and (
        isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1
    ):
        raise ConfigError(f"labels.per_class must be a positive integer, got {per_class!r}.")
    labels = np.asarray(labels)
    allowed = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        allowed[np.asarray(exclude, dtype=int)] = False
    rng = np.random.default_rng(seed)  # unused when seed is None
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero((labels == label) & allowed)
        count = per_class if per_class is not None else max(1, round(fraction * len(members)))
        if count > len(members) and not up_to:
            raise ConfigError(
                f"labels.per_class={per_class} but class {int(label)} has only "
                f"{len(members)} training images."
            )
        chosen.append((members if seed is None else rng.permutation(members))[: int(count)])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def _as_relative(line: str) -> str:
    if "/" not in line and "_" in line:  # SimCLR's ImageNet lists: n01440764_10026.JPEG
        return f"{line.split('_', 1)[0]}/{line}"
    return line


def read_subset_file(path: PathLike) -> list[str]:
    """The relative image paths listed in ``path`` (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"labels.file: cannot read {path}: {err}") from err
    names = [_as_relative(line.strip()) for line in text.splitlines()]
    names = [name for name in names if name and not name.startswith("#")]
    if not names:
        raise DataError(f"labels.file: {path} lists no images.")
    return names


def write_subset_file(path: PathLike, names: Sequence[str], header: str = "") -> Path:
    """Writes ``names`` one per line (after ``header`` as ``#`` comments), atomically."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    atomic_write_text(path, comments + "".join(f"{name}\n" for name in names))
    return Path(path)


def relative_names(paths: Sequence[PathLike], root: PathLike) -> list[str]:
    """``paths`` relative to ``root``, with ``/`` separators (the file list's form)."""
    return [Path(os.path.relpath(p, root)).as_posix() for p in paths]


def indices_of(names: Sequence[str], available: Sequence[str], where: str) -> list[int]:
    """The positions of ``names`` in ``available``.

    Raises:
        DataError: a listed image that is not in the dataset (the first few are named), or
            an image listed twice.
    """
    position = {name: i for i, name in enumerate(available)}
    missing = [name for name in names if name not in position]
    if missing:
        raise DataError(
            f"labels.file: {len(missing)} listed image(s) are not in {where}, e.g. "
            f"{missing[:3]}; paths are relative to the dataset's image folder."
        )
    if len(set(names)) != len(names):
        raise DataError("labels.file: an image is listed more than once.")
    return [position[name] for name in names]
