"""MNIST / Fashion-MNIST idx files -> an ImageFolder tree that solo-learn reads as ``custom``.

The tree is ``<root>/<name>-<subset>/{train,val}/<class>/<index>.png``; it is written into
a temporary directory and moved into place in one rename, so an interrupted preparation
never leaves a half-written dataset behind. ``val`` holds test-split images, or with
``val_from="train"`` training-split images outside the training subset (a validation split
for choosing settings without looking at the test split).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from solo_clamp.data.idx import find_idx_file, read_idx, verify_sha256sums
from solo_clamp.data.label_subset import stratified_draw
from solo_clamp.errors import ConfigError, DataError

VAL_SOURCES = ("test", "train")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class SourceNotFoundError(DataError, FileNotFoundError):
    """The given source directory does not hold the idx files."""


@dataclass(frozen=True)
class DatasetSpec:
    env_var: str
    default_dirs: tuple[Path, ...]
    torchvision_class: str
    classes: tuple[str, ...]
    mean: float
    std: float


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        env_var="SOLO_CLAMP_MNIST_DIR",
        # Relative to the current directory: beside the repository when run from its root.
        default_dirs=(Path("..") / "shared" / "data" / "mnist",),
        torchvision_class="MNIST",
        classes=tuple(str(d) for d in range(10)),
        mean=0.1307,
        std=0.3081,
    ),
    "fashion_mnist": DatasetSpec(
        env_var="SOLO_CLAMP_FASHION_MNIST_DIR",
        default_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        torchvision_class="FashionMNIST",
        classes=(
            "t-shirt",
            "trouser",
            "pullover",
            "dress",
            "coat",
            "sandal",
            "shirt",
            "sneaker",
            "bag",
            "ankle-boot",
        ),
        mean=0.2860,
        std=0.3530,
    ),
}


@dataclass(frozen=True)
class PreparedData:
    root: Path
    train: Path
    val: Path
    num_classes: int
    train_images: int
    val_images: int

    @classmethod
    def at(cls, root: Path, num_classes: int, counts: dict[str, int]) -> PreparedData:
        """The tree at ``root`` with the image counts ``prepared.json`` records."""
        return cls(
            root,
            root / "train",
            root / "val",
            num_classes,
            counts["train_images"],
            counts["val_images"],
        )


def _check_name(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}.")
    return DATASETS[name]


def _has_idx_files(directory: Path) -> bool:
    try:
        for stems in _FILES.values():
            for stem in stems:
                find_idx_file(directory, stem)
    except FileNotFoundError:
        return False
    return True


def locate_source(
    name: str, source: Optional[os.PathLike] = None, download_root: Optional[os.PathLike] = None
) -> Path:
    """Directory holding the four idx files of ``name``.

    Order: ``source``; ``$SOLO_CLAMP_<NAME>_DIR``; the known local copies (for MNIST
    ``../shared/data/mnist`` relative to the current directory, i.e. beside the repository
    when run from its root; for Fashion-MNIST Debian's ``dataset-fashion-mnist`` package);
    else torchvision's download into ``download_root``.
    """
    spec = _check_name(name)
    if source is not None:
        directory = Path(source).expanduser()
        if not _has_idx_files(directory):
            raise SourceNotFoundError(
                f"source {directory} must hold the {name} idx files "
                f"({', '.join(s for pair in _FILES.values() for s in pair)}, gzip or not)."
            )
        return directory
    candidates = [Path(os.environ[spec.env_var])] if os.environ.get(spec.env_var) else []
    for directory in [*candidates, *spec.default_dirs]:
        if _has_idx_files(directory):
            return directory
    import torchvision.datasets

    root = Path(download_root or tempfile.gettempdir()) / "torchvision"
    dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
    try:
        dataset_class(str(root), train=True, download=True)
        dataset_class(str(root), train=False, download=True)
    except (RuntimeError, OSError) as error:  # torchvision's "Error downloading ..." when offline
        looked = ", ".join(str(d) for d in [*candidates, *spec.default_dirs])
        first = str(error).strip().splitlines()[0]
        raise SourceNotFoundError(
            f"no {name} idx files in {looked} (set ${spec.env_var} or prepare_data.source) and "
            f"the download into {root} failed: {first}"
        ) from error
    return root / spec.torchvision_class / "raw"


def _write_split(
    out: Path, images: np.ndarray, labels: np.ndarray, keep: np.ndarray, classes, desc: str
) -> None:
    """Writes ``images[keep]`` as ``out/<class>/<index in the idx file>.png``."""
    for class_name in classes:
        (out / class_name).mkdir(parents=True, exist_ok=True)
    for index in tqdm(keep, desc=desc, unit="img", leave=False, mininterval=1.0):
        Image.fromarray(images[index], mode="L").save(
            out / classes[int(labels[index])] / f"{int(index):05d}.png"
        )


def prepare_image_folder(
    name: str = "mnist",
    root: os.PathLike = "datasets",
    source: Optional[os.PathLike] = None,
    train_per_class: Optional[int] = None,
    val_per_class: Optional[int] = None,
    seed: int = 0,
    val_from: str = "test",
) -> PreparedData:
    """Writes (once) and returns an ImageFolder copy of MNIST or Fashion-MNIST.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        root: directory under which the tree is written.
        source: directory with the idx files (see :func:`locate_source`).
        train_per_class: images per class kept from the training split (None = all).
        val_per_class: images per class in ``val`` (None = all the test split, or with
            ``val_from="train"`` all training images outside the training subset).
        seed: seed of the stratified subsets.
        val_from: ``"test"``: ``val`` is drawn from the test split; ``"train"``: from the
            training split, disjoint from the training subset (a validation split).

    Returns:
        Paths and sizes of the prepared tree. An existing complete tree is reused.
    """
    spec = _check_name(name)
    for field, value in (("train_per_class", train_per_class), ("val_per_class", val_per_class)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{field} must be a positive integer or None, got {value!r}.")
    if val_from not in VAL_SOURCES:
        raise ConfigError(f"val_from must be one of {list(VAL_SOURCES)}, got {val_from!r}.")
    if val_from == "train" and train_per_class is None:
        raise ConfigError(
            "val_from='train' needs train_per_class: with the whole training split as the "
            "training subset no training image is left for validation."
        )
    tag = f"{train_per_class or 'all'}x{val_per_class or 'all'}-s{seed}"
    if val_from == "train":
        tag += "-valtrain"
    final = Path(root) / f"{name}-{tag}"
    marker = final / "prepared.json"
    if marker.exists():
        return PreparedData.at(final, len(spec.classes), json.loads(marker.read_text()))

    directory = locate_source(name, source, download_root=root)
    verify_sha256sums(
        directory, [find_idx_file(directory, s).name for p in _FILES.values() for s in p]
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        counts = {}
        train_keep = None
        for split, per_class in (("train", train_per_class), ("val", val_per_class)):
            source_split = "train" if split == "train" or val_from == "train" else "val"
            images = read_idx(find_idx_file(directory, _FILES[source_split][0]))
            labels = read_idx(find_idx_file(directory, _FILES[source_split][1]))
            exclude = train_keep if source_split == "train" else None
            if per_class is None:  # all of them (but the training subset)
                everything = np.arange(len(labels))
                keep = everything if exclude is None else np.setdiff1d(everything, exclude)
            else:  # per_class of each class, all of a smaller one
                keep = stratified_draw(
                    labels, per_class=per_class, seed=seed, exclude=exclude, up_to=True
                )
            if split == "train":
                train_keep = keep
            _write_split(staging / split, images, labels, keep, spec.classes, f"{name} {split}")
            counts[f"{split}_images"] = int(len(keep))
        (staging / "prepared.json").write_text(
            json.dumps(
                {
                    "dataset": name,
                    "source": str(directory),
                    "seed": seed,
                    "val_from": val_from,
                    **counts,
                }
            )
        )
        try:
            os.replace(staging, final)
        except OSError:  # another process finished first: keep its copy
            if not marker.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PreparedData.at(final, len(spec.classes), counts)
