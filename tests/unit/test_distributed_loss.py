"""The CLAMP loss across 2 CPU processes (gloo) against one process on the global batch.

Each rank holds half of a fixed global batch ``[V, 2B, D]``, view-major per rank: rank r
holds images ``r*B:(r+1)*B`` of every view. Checked:

* the loss with ``gather=True`` on every rank equals the single-process loss of the
  global batch;
* the DDP-averaged gradients of a tiny projector (Linear + Tanh) equal the single-process
  gradients of the global batch (factor 1, ``ddp_gradient="full"``, the default), while
  detaching the other ranks' embeddings (the official code's convention, computed here by
  hand and as ``ddp_gradient="local"``) gives ``1 / world``;
* each rank's gradient of its own embeddings is ``world`` x the single-process slice under
  ``"full"`` (every rank back-propagates the global loss into every rank) and 1 x under
  ``"local"``.

torch only: no solo-learn import.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import socket
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
VIEWS, LOCAL_IMAGES, IN_DIM, DIM = 3, 5, 6, 4
LOSS_KWARGS = {"num_views": VIEWS, "rs": 7.0, "max_range": 1.5}
TIMEOUT = timedelta(seconds=60)

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available",
)


LOSS_FILE = Path(__file__).resolve().parents[2] / "solo_clamp" / "losses" / "clamp.py"


def loss_module() -> ModuleType:
    """``solo_clamp.losses.clamp``; a spawned worker loads that file alone, because importing
    the ``solo_clamp`` package registers CLAMP with solo-learn (seconds of imports)."""
    if multiprocessing.parent_process() is None:
        import solo_clamp.losses.clamp as module

        return module
    name = "_clamp_loss_for_ddp_workers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, LOSS_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def clamp_loss_func(z: torch.Tensor, **kwargs) -> torch.Tensor:
    return loss_module().clamp_loss_func(z, **kwargs)


def global_batch() -> tuple[torch.Tensor, torch.nn.Module]:
    """The fixed inputs ``[V, WORLD * B, IN_DIM]`` and tiny projector shared by all ranks.

    The projector is Linear + Tanh: the loss centres the embeddings, so through a purely
    linear map the bias gradient would be zero and untested.
    """
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(
        VIEWS, WORLD * LOCAL_IMAGES, IN_DIM, generator=generator, dtype=torch.float64
    )
    linear = torch.nn.Linear(IN_DIM, DIM).double()
    with torch.no_grad():
        linear.weight.copy_(0.5 * torch.randn(DIM, IN_DIM, generator=generator))
        linear.bias.copy_(torch.randn(DIM, generator=generator))
    return inputs, torch.nn.Sequential(linear, torch.nn.Tanh())


def local_rows(inputs: torch.Tensor, rank: int) -> torch.Tensor:
    """Rank ``rank``'s images of every view, flattened view-major: ``[V * B, IN_DIM]``."""
    part = inputs[:, rank * LOCAL_IMAGES : (rank + 1) * LOCAL_IMAGES]
    return part.reshape(-1, inputs.shape[-1])


def detached_gather_loss(z: torch.Tensor) -> torch.Tensor:
    """The official code's convention: other ranks' embeddings are gathered detached."""
    z_views = z.reshape(VIEWS, -1, z.shape[-1])
    parts = [torch.empty_like(z_views) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z_views.detach().contiguous())
    parts[dist.get_rank()] = z_views
    full = torch.cat(parts, dim=1).reshape(-1, z.shape[-1])
    return clamp_loss_func(full, gather=False, **LOSS_KWARGS)


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)  # 2 ranks on a small shared CPU
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD,
            timeout=TIMEOUT,
        )
        inputs, projector = global_batch()
        x = local_rows(inputs, rank)
        ddp = torch.nn.parallel.DistributedDataParallel(projector)
        loss = clamp_loss_func(ddp(x), gather=True, **LOSS_KWARGS)
        loss.backward()
        gathered = {n: p.grad.clone() for n, p in ddp.module.named_parameters()}

        # The official code's convention, through DDP too (a fresh copy of the projector).
        ddp_detached = torch.nn.parallel.DistributedDataParallel(global_batch()[1])
        detached = detached_gather_loss(ddp_detached(x))
        detached.backward()
        detached_grads = {n: p.grad.clone() for n, p in ddp_detached.module.named_parameters()}
        ddp_local = torch.nn.parallel.DistributedDataParallel(global_batch()[1])
        local = clamp_loss_func(ddp_local(x), gather=True, ddp_gradient="local", **LOSS_KWARGS)
        local.backward()
        local_grads = {n: p.grad.clone() for n, p in ddp_local.module.named_parameters()}

        embedding_grads = {}
        for mode in ("full", "local"):
            z = projector(x).detach().requires_grad_(True)
            clamp_loss_func(z, gather=True, ddp_gradient=mode, **LOSS_KWARGS).backward()
            embedding_grads[mode] = z.grad.clone()
        result = {
            "loss": loss.detach(),
            "detached_loss": detached.detach(),
            "grads": gathered,
            "detached_grads": detached_grads,
            "local_loss": local.detach(),
            "local_grads": local_grads,
            "embedding_grads": embedding_grads,
        }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
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


def _import_root() -> str:
    """The sys.path entry from which a spawned worker can import this module by name."""
    depth = len(__name__.split("."))
    return str(Path(__file__).resolve().parents[depth - 1])


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp_loss")
    root = _import_root()
    added = root not in sys.path
    if added:  # spawned workers inherit sys.path and unpickle _worker by module name
        sys.path.insert(0, root)
    try:
        mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    except Exception as err:  # a rank failed: show its traceback, not only the exit code
        errors = "\n".join(p.read_text() for p in sorted(out_dir.glob("*.err")))
        pytest.fail(f"a distributed worker failed: {err}\n{errors}")
    finally:
        if added:
            sys.path.remove(root)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single_process() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    inputs, projector = global_batch()
    loss = clamp_loss_func(projector(inputs.reshape(-1, IN_DIM)), gather=False, **LOSS_KWARGS)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in projector.named_parameters()}


@pytest.fixture(scope="module")
def single_process_embedding_grad() -> torch.Tensor:
    """d loss / d z of the global batch, ``[V, WORLD * B, DIM]``."""
    inputs, projector = global_batch()
    z = projector(inputs.reshape(-1, IN_DIM)).detach().requires_grad_(True)
    clamp_loss_func(z, gather=False, **LOSS_KWARGS).backward()
    return z.grad.reshape(VIEWS, WORLD * LOCAL_IMAGES, DIM)


def test_gathered_loss_on_every_rank_equals_the_global_batch_loss(rank_results, single_process):
    expected, _ = single_process
    for result in rank_results:
        torch.testing.assert_close(result["loss"], expected, rtol=1e-10, atol=1e-12)
        # Same forward value whatever the gradient convention.
        torch.testing.assert_close(result["detached_loss"], expected, rtol=1e-10, atol=1e-12)


def test_ddp_averaged_gradients_equal_single_process_gradients(rank_results, single_process):
    _, expected = single_process
    assert all(g.abs().max() > 1e-6 for g in expected.values())
    for result in rank_results:
        for name, grad in expected.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-8, atol=1e-12)


def test_detached_convention_gives_one_over_world_of_the_gradient(rank_results, single_process):
    _, expected = single_process
    for result in rank_results:
        for name, grad in expected.items():
            torch.testing.assert_close(
                result["detached_grads"][name], grad / WORLD, rtol=1e-8, atol=1e-12
            )
            ratio = result["detached_grads"][name].norm() / result["grads"][name].norm()
            assert ratio.item() == pytest.approx(1 / WORLD, rel=1e-8)


def test_local_ddp_gradient_is_the_official_convention(rank_results, single_process):
    expected_loss, expected = single_process
    for result in rank_results:
        torch.testing.assert_close(result["local_loss"], expected_loss, rtol=1e-10, atol=1e-12)
        for name, grad in expected.items():
            torch.testing.assert_close(
                result["local_grads"][name],
                result["detached_grads"][name],
                rtol=1e-10,
                atol=1e-14,
            )
            torch.testing.assert_close(
                result["local_grads"][name], grad / WORLD, rtol=1e-8, atol=1e-12
            )


@pytest.mark.parametrize("mode, factor", [("full", WORLD), ("local", 1)])
def test_embedding_gradient_per_rank(rank_results, single_process_embedding_grad, mode, factor):
    expected = single_process_embedding_grad
    assert expected.abs().max() > 1e-6
    for rank, result in enumerate(rank_results):
        own = expected[:, rank * LOCAL_IMAGES : (rank + 1) * LOCAL_IMAGES].reshape(-1, DIM)
        torch.testing.assert_close(
            result["embedding_grads"][mode], factor * own, rtol=1e-8, atol=1e-12
        )
