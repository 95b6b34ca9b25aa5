"""The comparison's data: where the images are, which images each stage reads (the tuning
validation split, the kNN bank, the test images), the views, the evaluation transform and the
kNN protocol."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Optional, Sequence

import torchvision.datasets
from omegaconf import DictConfig, OmegaConf
from solo.data.pretrain_dataloader import build_transform_pipeline
from torchvision.datasets import ImageFolder

from solo_clamp.compare.strength import transfer_config, variant_augmentations
from solo_clamp.data.label_subset import stratified_draw
from solo_clamp.data.prepare import DATASETS as IDX_SPECS
from solo_clamp.data.prepare import locate_source, prepare_image_folder
from solo_clamp.errors import ConfigError, DataError
from solo_clamp.evaluation import eval_transform
from solo_clamp.provenance import sha256_of_images

DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100", "imagenet100", "image_folder")
IDX_DATASETS = ("fashion_mnist", "mnist")  # prepared from idx files, subsets per class
TORCHVISION_DATASETS = ("cifar10", "cifar100")


@dataclass(frozen=True)
class ComparisonData:
    """Where the images are and how solo-learn names the dataset."""

    name: str
    solo_dataset: str  # solo-learn's data.dataset: custom, cifar10, cifar100, imagenet100
    train_path: str
    val_path: str
    # Indices of the training split held out as the tuning validation set (sorted): no run
    # trains on them and no kNN bank or linear probe of a test score contains them.
    held_out: tuple[int, ...] = ()
    # geometry.transfer.dataset: images no run trains on (solo_clamp.compare.transfer)
    transfer: Optional[ComparisonData] = None

    def dataset(self, split: str, transform: Callable):
        """The ``train`` or ``val`` split with ``transform`` (labels as ``.targets``)."""
        if self.solo_dataset in TORCHVISION_DATASETS:
            dataset_class = vars(torchvision.datasets)[self.solo_dataset.upper()]
            return dataset_class(
                self.train_path, train=split == "train", download=True, transform=transform
            )
        return ImageFolder(self.train_path if split == "train" else self.val_path, transform)


def _idx_source(name: str, source: Optional[str]) -> Path:
    """The directory with the idx files of MNIST / Fashion-MNIST, never downloading."""
    spec = IDX_SPECS[name]
    if source:
        candidates = [Path(source)]
    else:
        env = os.environ.get(spec.env_var)
        candidates = [Path(env)] if env else []
        candidates += list(spec.default_dirs)
    for directory in candidates:
        try:
            return locate_source(name, source=directory)
        except FileNotFoundError:
            continue
    looked = ", ".join(str(c) for c in candidates)
    if name == "fashion_mnist":
        raise DataError(
            f"the Fashion-MNIST idx files were not found (looked in {looked}): install them "
            "with `apt-get install dataset-fashion-mnist`, or set $SOLO_CLAMP_FASHION_MNIST_DIR "
            "or data.source to a directory holding them."
        )
    raise DataError(
        f"the MNIST idx files were not found (looked in {looked}): set $SOLO_CLAMP_MNIST_DIR "
        "or data.source to a directory holding them."
    )


def prepare_data(cfg: DictConfig) -> ComparisonData:
    """Prepares (once) or locates the comparison's images (and ``geometry.transfer``'s); with
    tuning, draws the validation split from the training images."""
    data = _locate_data(cfg)
    transfer = transfer_config(cfg)
    if transfer is not None:
        data = dataclasses.replace(data, transfer=_locate_data(transfer))
    if not OmegaConf.select(cfg, "tuning.enabled"):
        return data
    targets = data.dataset("train", None).targets
    held_out = held_out_indices(targets, cfg.tuning.val_per_class, cfg.tuning.seed)
    return dataclasses.replace(data, held_out=tuple(held_out))


def _locate_data(cfg: DictConfig) -> ComparisonData:
    data = cfg.data
    if cfg.dataset in IDX_DATASETS:
        prepared = prepare_image_folder(
            cfg.dataset,
            root=data.root,
            source=_idx_source(cfg.dataset, data.source),
            train_per_class=data.train_per_class,
            val_per_class=data.val_per_class,
            seed=data.seed,
        )
        return ComparisonData(cfg.dataset, "custom", str(prepared.train), str(prepared.val))
    if cfg.dataset in TORCHVISION_DATASETS:
        root = str(data.get("root") or "datasets")
        return ComparisonData(cfg.dataset, cfg.dataset, root, root)
    for key in ("train_path", "val_path"):
        if not Path(str(data[key])).is_dir():
            raise DataError(f"data.{key}={str(data[key])!r} is not a directory.")
    solo_name = "imagenet100" if cfg.dataset == "imagenet100" else "custom"
    return ComparisonData(cfg.dataset, solo_name, str(data.train_path), str(data.val_path))


def held_out_indices(targets: Sequence[int], per_class: int, seed: int) -> list[int]:
    """``per_class`` indices of every class drawn at random with ``seed`` (sorted;
    :func:`~solo_clamp.data.label_subset.stratified_draw`)."""
    counts = Counter(int(t) for t in targets)
    for target, count in sorted(counts.items()):
        if count <= per_class:
            raise ConfigError(
                f"tuning.val_per_class ({per_class}) must be smaller than the training images "
                f"of every class: class {target} has {count}."
            )
    return stratified_draw(targets, per_class=per_class, seed=seed).tolist()


def stratified_indices(
    targets: Sequence[int], per_class: Optional[int], exclude: Collection[int] = ()
) -> list[int]:
    """The first ``per_class`` indices of every class (all when None), ``exclude`` left out:
    nested subsets of the prepared images, which are already a seeded draw."""
    count = {"per_class": per_class} if per_class is not None else {"fraction": 1.0}
    return stratified_draw(targets, seed=None, exclude=list(exclude), up_to=True, **count).tolist()


def bank_indices(cfg: DictConfig, data: ComparisonData, targets: Sequence[int]) -> list[int]:
    """The kNN bank / linear training set: ``evaluation.train_per_class`` training images per
    class, the tuning validation images left out."""
    return stratified_indices(targets, cfg.evaluation.train_per_class, data.held_out)


def test_indices(cfg: DictConfig, targets: Sequence[int]) -> list[int]:
    """The test images scored: ``evaluation.val_per_class`` per class of the test split."""
    return stratified_indices(targets, cfg.evaluation.val_per_class)


def training_indices(data: ComparisonData, targets: Sequence[int]) -> list[int]:
    """The images the runs train on: every training image but the tuning validation split."""
    held_out = set(data.held_out)
    return [i for i in range(len(targets)) if i not in held_out]


def _image_items(dataset, indices: Sequence[int]) -> Iterator[tuple[bytes, int]]:
    """(the stored image's bytes, label) of each index: the file of an ImageFolder, the array
    of a torchvision dataset."""
    samples = getattr(dataset, "samples", None)
    for i in indices:
        if samples is not None:
            path, label = samples[i]
            yield Path(path).read_bytes(), label
        else:
            yield dataset.data[i].tobytes(), dataset.targets[i]


def data_sha256(cfg: DictConfig, data: ComparisonData, validation: bool = False) -> str:
    """sha256 of the prepared training images the runs use, the kNN bank's and the scored
    images (files and labels, in order): the test images, or (``validation``: what a tuning
    trial reads, never the test split) the validation images. The ``data_sha256`` column."""
    train = data.dataset("train", None)
    groups = [
        ("train", _image_items(train, training_indices(data, train.targets))),
        ("bank", _image_items(train, bank_indices(cfg, data, train.targets))),
    ]
    if validation:
        groups.append(("validation", _image_items(train, data.held_out)))
    else:
        test = data.dataset("val", None)
        groups.append(("test", _image_items(test, test_indices(cfg, test.targets))))
        for split in ("train", "val") if data.transfer is not None else ():  # transfer's
            images = data.transfer.dataset(split, None)
            groups.append((f"transfer_{split}", _image_items(images, range(len(images)))))
    return sha256_of_images(groups)


def normalisation(cfg: DictConfig, data: ComparisonData) -> tuple[list[float], list[float]]:
    """Mean and std of the training views (read from solo-learn's own pipeline)."""
    normalize = build_transform_pipeline(data.solo_dataset, augmentation_sets(cfg, 2)[0])
    last = normalize.transforms[-1]
    return [float(v) for v in last.mean], [float(v) for v in last.std]


def augmentation_sets(
    cfg: DictConfig, views: int, variant: Optional[str] = None
) -> list[DictConfig]:
    """The shared transform sets (of ``variant``: ``compare.strength``) with ``views / sets``
    crops each, mean/std filled in."""
    sets = []
    for aug in variant_augmentations(cfg, variant):
        aug = OmegaConf.create(OmegaConf.to_container(aug, resolve=True))
        aug.num_crops = views // len(cfg.augmentations)
        if cfg.dataset in IDX_DATASETS and "mean" not in aug:
            spec = IDX_SPECS[cfg.dataset]
            aug.mean, aug.std = [spec.mean] * 3, [spec.std] * 3
        sets.append(aug)
    return sets


def eval_split(cfg: DictConfig, data: ComparisonData, split: str, crop_size: Optional[int] = None):
    """The ``train`` or ``val`` split with the evaluation transform: centre crop at
    ``crop_size`` (default: the views' crop size), the training views' mean and std."""
    mean, std = normalisation(cfg, data)
    return data.dataset(
        split, eval_transform(crop_size or cfg.augmentations[0].crop_size, mean, std)
    )


def knn_settings(cfg: DictConfig) -> dict[str, Any]:
    """The comparison's kNN protocol (``evaluation.k``, ``temperature``, ``distance``), as
    :func:`~solo_clamp.evaluation.knn_accuracy` takes it."""
    ev = cfg.evaluation
    return {"k": ev.k, "temperature": ev.temperature, "distance": ev.get("distance", "cosine")}
