"""Bad input to ``solo-clamp pretrain``: one test per row of docs/bad_input.md.

Each case runs the console command's entry point (``solo_clamp.cli.main``) in-process on a
tiny generated ImageFolder and checks the exact one-line message the user sees on stderr,
the exit status 2, and that the error comes before any heavy work: the model constructor
is patched to fail the test if it is reached, and no checkpoint directory is created.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from clamp_testing import tiny_pretrain_overrides

from solo_clamp.cli import main
from solo_clamp.data.robust import BadImageWarning, guard_train_dataset
from solo_clamp.internals import backbone_builders
from solo_clamp.losses.clamp import clamp_loss_func

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PREFIX = "solo-clamp pretrain: error: "
FAST_S = 20.0  # generous: the checks themselves take well under a second


def tiny(images: Path, checkpoint_dir: Path, *extra: str, batches: int = 2) -> list[str]:
    """Overrides of the MNIST config for a tiny CPU run (12 images of 16 px, batch 4)."""
    return tiny_pretrain_overrides(
        images,
        checkpoint_dir,
        "max_epochs=1",
        f"+limit_train_batches={batches}",
        "+enable_progress_bar=False",
        *extra,
    )


@pytest.fixture
def images(image_folder_factory) -> Path:
    return image_folder_factory("images", classes=3, per_class=4, size=16)


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the CLAMP model is built: bad input must be reported before."""
    from solo_clamp.methods.clamp import CLAMP

    def refuse(self, cfg):
        raise AssertionError("the model was built before the bad input was reported")

    monkeypatch.setattr(CLAMP, "__init__", refuse)


@pytest.fixture
def pretrain(tmp_path, capsys):
    """Runs ``solo-clamp pretrain`` with the tiny overrides; returns (status, stderr lines)."""

    def run(images: Path, *overrides: str, batches: int = 2) -> tuple[int, list[str], float]:
        capsys.readouterr()
        start = time.perf_counter()
        code = main(["pretrain", *tiny(images, tmp_path / "ckpt", *overrides, batches=batches)])
        elapsed = time.perf_counter() - start
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith(PREFIX)]
        return code, errors, elapsed

    return run


def assert_rejected_early(result, message: str, checkpoint_dir: Path) -> None:
    code, errors, elapsed = result
    assert code == 2
    assert errors == [PREFIX + message]
    assert elapsed < FAST_S
    assert not checkpoint_dir.exists()


EARLY = [
    pytest.param(
        ["augmentations.0.num_crops=1"],
        "method=clamp takes at least 2 views per image (each image is a sub-manifold of its "
        "views): the crops per image (data.num_large_crops + data.num_small_crops, or the sum "
        "of augmentations[*].num_crops) must be at least 2, got 1.",
        id="one_view",
    ),
    pytest.param(
        ["optimizer.batch_size=1"],
        "optimizer.batch_size=1 on a single device gives one sub-manifold per step and nothing "
        "to pack: use optimizer.batch_size >= 2.",
        id="batch_size_1_single_device",
    ),
    pytest.param(
        ["augmentations.0.num_crops=0"],
        "augmentations[0].num_crops must be an integer >= 1, got 0.",
        id="zero_crops",
    ),
    pytest.param(
        ["augmentations.0.num_crops=2.5"],
        "augmentations[0].num_crops must be an integer >= 1, got 2.5.",
        id="fractional_crops",
    ),
    pytest.param(
        ["backbone.name=resnet9000"],
        f"backbone.name must be one of {sorted(backbone_builders())}, got 'resnet9000'.",
        id="unknown_backbone",
    ),
    pytest.param(
        ["data.dataset=imagenet2"],
        "data.dataset must be one of ['cifar10', 'cifar100', 'stl10', 'imagenet', "
        "'imagenet100', 'custom'], got 'imagenet2'.",
        id="unknown_dataset",
    ),
    pytest.param(["method_kwargs.rs=0"], "method_kwargs.rs must be > 0, got 0.", id="rs_zero"),
    pytest.param(
        ["method_kwargs.rs=-7.0"], "method_kwargs.rs must be > 0, got -7.0.", id="rs_negative"
    ),
    pytest.param(
        ["method_kwargs.max_range=0.001"],
        "method_kwargs: max_range must be > min_margin, got max_range=0.001, min_margin=0.001.",
        id="max_range_equal_min_margin",
    ),
    pytest.param(
        ["method_kwargs.max_range=0.5", "method_kwargs.min_margin=0.8"],
        "method_kwargs: max_range must be > min_margin, got max_range=0.5, min_margin=0.8.",
        id="max_range_below_min_margin",
    ),
    pytest.param(
        ["devices=2", "+strategy=ddp", "+sync_batchnorm=True"],
        "sync_batchnorm=True needs CUDA GPUs: torch's SyncBatchNorm has no CPU implementation, "
        "so this 2-process CPU run cannot use it; set sync_batchnorm=False (each process then "
        "normalises over its own batch).",
        id="sync_batchnorm_on_cpu",
    ),
    pytest.param(
        ["data.on_bad_image=maybe"],
        "data.on_bad_image must be one of ['error', 'skip', 'off'], got 'maybe'.",
        id="unknown_on_bad_image",
    ),
    pytest.param(
        ["max_epochs=abc"],
        "max_epochs must be an integer or null, got 'abc'.",
        id="max_epochs_not_an_integer",
    ),
    pytest.param(
        ["optimizer.lr=fast"],
        "optimizer.lr must be a number, got 'fast'.",
        id="lr_not_a_number",
    ),
    pytest.param(
        ["optimizer.batch_size=4.5"],
        "optimizer.batch_size must be an integer, got 4.5.",
        id="batch_size_not_an_integer",
    ),
    pytest.param(
        ["seed=[1,2]"],
        "seed must be an integer, got [1, 2].",
        id="seed_not_an_integer",
    ),
    pytest.param(
        ["optimizer.batch_size=16"],
        "data.train_path has 12 training images, fewer than one batch (optimizer.batch_size=16): "
        "with drop_last nothing would be trained; lower optimizer.batch_size or add images.",
        id="fewer_images_than_a_batch",
    ),
]


@pytest.mark.parametrize("overrides, message", EARLY)
def test_bad_config_is_rejected_before_heavy_work(
    overrides, message, images, pretrain, tmp_path, no_model
):
    assert_rejected_early(pretrain(images, *overrides), message, tmp_path / "ckpt")


def test_a_field_of_the_wrong_type_is_refused_before_the_data_is_prepared(
    tmp_path, capsys, monkeypatch, no_model
):
    """The shipped MNIST config prepares its ImageFolder first; a mistyped field stops the
    run before that (Lightning itself would refuse it only once the model is built)."""
    from solo_clamp.training import pretrain

    def refuse(**kwargs):
        raise AssertionError("the data was prepared before the bad field was reported")

    monkeypatch.setattr(pretrain, "prepare_image_folder", refuse)
    code = main(["pretrain", "max_epochs=abc", f"checkpoint.dir={tmp_path / 'ckpt'}"])
    assert code == 2
    assert capsys.readouterr().err == (
        f"{PREFIX}max_epochs must be an integer or null, got 'abc'.\n"
    )
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    "command, override, message",
    [
        ("linear", "max_epochs=abc", "max_epochs must be an integer or null, got 'abc'"),
        ("finetune", "optimizer.weight_decay=none", "optimizer.weight_decay must be a number"),
        ("few-label", "batch_size=big", "batch_size must be an integer, got 'big'."),
        ("knn", "num_workers=1.5", "num_workers must be an integer, got 1.5."),
        ("knn", "k=[5]", "pretrained_checkpoint: give a .ckpt file or its run directory."),
    ],
)
def test_the_other_programs_check_the_field_types_first(command, override, message, capsys):
    """Before the checkpoint (``???`` in these configs) is even looked for."""
    assert main([command, override]) == 2
    assert capsys.readouterr().err.startswith(f"solo-clamp {command}: error: {message}")


def test_every_shipped_config_has_the_field_types():
    from solo_clamp.configs import config_dir
    from solo_clamp.configs.compose import compose_config
    from solo_clamp.training.checks import check_field_types

    checked = 0
    for kind in ("pretrain", "linear"):
        root = config_dir(kind)
        for path in sorted(root.rglob("*.yaml")):
            if "augmentations" not in path.parts:
                check_field_types(compose_config(kind, str(path.parent.resolve()), path.name))
                checked += 1
    assert checked >= 20


def test_missing_data_directory(tmp_path, pretrain, no_model):
    missing = tmp_path / "no_such_dir"
    result = pretrain(missing)
    assert_rejected_early(
        result,
        f"data.train_path='{missing}' does not exist or is not a directory.",
        tmp_path / "ckpt",
    )


def test_empty_data_directory(tmp_path, pretrain, no_model):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_rejected_early(
        pretrain(empty),
        f"data.train_path='{empty}' is empty: it must hold the training images.",
        tmp_path / "ckpt",
    )


def test_dali_without_a_gpu(images, pretrain, tmp_path, no_model):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: data.format=dali is not rejected here")
    assert_rejected_early(
        pretrain(images, "data.format=dali"),
        "data.format=dali needs an NVIDIA GPU with CUDA, and none is available here: use "
        "data.format=image_folder (or h5) on this machine.",
        tmp_path / "ckpt",
    )


def corrupt(images: Path) -> tuple[Path, Path]:
    """A PNG with garbage bytes and a JPEG truncated after its header."""
    garbage = images / "class_0" / "img_0.png"
    garbage.write_bytes(b"this is not a PNG file")
    jpeg = images / "class_1" / "img_0.jpg"
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(jpeg, quality=95)
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) // 2])
    return garbage, jpeg


def test_corrupted_image_is_an_error_naming_the_file_by_default(
    images, pretrain, tmp_path, no_model
):
    garbage, jpeg = corrupt(images)
    jpeg.unlink()  # one bad file here; both kinds are counted in the skip test below
    reason = f"cannot identify image file '{garbage}'"
    assert_rejected_early(
        pretrain(images),
        f"data.on_bad_image=error: 1 of 12 images cannot be read: '{garbage}' ({reason}); "
        "fix or remove them, or set data.on_bad_image=skip to train without them.",
        tmp_path / "ckpt",
    )


def test_corrupted_image_is_skipped_with_a_warning_under_skip(images, pretrain, tmp_path):
    garbage, jpeg = corrupt(images)
    jpeg.unlink()
    with pytest.warns(BadImageWarning) as caught:
        code, errors, _ = pretrain(images, "data.on_bad_image=skip")
    assert (code, errors) == (0, [])
    (warning,) = [w for w in caught if issubclass(w.category, BadImageWarning)]
    assert str(warning.message) == (
        f"data.on_bad_image=skip: 1 of 12 images cannot be read: '{garbage}' "
        f"(cannot identify image file '{garbage}'); skipping them and training on the other 11."
    )
    assert list((tmp_path / "ckpt").glob("clamp/*/*.ckpt"))


def test_skip_counts_every_unreadable_file_and_keeps_labels_aligned(images):
    from solo.data.pretrain_dataloader import dataset_with_index
    from torchvision.datasets import ImageFolder

    garbage, jpeg = corrupt(images)
    dataset = dataset_with_index(ImageFolder)(images, lambda x: x)
    assert len(dataset) == 13  # 11 good PNGs, the garbage PNG and the truncated JPEG
    with pytest.warns(BadImageWarning, match=r": 2 of 13 images cannot be read: "):
        guard_train_dataset(dataset, "skip")
    assert dataset.skipped_images == [
        (str(garbage), f"cannot identify image file '{garbage}'"),
        (str(jpeg), "Truncated File Read"),
    ]
    assert len(dataset) == len(dataset.targets) == len(dataset.imgs) == 11
    assert all(dataset.targets[i] == dataset.samples[i][1] for i in range(11))


def test_off_skips_the_check_and_a_bad_file_fails_when_loaded_naming_it(images, pretrain, tmp_path):
    """``data.on_bad_image=off`` (no start-up cost): the loader guard names the file."""
    garbage, jpeg = corrupt(images)
    jpeg.unlink()
    code, errors, _ = pretrain(images, "data.on_bad_image=off", batches=3)  # loads all 12
    assert code == 2
    assert errors == [
        f"{PREFIX}cannot read training image '{garbage}' (cannot identify image file "
        f"'{garbage}'): fix or remove the file; data.on_bad_image=skip drops the files that "
        "fail the start-up check."
    ]
    assert not list((tmp_path / "ckpt").glob("clamp/*/*.ckpt"))


def test_diverging_training_names_the_step_and_suggests_a_lower_lr(images, pretrain, tmp_path):
    """Non-finite embeddings can only show up during training: the first such step stops it."""
    diverge = ["optimizer.name=sgd", "~optimizer.kwargs", "optimizer.lr=1e30"]  # no LARS clip
    code, errors, _ = pretrain(images, *diverge)
    assert code == 2
    assert errors == [
        f"{PREFIX}non-finite embeddings at global step 1 (epoch 0, batch 1): training "
        "diverged. Lower optimizer.lr or enable gradient clipping (gradient_clip_val)."
    ]
    assert not list((tmp_path / "ckpt").glob("clamp/*/*.ckpt"))


def test_loss_rows_not_divisible_into_views():
    """Python API: the loss needs view-major rows ``[num_views * B, D]``."""
    with pytest.raises(ValueError) as raised:
        clamp_loss_func(torch.randn(10, 8), num_views=4, rs=7.0)
    assert str(raised.value) == (
        "z has 10 rows, which is not divisible by num_views=4; rows must be view-major "
        "[num_views * B, D]."
    )
