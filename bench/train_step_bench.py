"""Training-step throughput of CLAMP vs solo-learn's SimCLR, BYOL and VICReg (and, on request,
ManifoldCLR).

Usage::

    python3 bench/train_step_bench.py            # batch 32 x 4 views, 3 timed steps each
    python3 bench/train_step_bench.py --quick    # batch 8 x 4 views, 2 timed steps (< 90 s)
    python3 bench/train_step_bench.py --json steps.json
    python3 bench/train_step_bench.py --methods simclr manifoldclr --views 2   # same 2 x B batch

A step is what Lightning runs per batch, without Lightning: the method's own
``training_step``, ``backward``, ``optimizer.step()`` and, for BYOL, the momentum update.
Every method is its real class in ``solo.methods.METHODS``, built from a cfg that
``solo_clamp.compare.run_cfg.solo_cfg`` composes as for a comparison run and solo-learn's
``parse_cfg`` parses (the same LARS optimizer for all; the learning rate is scaled by
batch / 256, which does not change a step's cost). Projectors are each method's CIFAR recipe;
CLAMP uses SimCLR's, so that the two differ only in the loss and in CLAMP's joint forward
(``clamp_percrop`` is CLAMP with ``joint_forward: false``, one forward per crop as SimCLR).
Two-crop methods (BYOL, VICReg, ManifoldCLR) take 2 crops of ``B * V / 2`` images, so every
method pushes the same ``B * V`` views through the backbone per step; with ``--views 2``
ManifoldCLR and SimCLR train on the very same batch. ManifoldCLR runs the MNIST recipe
(``scripts/pretrain/mnist/manifoldclr.yaml``) past its prior warm-up and max-ELBO start, so
every timed step pays its matrix exponentials. Methods are timed round-robin, so that other
jobs on a shared machine slow them alike; the table's columns: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import pkgutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from unittest import mock

import common
import torch

CLAMP_KWARGS = {"proj_hidden_dim": 2048, "proj_output_dim": 256, "rs": 7.0}
METHOD_KWARGS: dict[str, dict[str, Any]] = {
    "clamp": CLAMP_KWARGS,
    "clamp_percrop": {**CLAMP_KWARGS, "joint_forward": False},
    "simclr": {"proj_hidden_dim": 2048, "proj_output_dim": 256, "temperature": 0.2},
    "byol": {"proj_hidden_dim": 4096, "proj_output_dim": 256, "pred_hidden_dim": 4096},
    "vicreg": {
        "proj_hidden_dim": 2048,
        "proj_output_dim": 2048,
        "sim_loss_weight": 25.0,
        "var_loss_weight": 25.0,
        "cov_loss_weight": 1.0,
    },
    "manifoldclr": {
        "proj_hidden_dim": 1024,
        "proj_output_dim": 128,
        "dictionary_size": 32,
        "block_dim": 16,
        "vi_hidden_dim": 512,
        "max_elbo_samples": 4,
        "prior_warmup_steps": 0,
        "max_elbo_start_step": 0,
    },
}
DEFAULT_METHODS = ("clamp", "clamp_percrop", "simclr", "byol", "vicreg")
SOLO_METHOD = {"clamp_percrop": "clamp"}
"""Benchmark entries that are a variant of a solo method (default: the same name)."""
LOSS_FUNCTIONS = {
    # solo method -> the name its training step calls for the loss
    "clamp": "solo_clamp.methods.clamp.clamp_loss_and_stats",
    "simclr": "solo.methods.simclr.simclr_loss_func",
    "byol": "solo.methods.byol.byol_loss_func",
    "vicreg": "solo.methods.vicreg.vicreg_loss_func",
    "manifoldclr": "solo_clamp.losses.manifoldclr.ManifoldCLRLoss.forward",
}
OPTIMIZER = {
    "name": "lars",
    "lr": 0.3,
    "classifier_lr": 0.1,
    "weight_decay": 1e-5,
    "kwargs": {"momentum": 0.9, "eta": 0.02, "clip_lr": True, "exclude_bias_n_norm": True},
}
TWO_CROP_METHODS = ("byol", "vicreg", "manifoldclr")
MOMENTUM_METHODS = ("byol",)
DATASETS = ("cifar10", "cifar100", "stl10", "imagenet100", "imagenet")
"""The datasets whose class count solo-learn's parse_cfg knows (no image folder needed)."""
NUM_CLASSES = 10


def make_cfg(
    method: str,
    crops: int,
    batch_size: int,
    crop_size: int,
    dataset: str,
    backbone: str = "resnet18",
):
    """The parsed pretraining cfg of a benchmark entry, built as ``solo-clamp compare`` builds
    its runs' cfgs (the same LARS optimizer for every method, no learning-rate schedule)."""
    from omegaconf import OmegaConf

    from solo_clamp.compare.config import DEFAULTS
    from solo_clamp.compare.data import ComparisonData
    from solo_clamp.compare.plan import RunSpec
    from solo_clamp.compare.run_cfg import parse, solo_cfg

    solo_method = SOLO_METHOD.get(method, method)
    recipe: dict[str, Any] = {"method_kwargs": METHOD_KWARGS[method], "optimizer": OPTIMIZER}
    if solo_method in MOMENTUM_METHODS:
        recipe["momentum"] = {"base_tau": 0.99, "final_tau": 1.0}
    comparison = OmegaConf.merge(
        DEFAULTS,
        {
            "dataset": dataset,
            "epochs": 1,  # the study's budget: the one-step run below is all of it
            "data": {"num_workers": 0},
            "backbone": {"name": backbone, "kwargs": {}},
            "augmentations": [{"crop_size": crop_size}],
            "scheduler": {"name": "none"},
            "trainer": {"accelerator": "cpu", "devices": 1, "progress_bar": False},
            "recipes": {solo_method: recipe},
        },
    )
    spec = RunSpec(
        solo_method,
        budget="bench",
        seed=0,
        views=crops,
        steps=1,
        steps_per_epoch=1,
        batch_size=batch_size,
    )
    data = ComparisonData(name=dataset, solo_dataset=dataset, train_path="unused", val_path="")
    return parse(solo_cfg(comparison, spec, data))


def replay_seconds(loss_function: Callable, calls: list[Any], reps: int = 3) -> float:
    """Best fwd + bwd time of the recorded ``calls`` of ``loss_function``, replayed on detached
    copies of their inputs."""

    def copy(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().clone().requires_grad_(value.requires_grad)
        return value

    best = float("inf")
    for _ in range(reps):
        copies = [
            ([copy(a) for a in c.args], {k: copy(v) for k, v in c.kwargs.items()}) for c in calls
        ]
        start = time.perf_counter()
        outputs = [loss_function(*args, **kwargs) for args, kwargs in copies]
        sum(out[0] if isinstance(out, tuple) else out for out in outputs).backward()
        best = min(best, time.perf_counter() - start)
    return best


@dataclass
class Runner:
    """One method, its optimizer and a fixed synthetic batch."""

    method: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batch: list
    images: int
    crops: int
    device: str = "cpu"
    step_seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    loss_seconds: float = float("nan")

    def record(self) -> dict[str, Any]:
        """The method's numbers from its best step (the first step, a warm-up, left out)."""
        step, views = min(self.step_seconds[1:]), self.images * self.crops
        return {
            "method": self.method,
            "images_per_step": self.images,
            "crops": self.crops,
            "views_per_step": views,
            "step_ms": 1e3 * step,
            "cpu_ms": 1e3 * min(self.cpu_seconds[1:]),
            "views_per_s": views / step,
            "images_per_s": self.images / step,
            "loss_ms": 1e3 * self.loss_seconds,
            "loss_fraction": self.loss_seconds / step,
        }

    def step(self, record_loss: bool = False, autocast: bool = False) -> None:
        """One timed step, its forward in bf16 with ``autocast``; with ``record_loss`` the loss
        calls are recorded (a mock that wraps the loss function) and replayed alone."""
        loss_name = LOSS_FUNCTIONS[SOLO_METHOD.get(self.method, self.method)]
        loss_function = pkgutil.resolve_name(loss_name)
        spy = mock.patch(loss_name, autospec=True, side_effect=loss_function)
        with spy if record_loss else nullcontext() as recorded:
            cpu_start, start = common.cpu_seconds(), time.perf_counter()
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=autocast):
                loss = self.model.training_step(self.batch, 0)
        if isinstance(loss, dict):
            loss = loss["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        for online, target in getattr(self.model, "momentum_pairs", []):
            self.model.momentum_updater.update(online, target)
        common.synchronize(self.device)
        self.step_seconds.append(time.perf_counter() - start)
        self.cpu_seconds.append(common.cpu_seconds() - cpu_start)
        if record_loss:
            self.loss_seconds = replay_seconds(loss_function, recorded.call_args_list)


def build_runner(
    method: str,
    batch_size: int,
    views: int,
    crop_size: int,
    dataset: str,
    backbone: str = "resnet18",
    device: str = "cpu",
) -> Runner:
    """Builds a method from solo's registry (on ``device``), its LARS optimizer and a random
    batch."""
    from solo.methods import METHODS

    crops = 2 if method in TWO_CROP_METHODS else views
    if (batch_size * views) % crops != 0:
        raise ValueError(f"batch * views = {batch_size * views} must be divisible by {crops}.")
    images = batch_size * views // crops
    torch.manual_seed(0)
    model = METHODS[SOLO_METHOD.get(method, method)](
        make_cfg(method, crops, images, crop_size, dataset, backbone)
    )
    model.to(device).train()
    optimizer = model.configure_optimizers()
    if isinstance(optimizer, (list, tuple)):
        optimizer = optimizer[0][0]
    gen = torch.Generator().manual_seed(1)
    crops_x = [
        torch.randn(images, 3, crop_size, crop_size, generator=gen).to(device) for _ in range(crops)
    ]
    targets = torch.randint(0, NUM_CLASSES, (images,), generator=gen).to(device)
    batch = [torch.arange(images, device=device), crops_x, targets]
    return Runner(method, model, optimizer, batch, images, crops, device)


def steps_rows(records: list[dict]) -> list[dict]:
    """The training-step table's rows: each record with its ratios to SimCLR (None without
    SimCLR): of views per second, and of CPU time per step (SimCLR's over the method's)."""
    simclr = next((r for r in records if r["method"] == "simclr"), {})
    return [
        {
            **r,
            "vs_simclr": common.ratio(r["views_per_s"], simclr.get("views_per_s")),
            "vs_simclr_cpu": common.ratio(simclr.get("cpu_ms"), r["cpu_ms"]),
        }
        for r in records
    ]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = common.bench_parser(__doc__, quick="batch 8, 2 timed steps", threads=2)
    parser.add_argument("--batch", type=int, help="images per step for V-view methods (>= 2)")
    parser.add_argument("--views", type=int, default=4, help="views per image (even)")
    parser.add_argument("--steps", type=common.positive_int, help="timed steps per method")
    parser.add_argument("--crop-size", type=int, default=32)
    parser.add_argument(
        "--dataset",
        default="cifar10",
        choices=DATASETS,
        help="cifar10/cifar100 give resnet18 its CIFAR stem; else ImageNet's",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=tuple(METHOD_KWARGS),
        default=list(DEFAULT_METHODS),
        help=f"default: {' '.join(DEFAULT_METHODS)}; also manifoldclr",
    )
    args = parser.parse_args(argv)
    args.batch = args.batch or (8 if args.quick else 32)
    args.steps = args.steps or (2 if args.quick else 3)
    if args.views < 2 or args.views % 2:
        parser.error("--views must be an even integer >= 2 (2-crop methods get B*V/2 images).")
    if args.batch < 2:
        parser.error("--batch must be >= 2.")
    return args


def main(argv: Optional[list[str]] = None) -> list[dict]:
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import solo_clamp

        try:
            solo_clamp.register()  # METHODS["clamp"]
        except ImportError as err:
            print(f"solo-learn is not importable ({err}): nothing to benchmark.")
            return []
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # solo's scheduler_interval warning
    warnings.filterwarnings("ignore", message=".*self.log.*")

    runners = [
        build_runner(m, args.batch, args.views, args.crop_size, args.dataset) for m in args.methods
    ]
    with tqdm(total=len(runners) * (args.steps + 1), desc="train steps", unit="step") as bar:
        for index in range(args.steps + 1):  # round-robin; step 0 is a warm-up
            for runner in runners:
                runner.step(record_loss=index == args.steps)
                bar.update()
    records = [runner.record() for runner in runners]
    print(
        f"resnet18 ({args.dataset} stem), {args.crop_size} px, {args.views} views x "
        f"{args.batch} images (2-crop methods: 2 x {args.batch * args.views // 2}), "
        f"threads={args.threads}, torch={torch.__version__}"
    )
    print(common.render("steps_table.md.j2", steps=steps_rows(records)), end="")
    common.write_json(args.json, records)
    return records


if __name__ == "__main__":
    main()
