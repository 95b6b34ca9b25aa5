"""Unreadable image files in the pretraining set: ``data.on_bad_image``.

solo-learn opens each image only when a batch needs it, so one corrupted file stops a run
mid-epoch with a PIL traceback from a data-loader worker that does not say which file.
Before the model is built, :func:`guard_train_dataset` applies the chosen policy:

``error`` (default)
    every file is opened and checked with PIL (``Image.verify``); the first unreadable one
    stops the run with a DataError naming it and counting all of them.
``skip``
    the same check; unreadable files are dropped from the training set, with a
    :class:`BadImageWarning` that counts them and names the first ones
    (``dataset.skipped_images`` lists them all).
``off``
    no check (no start-up cost on very large datasets).

In every mode the dataset's loader is wrapped so that a file that still fails when it is
loaded (any file under ``off``; under ``error``/``skip`` a file changed after the check or
damaged in a way ``verify`` does not see) raises a DataError naming the file. Only
image-folder datasets (``custom``, ``imagenet``, ``imagenet100`` in ``image_folder``
format) are checked; the others are returned as is.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from PIL import Image

from solo_clamp.errors import ConfigError, DataError

BAD_IMAGE_POLICIES = ("error", "skip", "off")
"""Allowed values of ``data.on_bad_image``; the first is the default."""

_SHOWN = 3
"""Files named in a message; the rest are counted."""


class BadImageWarning(UserWarning):
    """Unreadable training images were skipped (``data.on_bad_image=skip``)."""


def check_policy(policy: Any) -> str:
    """Returns ``data.on_bad_image`` (default ``error``) or raises a ConfigError naming it."""
    policy = BAD_IMAGE_POLICIES[0] if policy is None else policy
    if policy is False:  # YAML 1.1 reads an unquoted `off` as false
        policy = "off"
    if policy not in BAD_IMAGE_POLICIES:
        raise ConfigError(
            f"data.on_bad_image must be one of {list(BAD_IMAGE_POLICIES)}, got {policy!r}."
        )
    return policy


def image_problem(path: str | os.PathLike) -> Optional[str]:
    """None when PIL opens and verifies the file, else the reason it cannot be read."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, struct.error...
        return str(err) or type(err).__name__
    return None


def scan_images(paths: Sequence[str], workers: int = 8) -> list[tuple[str, str]]:
    """``(path, reason)`` for every unreadable file, in the order of ``paths``."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(image_problem, paths, chunksize=256))
    return [(str(path), problem) for path, problem in zip(paths, problems) if problem]


def _describe(bad: list[tuple[str, str]], total: int) -> str:
    shown = "; ".join(f"{path!r} ({reason})" for path, reason in bad[:_SHOWN])
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    return f"{len(bad)} of {total} images cannot be read: {shown}{more}"


class NamingLoader:
    """Wraps an image loader so that its errors name the file (picklable for workers)."""

    def __init__(self, loader: Callable[[str], Any]):
        self.loader = loader

    def __call__(self, path: str) -> Any:
        try:
            return self.loader(path)
        except Exception as err:
            reason = image_problem(path) or str(err) or type(err).__name__
            raise DataError(
                f"cannot read training image {str(path)!r} ({reason}): fix or remove the file; "
                "data.on_bad_image=skip drops the files that fail the start-up check."
            ) from err


def _image_paths(dataset) -> Optional[list[str]]:
    if hasattr(dataset, "samples"):  # torchvision ImageFolder and subclasses
        return [path for path, _ in dataset.samples]
    if hasattr(dataset, "images") and hasattr(dataset, "root"):  # solo's unlabelled folder
        return [str(Path(dataset.root) / name) for name in dataset.images]
    return None


def _drop(dataset, bad_paths: set[str]) -> None:
    if hasattr(dataset, "samples"):
        dataset.samples = [s for s in dataset.samples if s[0] not in bad_paths]
        if hasattr(dataset, "imgs"):
            dataset.imgs = dataset.samples
        if hasattr(dataset, "targets"):
            dataset.targets = [target for _, target in dataset.samples]
    else:
        dataset.images = [n for n in dataset.images if str(Path(dataset.root) / n) not in bad_paths]


def guard_train_dataset(dataset, policy: Any = None, workers: int = 8):
    """Applies ``data.on_bad_image`` to a solo-learn pretraining dataset (see the module doc).

    Args:
        dataset: what ``solo.data.pretrain_dataloader.prepare_datasets`` returned.
        policy: ``error`` (None means ``error``), ``skip`` or ``off``.
        workers: threads that open the files.

    Returns:
        The same dataset, without its unreadable files under ``skip``; its
        ``skipped_images`` attribute lists the dropped ``(path, reason)`` pairs.

    Raises:
        ConfigError: naming the policy field when the policy is unknown. DataError: naming
            the unreadable files under ``error`` (or when ``skip`` leaves no image).
    """
    policy = check_policy(policy)
    paths = _image_paths(dataset)
    if paths is None:
        return dataset
    if hasattr(dataset, "loader"):
        dataset.loader = NamingLoader(dataset.loader)
    dataset.skipped_images = []
    if policy == "off":
        return dataset
    bad = scan_images(paths, workers)
    if not bad:
        return dataset
    if policy == "error" or len(bad) == len(paths):
        hint = (
            "fix or remove them, or set data.on_bad_image=skip to train without them"
            if policy == "error"
            else "no readable image is left"
        )
        raise DataError(f"data.on_bad_image={policy}: {_describe(bad, len(paths))}; {hint}.")
    _drop(dataset, {path for path, _ in bad})
    dataset.skipped_images = bad
    warnings.warn(
        f"data.on_bad_image=skip: {_describe(bad, len(paths))}; skipping them and training "
        f"on the other {len(paths) - len(bad)}.",
        BadImageWarning,
        stacklevel=2,
    )
    return dataset


def check_enough_images(dataset, batch_size: int, processes: int) -> None:
    """Raises when a process cannot fill one batch (``drop_last`` would train nothing).

    Each of ``processes`` ranks gets ``ceil(len / processes)`` images (the distributed
    sampler pads), and the training loader drops the last incomplete batch.
    """
    count = len(dataset)
    if math.ceil(count / max(processes, 1)) < batch_size:
        per = f" per process, {processes} processes" if processes > 1 else ""
        raise DataError(
            f"data.train_path has {count} training images, fewer than one batch "
            f"(optimizer.batch_size={batch_size}{per}): with drop_last nothing would be "
            "trained; lower optimizer.batch_size or add images."
        )
