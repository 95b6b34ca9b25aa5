"""A 2-process DDP pretrain on CPU (gloo), end to end through ``solo-clamp pretrain``.

Lightning's ``ddp`` strategy relaunches the command line for rank 1, so the run is a
subprocess (never in-process under pytest: rank 1 would re-run pytest).

``sync_batchnorm=True`` cannot be used on CPU: torch's SyncBatchNorm has no CPU
implementation (DDP refuses to wrap it: "SyncBatchNorm layers only work with GPU modules").
preflight rejects that combination with a named error before anything starts; that case is
a row of docs/bad_input.md (tests/integration/test_bad_input.py::...sync_batchnorm_on_cpu).

The backbone is resnet18: solo-learn's wide_resnet28w* leaves two BatchNorm layers unused,
which DDP with ``find_unused_parameters=False`` (what ``strategy=ddp`` builds) rejects at
the second step; ``strategy=ddp_find_unused_parameters_true`` is needed for those.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
PER_RANK_BATCH = 4


def test_two_process_ddp_pretrain_on_cpu_completes_and_gathers_across_ranks(
    tmp_path, image_folder_writer
):
    images = image_folder_writer(tmp_path / "images", classes=4, per_class=4, size=16)
    checkpoint_dir = tmp_path / "ckpt"
    command = [
        sys.executable,
        "-m",
        "solo_clamp.cli",
        "pretrain",
        "~prepare_data",
        "~evaluate",
        f"data.train_path={images}",
        "data.num_workers=0",
        f"optimizer.batch_size={PER_RANK_BATCH}",
        "method_kwargs.proj_hidden_dim=32",
        "method_kwargs.proj_output_dim=16",
        "augmentations.0.crop_size=16",
        f"checkpoint.dir={checkpoint_dir}",
        "max_epochs=1",
        "+limit_train_batches=2",
        "log_every_n_steps=1",
        "accelerator=cpu",
        "devices=2",
        "+strategy=ddp",
        "+sync_batchnorm=False",
        "+enable_progress_bar=False",
    ]
    # One thread per process: Lightning would otherwise give each rank cpu_count / 2.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=400, cwd=REPO_ROOT, env=env
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Starting with 2 processes" in output and "distributed_backend=gloo" in output

    (run,) = (checkpoint_dir / "clamp").iterdir()  # both ranks write into rank 0's run
    (checkpoint,) = run.glob("*-ep=0.ckpt")
    assert not list(run.glob("*.partial"))
    assert result.stdout.count("checkpoint: ") == 1  # printed by rank 0 only
    assert f"checkpoint: {checkpoint}" in result.stdout
    args = json.loads((run / "args.json").read_text())
    assert args["devices"] == 2 and args["strategy"] == "ddp"

    with open(run / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train_clamp_loss_step")]
    assert [int(r["step"]) for r in rows] == [0, 1]
    assert all(math.isfinite(float(r["train_clamp_loss_step"])) for r in rows)
    # The loss gathers both ranks' images: a sub-manifold can interact with up to
    # 2 * 4 - 1 = 7 others, more than the 3 of one rank's batch (all overlap at init).
    neighbours = [float(r["train_clamp_neighbours_step"]) for r in rows]
    assert max(neighbours) > PER_RANK_BATCH - 1
    assert max(neighbours) <= 2 * PER_RANK_BATCH - 1
