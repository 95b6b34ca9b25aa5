"""The strength axis of ``solo-clamp compare`` (``variants``) and the encoder-against-projector
measures (``geometry``): a tiny comparison with two variants, the transfer scores (which never
read the pretraining images), the config checks and the shipped study config."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from clamp_testing import tiny_comparison_config
from omegaconf import OmegaConf

from solo_clamp import compare
from solo_clamp.cli import main
from solo_clamp.compare import runner
from solo_clamp.compare.encoder_projector import COLUMNS, floor_measures
from solo_clamp.compare.plan import RunSpec
from solo_clamp.compare.run_cfg import solo_cfg

VARIANTS = {
    "strong": {"strength": 1.5, "augmentations": [{"rrc": {"crop_min_scale": 0.1}}]},
    "weak": {
        "strength": 0.5,
        "augmentations": [{"rrc": {"crop_min_scale": 0.8}, "color_jitter": {"brightness": 0.1}}],
    },
}
RUNS = [
    "clamp-equal_epochs-weak-s0",
    "simclr-equal_epochs-weak-s0",
    "clamp-equal_epochs-strong-s0",
    "simclr-equal_epochs-strong-s0",
]


def _strength_config(image_folder_factory, **fields) -> dict:
    """The tiny comparison (3 classes, 16 px, batch 8) with two variants, the geometry
    measures on 2 held-out images per class in 3 views, and a 4-class transfer dataset."""
    transfer_train = image_folder_factory("transfer_train", classes=4, per_class=4, size=16, seed=7)
    transfer_val = image_folder_factory("transfer_val", classes=4, per_class=2, size=16, seed=8)
    return tiny_comparison_config(
        image_folder_factory,
        8,
        seeds=[0],
        epochs=1,
        budgets=["equal_epochs"],
        variants=VARIANTS,
        evaluation={
            "linear": {"epochs": 10},
            "few_label": {"enabled": True, "per_class": 2, "draws": 2},
        },
        geometry={
            "enabled": True,
            "per_class": 2,
            "views": 3,
            "transfer": {
                "dataset": "image_folder",
                "train_path": str(transfer_train),
                "val_path": str(transfer_val),
                "train_per_class": None,
                "val_per_class": None,
            },
        },
        **fields,
    )


@pytest.fixture
def strength_config(tmp_path, image_folder_factory) -> Path:
    path = tmp_path / "strength.yaml"
    OmegaConf.save(OmegaConf.create(_strength_config(image_folder_factory)), path)
    return path


def _table(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_a_tiny_comparison_with_two_variants_writes_both_variants_rows(
    strength_config, tmp_path, capsys, monkeypatch
):
    from solo.methods import METHODS

    out = tmp_path / "out"
    assert main(["compare", "--config", str(strength_config), "--out", str(out)]) == 0
    table = _table(out)
    rows = {r["run_id"]: r for r in table if r["kind"] in ("run", "floor")}
    assert list(rows) == ["floor-raw_pixels", "floor-untrained-s0", *RUNS]
    for run_id in RUNS:
        row = rows[run_id]
        variant = run_id.split("-")[2]
        assert row["variant"] == variant
        assert float(row["strength"]) == VARIANTS[variant]["strength"]
        for space in ("encoder", "projector"):
            assert 0.0 <= float(row[f"{space}_invariance"]) <= 1.0
            assert float(row[f"{space}_effective_rank"]) >= 1.0
            assert float(row[f"{space}_participation_ratio"]) >= 1.0
            for key in ("knn_top1", "few_label_mean"):
                assert 0.0 <= float(row[f"{space}_{key}"]) <= 100.0
                assert 0.0 <= float(row[f"transfer_{space}_{key}"]) <= 100.0
        assert 0.0 <= float(row["tangent_share"]) <= 1.0
        assert 0.0 < float(row["tangent_chance"]) <= 2 / 512  # span of 3 views, ResNet-18 width
        # the encoder's scores are the run's own scores (the same features)
        assert float(row["encoder_knn_top1"]) == pytest.approx(float(row["knn_top1"]))
        assert float(row["encoder_few_label_mean"]) == pytest.approx(float(row["few_label_mean"]))
    for floor in ("floor-raw_pixels", "floor-untrained-s0"):
        assert rows[floor]["variant"] == "" and rows[floor]["strength"] == ""
        assert 0.0 <= float(rows[floor]["transfer_encoder_knn_top1"]) <= 100.0
        assert (
            rows[floor]["transfer_projector_knn_top1"] == "" and rows[floor]["tangent_share"] == ""
        )
    curves = [r for r in table if r["kind"] == "curve" and r["run_id"] == RUNS[2]]
    assert curves and {r["variant"] for r in curves} == {"strong"}

    # each variant trained on its own views, the rest of the transform set shared
    runs = out / "runs"
    weak = OmegaConf.load(runs / RUNS[0] / "config.yaml").augmentations[0]
    strong = OmegaConf.load(runs / RUNS[2] / "config.yaml").augmentations[0]
    assert (weak.rrc.crop_min_scale, strong.rrc.crop_min_scale) == (0.8, 0.1)
    assert (weak.color_jitter.brightness, strong.color_jitter.brightness) == (0.1, 0.4)
    assert weak.crop_size == strong.crop_size == 16 and weak.gaussian_blur == strong.gaussian_blur

    # the projector is kept: it loads strictly into the run's method built from its config
    for run_id in (RUNS[0], RUNS[1]):
        cfg = OmegaConf.load(runs / run_id / "config.yaml")
        model = METHODS[cfg.method](cfg)
        state = torch.load(runs / run_id / "projector.pt", weights_only=True)
        model.projector.load_state_dict(state, strict=True)

    md = (out / "results.md").read_text()
    assert "| equal_epochs, weak | clamp | 4 | 1 |" in md
    assert "| equal_epochs, strong | simclr | 2 | 1 |" in md
    assert "## Augmentation strength: encoder against projector" in md
    weak_row = rows[RUNS[0]]  # invariance near 1: 4 decimals, the other measures 2
    invariance = (float(weak_row[f"{space}_invariance"]) for space in ("encoder", "projector"))
    knn = (float(weak_row[f"{space}_knn_top1"]) for space in ("encoder", "projector"))
    assert "| clamp | equal_epochs | weak | 0.5 | 1 | {:.4f} / {:.4f} |".format(*invariance) in md
    assert " | {:.2f} / {:.2f} | ".format(*knn) in md
    assert "| simclr | equal_epochs | strong | 1.5 | 1 |" in md
    assert "Transfer floors on image_folder" in md
    assert (out / "strength.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a rerun reuses every run (the fingerprints carry the variant and the geometry settings)
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "train", no_training)
    capsys.readouterr()
    assert main(["compare", "--config", str(strength_config), "--out", str(out)]) == 0
    assert "trained 0 run(s), skipped 6 finished" in capsys.readouterr().out


def test_transfer_scoring_never_touches_the_pretraining_images(
    strength_config, monkeypatch, tmp_path
):
    """The pretraining images are deleted before the transfer scores: they still come, and
    every image file opened lies in the transfer dataset."""
    import PIL.Image

    from solo_clamp.compare.data import prepare_data
    from solo_clamp.compare.scores import floor_extractor
    from solo_clamp.compare.transfer import transfer_scores

    cfg = compare.load_config(strength_config)
    data = prepare_data(cfg)
    backbone, _ = floor_extractor(cfg, data, "untrained", 0)
    raw_pixels, size = floor_extractor(cfg, data, "raw_pixels", 0)
    projector = torch.nn.Sequential(
        torch.nn.Linear(512, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)
    )
    shutil.rmtree(data.train_path)
    shutil.rmtree(data.val_path)
    opened: list[Path] = []
    original = PIL.Image.open

    def spy(fp, *args, **kwargs):
        opened.append(Path(getattr(fp, "name", fp)).resolve())
        return original(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", spy)
    scores = transfer_scores(cfg, data.transfer, backbone, projector)
    assert (
        set(scores)
        == {
            f"transfer_{space}_{key}"
            for space in ("encoder", "projector")
            for key in ("knn_top1", "few_label_mean")
        }
        <= set(COLUMNS)
    )
    assert all(0.0 <= value <= 100.0 for value in scores.values())
    floors = floor_measures(cfg, data, raw_pixels, size)
    assert set(floors) == {"transfer_encoder_knn_top1", "transfer_encoder_few_label_mean"}
    transfer_root = Path(data.transfer.train_path).resolve().parent
    assert len(opened) == 2 * (16 + 8)  # the backbone's and raw pixels' banks and test images
    assert all(transfer_root in path.parents for path in opened)
    assert not any(path.is_relative_to(tmp_path / "train") for path in opened)


def _cfg(path: Path, **fields):
    cfg = compare.load_config(path)
    for key, value in fields.items():
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"variants": {}}, "variants must be null or a non-empty mapping"),
        ({"variants.we-ak": {"strength": 1.0}}, "variants.we-ak is not a valid name"),
        ({"variants.weak.strength": None}, "variants.weak.strength must be a finite number"),
        ({"variants.weak.strength": 1.5}, r"variants.weak.strength \(1.5\) repeats variants"),
        ({"variants.weak.size": 2}, "variants.weak.size is not a field of a variant"),
        ({"variants.weak.augmentations": [{}, {}]}, "variants.weak.augmentations must be a list"),
        (
            {"variants.weak.augmentations": [{"crop_size": 32}]},
            r"variants.weak.augmentations\[0\].crop_size may not be set by a variant",
        ),
        (
            {"variants.weak.augmentations": [{"rrc": {"crop_min_scal": 0.5}}]},
            r"variants.weak.augmentations\[0\].rrc.crop_min_scal is not a field",
        ),
        ({"tuning.enabled": True}, "variants cannot be combined with tuning.enabled"),
        ({"geometry.enabled": "yes"}, "geometry.enabled must be true or false"),
        ({"geometry.views": 1}, "geometry.views must be an integer >= 2"),
        ({"geometry.transfer.dataset": "svhn"}, "geometry.transfer.dataset must be null or one"),
        ({"geometry.transfer.val_path": None}, "geometry.transfer.val_path is required"),
        (
            {"geometry.enabled": False},
            "geometry.transfer.dataset needs geometry.enabled: true",
        ),
        (
            {"geometry.transfer.train_per_class": 0},
            "geometry.transfer.train_per_class must be a positive integer or null",
        ),
    ],
)
def test_strength_config_errors_name_the_field(strength_config, fields, message):
    cfg = _cfg(strength_config, **fields)
    with pytest.raises(ValueError, match=message):
        compare.validate_config(cfg)


def test_a_transfer_dataset_must_not_be_the_pretraining_one():
    cfg = compare.load_config(compare.CONFIG_DIR / "mnist_strength.yaml")
    cfg.geometry.transfer.dataset = "mnist"
    with pytest.raises(ValueError, match=r"geometry.transfer.dataset \('mnist'\) must differ"):
        compare.validate_config(cfg)


def test_the_strength_study_plans_every_method_under_every_variant(tmp_path):
    """scripts/compare/mnist_strength.yaml: the variants in order of strength, each method
    under each with the same seeds and steps; the views differ by variant only."""
    from solo_clamp.compare.data import ComparisonData

    cfg = compare.load_config(compare.CONFIG_DIR / "mnist_strength.yaml")
    compare.validate_config(cfg)
    runs = compare.plan_runs(cfg, steps_per_epoch=156)
    strengths = {name: float(node.strength) for name, node in cfg.variants.items()}
    assert len(strengths) >= 3 and len(cfg.seeds) >= 2
    assert len(runs) == len(cfg.seeds) * len(strengths) * len(cfg.methods)
    assert {(r.method, r.seed, r.steps) for r in runs if r.variant == "weak"} == {
        (r.method, r.seed, r.steps) for r in runs if r.variant == "strong"
    }
    assert [r.variant for r in runs[: len(strengths) * len(cfg.methods)]] == [
        v for v in sorted(strengths, key=strengths.get) for _ in cfg.methods
    ]
    data = ComparisonData("mnist", "custom", str(tmp_path), str(tmp_path))
    sets = {
        r.variant: solo_cfg(cfg, r, data).augmentations[0]
        for r in runs
        if r.method == cfg.methods[0]
    }
    assert sets["main"].rrc.crop_min_scale == cfg.augmentations[0].rrc.crop_min_scale
    assert sets["weak"].rrc.crop_min_scale > sets["main"].rrc.crop_min_scale
    assert sets["strong"].rrc.crop_min_scale < sets["main"].rrc.crop_min_scale
    assert len({s.crop_size for s in sets.values()}) == 1
    # without variants a run keeps its id and its views
    spec = RunSpec(cfg.methods[0], "equal_epochs", 0, 4, 10, 10, 64)
    assert spec.run_id == f"{cfg.methods[0]}-equal_epochs-s0"
    cfg.variants = None
    assert solo_cfg(cfg, spec, data).augmentations[0].rrc == cfg.augmentations[0].rrc
