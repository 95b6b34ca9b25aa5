"""bench/gpu_check.py --dry: the prepared GPU check runs end to end on the CPU at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_dry_run_writes_json_and_markdown(repo_root, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(repo_root / "bench" / "gpu_check.py"),
            "--dry",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["dry"] is True
    steps = {r["method"]: r for r in result["training_steps"]}
    assert steps["clamp"]["views"] == 4 and steps["simclr"]["views"] == 2
    assert all(r["status"] == "ok" and r["steps_per_s"] > 0 for r in steps.values())
    assert result["tiled_loss"]["fwd_bwd_ms"] > 0
    assert result["dali"]["status"].startswith("skipped")
    table = (tmp_path / "gpu_check.md").read_text()
    assert "DRY RUN" in table and "| clamp | 4 | 2 |" in table
