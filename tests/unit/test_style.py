"""The repository in ruff's shape: lint rules and formatting, as configured in pyproject.toml
(ruff is pinned in constraints.txt so that every machine formats alike)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

RUFF = shutil.which("ruff")

pytestmark = pytest.mark.skipif(RUFF is None, reason="ruff is not installed (the [dev] extra)")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_passes(repo_root, command):
    result = subprocess.run(
        [RUFF, *command, "--no-cache", "."], cwd=repo_root, capture_output=True, text=True
    )
    assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"
