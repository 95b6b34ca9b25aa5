"""A prepared GPU check: CLAMP's cost on a CUDA machine, in under 8 minutes.

Usage::

    python3 bench/gpu_check.py --out gpu_check/     # on a CUDA machine
    python3 bench/gpu_check.py --dry --out /tmp/g   # tiny sizes on the CPU (part of the tests)

It writes ``gpu_check.json`` and ``gpu_check.md`` in ``--out``: training steps/s of CLAMP (4
views) and SimCLR (2 views) with bf16 autocast (``train_step_bench.py``'s steps; ResNet-50 at
224 px on synthetic images, each at the largest of ``--batches`` that fits), the tiled loss at
N = 32768 images (4 views, D = 512: time and peak memory above the inputs) and a few batches
of solo-learn's DALI pipeline with 4 views (two transform sets of 2 crops) on synthetic JPEGs
when ``nvidia.dali`` is installed. ``--dry`` runs every part at tiny sizes on the CPU
(ResNet-18 at 32 px, N = 64) so that the script is tested without a GPU; its numbers mean
nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import common
import loss_bench
import torch
import train_step_bench

FULL = dict(backbone="resnet50", crop_size=224, dataset="imagenet100", steps=5)
FULL.update(loss_images=32768, loss_dim=512, dali_batches=5, dali_batch=128)
DRY = dict(backbone="resnet18", crop_size=32, dataset="cifar10", steps=1)
DRY.update(loss_images=64, loss_dim=16, dali_batches=1, dali_batch=4)
METHOD_VIEWS = {"clamp": 4, "simclr": 2}


def train_step_seconds(method: str, batch: int, views: int, sizes: dict, device: str) -> float:
    """Seconds per bf16-autocast training step of ``method`` (train_step_bench's runner): the
    mean of ``sizes["steps"]`` steps after an untimed warm-up step."""
    runner = train_step_bench.build_runner(
        method, batch, views, sizes["crop_size"], sizes["dataset"], sizes["backbone"], device
    )
    for _ in range(sizes["steps"] + 1):
        runner.step(autocast=True)
    return statistics.mean(runner.step_seconds[1:])


def training_steps(sizes: dict, batches: list[int], device: str) -> list[dict[str, Any]]:
    """Steps/s of CLAMP and SimCLR at the largest batch of ``batches`` that fits."""
    records = []
    for method, views in METHOD_VIEWS.items():
        record: dict[str, Any] = {"method": method, "views": views, "status": "no batch fits"}
        for batch in sorted(batches, reverse=True):
            seconds = None
            try:
                seconds = train_step_seconds(method, batch, views, sizes, device)
            except RuntimeError as err:  # torch.cuda.OutOfMemoryError among them
                if "out of memory" not in str(err):
                    raise
            if device == "cuda":  # the model of a batch that did not fit is garbage by now
                torch.cuda.empty_cache()
            if seconds is not None:
                record.update(
                    status="ok",
                    batch=batch,
                    step_ms=1e3 * seconds,
                    steps_per_s=1 / seconds,
                    images_per_s=batch / seconds,
                    views_per_s=batch * views / seconds,
                )
                break
        records.append(record)
    return records


def tiled_loss(sizes: dict, device: str) -> dict[str, Any]:
    """Forward + backward of the loss at ``loss_images`` images (4 views) on the tiled path,
    with the ImageNet-100 recipe's ``rs``: loss_bench's measurement, best of 2 runs."""
    images, dim = sizes["loss_images"], sizes["loss_dim"]
    settings = argparse.Namespace(
        device=device, tile=min(images, 4096), rs=8.5, reps=2, case_seconds=600.0, cpu_time=False
    )
    record = loss_bench.measure(loss_bench.Case("clamp_tiled", images, 4, dim), settings)
    return {
        "images": images,
        "views": 4,
        "dim": dim,
        "fwd_bwd_ms": record["time_ms"],
        # on the CPU (--dry) the peak is this process's RSS high-water mark: not the loss's
        "peak_mb_above_inputs": record["peak_mb"] if device == "cuda" else None,
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
        common.REPO_ROOT / "scripts/pretrain/imagenet-100/augmentations/clamp_2sets.yaml"
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


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument(
        "--batches",
        type=lambda text: [int(batch) for batch in text.split(",")],
        default="512,384,256,192,128,64",
        help="candidate batch sizes, largest first that fits",
    )
    args = parser.parse_args(argv)
    device = "cpu" if args.dry else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or use --dry.")
    sizes = DRY if args.dry else FULL
    batches = [2] if args.dry else args.batches
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
    common.write_json(args.out / "gpu_check.json", result)
    markdown = common.render("gpu_check.md.j2", r=result)
    (args.out / "gpu_check.md").write_text(markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
