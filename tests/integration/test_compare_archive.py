"""compare's archive (runs.json.gz): every finished result in one file, restored on a new
machine. The end-to-end case (a tuned comparison resumed from a published page into an empty
``--out``, nothing trained) is step 5 of test_compare_tuning.py."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from solo_clamp.compare.archive import load_archive, restore_archive, save_archive
from solo_clamp.errors import ConfigError


def _write(out: Path, key: str, result: dict) -> None:
    (out / key).mkdir(parents=True, exist_ok=True)
    (out / key / "result.json").write_text(json.dumps(result, indent=2))


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    _write(out, "runs/clamp-equal_epochs-s0", {"run_id": "clamp", "knn_correct": "0110"})
    _write(out, "runs/floor-raw_pixels", {"run_id": "floor-raw_pixels", "knn_top1": 95.5})
    _write(out, "tuning/simclr-lr0.1-s0", {"run_id": "simclr-lr0.1-s0", "val_knn_top1": 93.3})
    (out / "runs" / "vicreg-equal_epochs-s0").mkdir()  # a run still training: no result.json
    (out / "runs" / "byol-equal_epochs-s0").mkdir()
    (out / "runs" / "byol-equal_epochs-s0" / "result.json").write_text('{"cut')  # being written
    return out


def test_an_archive_restores_every_finished_result_into_an_empty_folder(finished, tmp_path):
    archive = tmp_path / "page" / "runs.json.gz"
    assert save_archive(finished, archive) == 3
    fresh = tmp_path / "fresh"
    restored = restore_archive(archive, fresh)
    assert restored == [
        "runs/clamp-equal_epochs-s0",
        "runs/floor-raw_pixels",
        "tuning/simclr-lr0.1-s0",
    ]
    for key in restored:
        original = json.loads((finished / key / "result.json").read_text())
        assert json.loads((fresh / key / "result.json").read_text()) == original
    assert not (fresh / "runs" / "byol-equal_epochs-s0").exists()


def test_the_archive_is_deterministic_and_keeps_entries_the_folder_lacks(finished, tmp_path):
    first, second = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    save_archive(finished, first)
    save_archive(finished, second)
    assert first.read_bytes() == second.read_bytes()
    elsewhere = tmp_path / "elsewhere"  # another machine: one new run, the others not there
    _write(elsewhere, "runs/clamp-equal_epochs-s1", {"run_id": "clamp-s1"})
    assert save_archive(elsewhere, first) == 4
    assert sorted(load_archive(first)) == [
        "runs/clamp-equal_epochs-s0",
        "runs/clamp-equal_epochs-s1",
        "runs/floor-raw_pixels",
        "tuning/simclr-lr0.1-s0",
    ]


def test_restoring_never_replaces_a_result_already_there(finished, tmp_path):
    archive = tmp_path / "runs.json.gz"
    save_archive(finished, archive)
    local = finished / "runs" / "floor-raw_pixels" / "result.json"
    local.write_text(json.dumps({"run_id": "floor-raw_pixels", "knn_top1": 1.0}))
    assert restore_archive(archive, finished) == []
    assert json.loads(local.read_text())["knn_top1"] == 1.0


@pytest.mark.parametrize(
    "payload",
    [b"not gzip at all", gzip.compress(b"[1, 2]"), gzip.compress(b'{"../../etc/x": {}}')],
    ids=["not-gzip", "not-a-mapping", "escaping-key"],
)
def test_a_file_that_is_not_an_archive_is_refused_naming_it(tmp_path, payload):
    archive = tmp_path / "runs.json.gz"
    archive.write_bytes(payload)
    with pytest.raises(ConfigError, match="runs.json.gz is not a comparison archive"):
        restore_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
