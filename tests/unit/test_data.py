"""idx reading and the MNIST -> ImageFolder preparation, on the real MNIST files."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from PIL import Image

from solo_clamp.data.idx import read_idx, verify_sha256sums
from solo_clamp.data.prepare import locate_source, prepare_image_folder


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_roundtrip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_read_idx_rejects_garbage_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "bad")
    header = bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big")
    (tmp_path / "short").write_bytes(header + b"\x00" * 3)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def test_real_mnist_files_have_the_documented_shapes(mnist_source):
    images = read_idx(mnist_source / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_source / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))
    verify_sha256sums(mnist_source, ["t10k-images-idx3-ubyte.gz"])


def test_prepared_image_folder_matches_the_idx_data(mnist_source, tmp_path):
    prepared = prepare_image_folder(
        "mnist", tmp_path, source=mnist_source, train_per_class=3, val_per_class=2
    )
    assert prepared.train_images == 30 and prepared.val_images == 20
    assert sorted(p.name for p in prepared.train.iterdir()) == [str(d) for d in range(10)]
    images = read_idx(mnist_source / "train-images-idx3-ubyte.gz")
    labels = read_idx(mnist_source / "train-labels-idx1-ubyte.gz")
    for png in prepared.train.glob("*/*.png"):
        index = int(png.stem)
        assert labels[index] == int(png.parent.name)
        np.testing.assert_array_equal(np.asarray(Image.open(png)), images[index])
    # no staging directory left behind; a second call reuses the tree
    assert [p.name for p in tmp_path.iterdir()] == [prepared.root.name]
    again = prepare_image_folder(
        "mnist", tmp_path, source=mnist_source, train_per_class=3, val_per_class=2
    )
    assert again == prepared


def test_corrupted_source_is_refused_and_nothing_is_written(mnist_source, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(mnist_source, source)
    data = bytearray((source / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[-1] ^= 0xFF
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="does not match SHA256SUMS"):
        prepare_image_folder("mnist", out, source=source, train_per_class=1, val_per_class=1)
    assert not out.exists() or not any(out.iterdir())


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        prepare_image_folder("cifar", tmp_path)
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        prepare_image_folder("mnist", tmp_path, train_per_class=0)
    with pytest.raises(FileNotFoundError, match="must hold the mnist idx files"):
        locate_source("mnist", tmp_path)


def test_validation_split_from_training_images_is_disjoint(mnist_source, tmp_path):
    prepared = prepare_image_folder(
        "mnist", tmp_path, source=mnist_source, train_per_class=5, val_per_class=4, val_from="train"
    )
    assert prepared.train_images == 50 and prepared.val_images == 40
    train_images = read_idx(mnist_source / "train-images-idx3-ubyte.gz")
    train_labels = read_idx(mnist_source / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(mnist_source / "t10k-images-idx3-ubyte.gz")
    indices = {}
    for split in ("train", "val"):
        indices[split] = set()
        for png in (prepared.root / split).glob("*/*.png"):
            index = int(png.stem)
            assert train_labels[index] == int(png.parent.name)
            np.testing.assert_array_equal(np.asarray(Image.open(png)), train_images[index])
            indices[split].add(index)
    assert len(indices["train"]) == 50 and len(indices["val"]) == 40
    assert not indices["train"] & indices["val"]
    test_pixels = {image.tobytes() for image in test_images}
    assert not any(train_images[i].tobytes() in test_pixels for i in indices["val"])
    # the training subset does not depend on where the validation images come from
    default = prepare_image_folder(
        "mnist", tmp_path, source=mnist_source, train_per_class=5, val_per_class=1
    )
    assert {int(p.stem) for p in default.train.glob("*/*.png")} == indices["train"]
    assert default.root != prepared.root


def test_validation_split_arguments(tmp_path):
    with pytest.raises(ValueError, match="val_from must be one of"):
        prepare_image_folder("mnist", tmp_path, train_per_class=5, val_from="val")
    with pytest.raises(ValueError, match="val_from='train' needs train_per_class"):
        prepare_image_folder("mnist", tmp_path, val_from="train")


def test_the_one_stratified_sampler_excludes_and_caps_per_class():
    """``stratified_draw`` serves prepare-data too: ``exclude`` leaves indices out (the
    training subset, for a validation split drawn from the training images) and ``up_to``
    takes all of a class smaller than ``per_class`` instead of refusing it."""
    from solo_clamp.data.label_subset import stratified_draw
    from solo_clamp.errors import ConfigError

    labels = np.array([0] * 6 + [1] * 3)
    exclude = [0, 1, 6]
    drawn = stratified_draw(labels, per_class=2, seed=3, exclude=exclude)
    assert sorted(labels[drawn].tolist()) == [0, 0, 1, 1] and not set(drawn) & set(exclude)
    capped = stratified_draw(labels, per_class=5, seed=3, exclude=exclude, up_to=True)
    assert capped.tolist() == [2, 3, 4, 5, 7, 8]  # 4 of class 0 and 2 of class 1 are left
    with pytest.raises(ConfigError, match="class 0 has only 4 training images"):
        stratified_draw(labels, per_class=5, seed=3, exclude=exclude)
    unexcluded = stratified_draw(labels, per_class=2, seed=3)
    assert unexcluded.tolist() == stratified_draw(labels, per_class=2, seed=3, exclude=[]).tolist()


def test_without_a_seed_the_sampler_keeps_each_class_prefix_so_subsets_nest():
    """``seed=None`` (compare's scored subsets of prepared images): the first ``per_class`` of
    each class in index order, ``exclude`` skipped; a smaller count is a subset of a larger."""
    from solo_clamp.data.label_subset import stratified_draw

    labels = np.array([1, 0, 1, 1, 0, 2, 0, 1, 2, 0])
    assert stratified_draw(labels, per_class=2, seed=None).tolist() == [0, 1, 2, 4, 5, 8]
    assert stratified_draw(labels, per_class=2, seed=None, exclude=[0, 4]).tolist() == [
        1,
        2,
        3,
        5,
        6,
        8,
    ]
    assert stratified_draw(labels, fraction=1.0, seed=None, exclude=[3]).tolist() == [
        0,
        1,
        2,
        4,
        5,
        6,
        7,
        8,
        9,
    ]
    assert stratified_draw([], per_class=2, seed=None, up_to=True).tolist() == []  # no images
    for count in (1, 2, 3):
        small = set(stratified_draw(labels, per_class=count, seed=None, up_to=True).tolist())
        large = set(stratified_draw(labels, per_class=count + 1, seed=None, up_to=True).tolist())
        assert small < large


def test_an_offline_machine_without_the_idx_files_gets_one_line_naming_where_it_looked(
    tmp_path, monkeypatch
):
    """torchvision's download error (no network) becomes a DataError that says where the
    files were looked for and how to point at them, not a traceback."""
    import torchvision.datasets

    from solo_clamp.data.prepare import SourceNotFoundError, locate_source
    from solo_clamp.errors import DataError

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://...")

    monkeypatch.chdir(tmp_path)  # no ../shared/data/mnist beside it
    monkeypatch.delenv("SOLO_CLAMP_MNIST_DIR", raising=False)
    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(SourceNotFoundError) as raised:
        locate_source("mnist", download_root=tmp_path)
    message = str(raised.value)
    assert isinstance(raised.value, DataError) and "\n" not in message
    assert "no mnist idx files in ../shared/data/mnist" in message
    assert "set $SOLO_CLAMP_MNIST_DIR or prepare_data.source" in message
    assert message.endswith("failed: Error downloading train-images-idx3-ubyte.gz:")
