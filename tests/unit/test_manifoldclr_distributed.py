"""ManifoldCLR's NT-Xent across 2 CPU processes (gloo) against one process on the global batch:
every rank's negatives are the whole global batch, the mean of the ranks' losses is the
global loss, and DDP-averaged gradients equal the single-process ones. torch only."""

from __future__ import annotations

import socket
import sys
import traceback
import types
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD, LOCAL_IMAGES, IN_DIM, DIM = 2, 4, 6, 5

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available",
)


def global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(WORLD * LOCAL_IMAGES, IN_DIM, generator=generator)
    x1 = x0 + 0.3 * torch.randn(WORLD * LOCAL_IMAGES, IN_DIM, generator=generator)
    projector = torch.nn.Linear(IN_DIM, DIM)
    with torch.no_grad():
        projector.weight.copy_(torch.randn(DIM, IN_DIM, generator=generator))
        projector.bias.copy_(torch.randn(DIM, generator=generator))
    return x0, x1, projector


def _torch_only_package() -> None:
    """Lets a spawned worker import ``solo_clamp.losses`` without running the package's
    ``__init__``, which registers the methods with solo-learn (seconds of imports per rank)."""
    package = types.ModuleType("solo_clamp")
    package.__path__ = [str(Path(__file__).resolve().parents[2] / "solo_clamp")]
    sys.modules.setdefault("solo_clamp", package)


def _worker(rank: int, port: int, out_dir: str) -> None:
    _torch_only_package()
    from solo_clamp.losses.manifoldclr import nt_xent_loss

    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD,
            timeout=timedelta(seconds=120),
        )
        x0, x1, projector = global_batch()
        own = slice(rank * LOCAL_IMAGES, (rank + 1) * LOCAL_IMAGES)
        ddp = torch.nn.parallel.DistributedDataParallel(projector)
        loss = nt_xent_loss(ddp(x0[own]), ddp(x1[own]), temperature=0.5)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in ddp.module.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
    except BaseException:
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp_ntxent")
    root = str(Path(__file__).resolve().parents[len(__name__.split(".")) - 1])
    added = root not in sys.path
    if added:  # spawned workers unpickle _worker by module name
        sys.path.insert(0, root)
    try:
        mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    except Exception as err:
        errors = "\n".join(p.read_text() for p in sorted(out_dir.glob("*.err")))
        pytest.fail(f"a distributed worker failed: {err}\n{errors}")
    finally:
        if added:
            sys.path.remove(root)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def test_ranks_contrast_against_the_global_batch(rank_results):
    from solo_clamp.losses.manifoldclr import nt_xent_loss

    x0, x1, projector = global_batch()
    expected = nt_xent_loss(projector(x0), projector(x1), temperature=0.5)
    expected.backward()
    mean_loss = torch.stack([result["loss"] for result in rank_results]).mean()
    torch.testing.assert_close(mean_loss, expected.detach())
    for result in rank_results:
        for name, param in projector.named_parameters():
            torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-5, atol=1e-6)
