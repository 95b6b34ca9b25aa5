"""bench/train_step_bench.py at tiny sizes: ManifoldCLR's training step beside SimCLR's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_manifoldclr_vs_simclr_on_the_same_batch(repo_root, tmp_path):
    records = tmp_path / "steps.json"
    done = subprocess.run(
        [
            sys.executable,
            str(repo_root / "bench" / "train_step_bench.py"),
            "--methods",
            "simclr",
            "manifoldclr",
            "--views",
            "2",
            "--batch",
            "2",
            "--steps",
            "1",
            "--crop-size",
            "16",
            "--threads",
            "1",
            "--json",
            str(records),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    steps = {r["method"]: r for r in json.loads(records.read_text())}
    assert (steps["manifoldclr"]["crops"], steps["manifoldclr"]["images_per_step"]) == (2, 2)
    assert (steps["simclr"]["crops"], steps["simclr"]["images_per_step"]) == (2, 2)
    assert steps["manifoldclr"]["step_ms"] > 0 and steps["manifoldclr"]["loss_ms"] > 0
    assert "manifoldclr / simclr step time, same batch: " in done.stdout
