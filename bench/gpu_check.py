"""A prepared GPU check: CLAMP's cost on a CUDA machine, in under 8 minutes.

Usage::

    python3 bench/gpu_check.py --out gpu_check/     # on a CUDA machine
    python3 bench/gpu_check.py --dry --out /tmp/g   # tiny sizes on the CPU (part of the tests)

Three measurements, each written to ``gpu_check.json`` and ``gpu_check.md`` in ``--out``:

1. **Training steps** of CLAMP (4 views) and SimCLR (2 views, its recipe) with bf16 autocast:
   ResNet-50 at 224 px on synthetic images, each method at the largest batch of ``--batches``
   that fits in memory; steps/s, images/s and views/s (views through the backbone per second).
   The steps are ``bench/train_step_bench.py``'s: the method's own ``training_step``,
   ``backward`` and LARS ``step``.
2. **The loss at N = 32768 images** (4 views, D = 512) on the tiled path: forward + backward
   time and peak memory above the inputs.
3. **solo-learn's DALI pipeline** with 4 views (two transform sets of 2 crops) on synthetic
   JPEGs, a few batches, when ``nvidia.dali`` is installed; otherwise recorded as skipped.

``--dry`` runs every part at tiny sizes on the CPU (ResNet-18 at 32 px, N = 64) so that the
script is tested without a GPU; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import torch  # noqa: E402

FULL = {
    "backbone": "resnet50",
    "crop_size": 224,
    "dataset": "imagenet100",
    "loss_images": 32768,
    "loss_dim": 512,
    "steps": 5,
    "dali_batches": 5,
    "dali_batch": 128,
}
DRY = {
    "backbone": "resnet18",
    "crop_size": 32,
    "dataset": "cifar10",
    "loss_images": 64,
    "loss_dim": 16,
    "steps": 1,
    "dali_batches": 1,
    "dali_batch": 4,
}
METHOD_VIEWS = {"clamp": 4, "simclr": 2}


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _autocast(device: str):
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def _is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err)


def time_steps(step: Callable[[], None], steps: int, device: str) -> float:
    """Seconds per step: one untimed warm-up step, then the mean of ``steps`` steps."""
    step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def training_steps(sizes: dict, batches: list[int], device: str) -> list[dict[str, Any]]:
    """Steps/s of CLAMP and SimCLR at the largest batch of ``batches`` that fits."""
    from train_step_bench import build_runner

    records = []
    for method, views in METHOD_VIEWS.items():
        record: dict[str, Any] = {"method": method, "views": views, "status": "no batch fits"}
        for batch in sorted(batches, reverse=True):
            runner = None
            try:
                runner = build_runner(
                    method,
                    batch,
                    views,
                    sizes["crop_size"],
                    sizes["dataset"],
                    backbone=sizes["backbone"],
                    device=device,
                )

                def step(runner=runner) -> None:
                    with _autocast(device):
                        runner.step()

                seconds = time_steps(step, sizes["steps"], device)
            except RuntimeError as err:
                if not _is_out_of_memory(err):
                    raise
                del runner
                if device == "cuda":
                    torch.cuda.empty_cache()
                continue
            record.update(
                status="ok",
                batch=batch,
                step_ms=1e3 * seconds,
                steps_per_s=1 / seconds,
                images_per_s=batch / seconds,
                views_per_s=batch * views / seconds,
            )
            del runner
            if device == "cuda":
                torch.cuda.empty_cache()
            break
        records.append(record)
    return records


def tiled_loss(sizes: dict, device: str) -> dict[str, Any]:
    """Forward + backward of the loss at ``loss_images`` images (4 views), tiled path."""
    from solo_clamp.losses.clamp import clamp_loss_func

    views, images, dim = 4, sizes["loss_images"], sizes["loss_dim"]
    z = torch.randn(views * images, dim, device=device, requires_grad=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if device == "cuda" else 0

    def step() -> None:
        z.grad = None
        clamp_loss_func(z, views, rs=8.5, tile_size=min(images, 4096)).backward()

    seconds = time_steps(step, 2, device)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device == "cuda" else None
    return {
        "images": images,
        "views": views,
        "dim": dim,
        "fwd_bwd_ms": 1e3 * seconds,
        "peak_mb_above_inputs": peak,
    }


def dali_pipeline(sizes: dict, device: str) -> dict[str, Any]:
    """A few batches of solo-learn's DALI pretraining pipeline with 4 views (2 sets x 2)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return {"status": "skipped: nvidia-dali is not installed"}
    if device != "cuda":
        return {"status": "skipped: DALI needs a CUDA device"}
    from omegaconf import OmegaConf
    from PIL import Image
    from solo.data.dali_dataloader import PretrainDALIDataModule, build_transform_pipeline_dali
    from solo.data.pretrain_dataloader import FullTransformPipeline, NCropAugmentation

    aug = OmegaConf.load(
        BENCH_DIR.parent / "scripts/pretrain/imagenet-100/augmentations/clamp_2sets.yaml"
    )
    with tempfile.TemporaryDirectory() as root:
        for label in range(2):
            folder = Path(root) / f"class{label}"
            folder.mkdir()
            for index in range(sizes["dali_batch"] * sizes["dali_batches"]):
                pixels = torch.randint(0, 255, (256, 256, 3), dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{index}.jpg", quality=90)
        pipelines = [
            NCropAugmentation(build_transform_pipeline_dali("imagenet100", a, "gpu"), a.num_crops)
            for a in aug
        ]
        module = PretrainDALIDataModule(
            dataset="imagenet100",
            train_data_path=root,
            transforms=FullTransformPipeline(pipelines),
            num_large_crops=4,
            num_small_crops=0,
            num_workers=4,
            batch_size=sizes["dali_batch"],
            dali_device="gpu",
        )
        module.trainer = None
        module.setup("fit")
        loader = module.train_dataloader()
        start, batches, views = time.perf_counter(), 0, 0
        for batch in loader:
            views = len(batch[1])
            batches += 1
            if batches == sizes["dali_batches"]:
                break
        seconds = time.perf_counter() - start
    return {
        "status": "ok",
        "batches": batches,
        "views": views,
        "images_per_s": batches * sizes["dali_batch"] / seconds,
    }


def markdown(result: dict[str, Any]) -> str:
    """``gpu_check.md``: the result as a Markdown table and two sentences."""
    from report import render_template

    return render_template("gpu_check.md.j2", r=result)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument(
        "--batches",
        default="512,384,256,192,128,64",
        help="candidate batch sizes, largest first that fits",
    )
    args = parser.parse_args(argv)
    device = "cpu" if args.dry else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or use --dry.")
    sizes = DRY if args.dry else FULL
    batches = [2] if args.dry else [int(b) for b in args.batches.split(",")]
    warnings.filterwarnings("ignore")
    import solo_clamp

    solo_clamp.register()
    result = {
        "dry": args.dry,
        "torch": torch.__version__,
        "backbone": sizes["backbone"],
        "crop_size": sizes["crop_size"],
        "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "training_steps": training_steps(sizes, batches, device),
        "tiled_loss": tiled_loss(sizes, device),
        "dali": dali_pipeline(sizes, device),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (args.out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
