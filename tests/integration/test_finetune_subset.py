"""The labelled subset of ``solo-clamp finetune``: stratified, seeded, repeatable through its
file list, and disjoint from the evaluation split."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from torchvision.datasets import ImageFolder

from solo_clamp.data.label_subset import (
    indices_of,
    read_subset_file,
    relative_names,
    stratified_draw,
    write_subset_file,
)
from solo_clamp.training.finetune import check_disjoint
from solo_clamp.training.linear import sample_paths

# an imbalanced training set: 500, 300 and 120 images of classes 0, 1 and 2, shuffled
LABELS = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [500, 300, 120]))


def test_a_fraction_is_drawn_from_every_class():
    chosen = stratified_draw(LABELS, fraction=0.01, seed=0)
    assert Counter(LABELS[chosen].tolist()) == {0: 5, 1: 3, 2: 1}  # rounded, at least one
    assert list(chosen) == sorted(set(chosen.tolist()))  # sorted, no repeats
    chosen = stratified_draw(LABELS, per_class=7, seed=0)
    assert Counter(LABELS[chosen].tolist()) == {0: 7, 1: 7, 2: 7}


def test_the_draw_is_seeded():
    first, again = (stratified_draw(LABELS, fraction=0.1, seed=3) for _ in range(2))
    other = stratified_draw(LABELS, fraction=0.1, seed=4)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert len(first) == len(other) == 92


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({}, "exactly one"),
        ({"fraction": 0.1, "per_class": 2}, "exactly one"),
        ({"fraction": 0.0}, r"labels.fraction must be in \(0, 1\]"),
        ({"per_class": 0}, "labels.per_class must be a positive integer"),
        ({"per_class": 121}, "class 2 has only 120"),
    ],
)
def test_bad_draws_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stratified_draw(LABELS, **kwargs)


def test_the_file_list_repeats_the_draw(tmp_path):
    names = [f"class_{label}/{i:05d}.png" for i, label in enumerate(LABELS)]
    chosen = stratified_draw(LABELS, fraction=0.05, seed=1)
    path = write_subset_file(
        tmp_path / "label_subset.txt",
        [names[i] for i in chosen],
        header="46 labelled images\nlabels: {fraction: 0.05}",
    )
    assert path.read_text().startswith("# 46 labelled images\n# labels:")
    assert indices_of(read_subset_file(path), names, "train") == chosen.tolist()


def test_simclr_imagenet_lists_are_read_as_class_folder_paths(tmp_path):
    listing = tmp_path / "1percent.txt"
    listing.write_text("n01440764_10026.JPEG\nn01443537_2.JPEG\n\n")
    assert read_subset_file(listing) == [
        "n01440764/n01440764_10026.JPEG",
        "n01443537/n01443537_2.JPEG",
    ]


def test_listed_images_must_exist_once(tmp_path):
    with pytest.raises(ValueError, match="1 listed image.*'b/2.png'"):
        indices_of(["a/1.png", "b/2.png"], ["a/1.png"], "the folder")
    with pytest.raises(ValueError, match="more than once"):
        indices_of(["a/1.png", "a/1.png"], ["a/1.png"], "the folder")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no images"):
        read_subset_file(empty)


def test_the_labelled_images_are_disjoint_from_the_evaluation_split(image_folder_factory):
    train = ImageFolder(str(image_folder_factory("train", per_class=6)))
    val = ImageFolder(str(image_folder_factory("val", per_class=2, seed=1)))
    paths, root, labels = sample_paths(train)
    assert relative_names(paths[:1], root) == ["class_0/img_0.png"]
    chosen = stratified_draw(labels, per_class=2, seed=0).tolist()
    check_disjoint(paths, chosen, val)  # separate folders: accepted
    with pytest.raises(ValueError, match="6 labelled image.*also in the evaluation split"):
        check_disjoint(paths, chosen, train)
