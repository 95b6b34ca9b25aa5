"""The ``solo-clamp`` console command (also ``python -m solo_clamp``).

A subcommand is either a :class:`HydraCommand` (pretrain, linear, finetune, few-label, knn)
or a module exposing ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported
only when their subcommand runs, so ``solo-clamp --help`` and the torch-only commands import
neither solo-learn nor torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Union

from solo_clamp.commands import require_solo
from solo_clamp.errors import SoloClampError
from solo_clamp.version import __version__

if TYPE_CHECKING:
    from omegaconf import DictConfig


@dataclass(frozen=True)
class HydraCommand:
    """A subcommand that composes a config (``--config-path``, ``--config-name``, overrides;
    :func:`solo_clamp.configs.compose.compose_config`) and passes it to ``runner``
    (``"module:function"``, imported when it runs)."""

    kind: str
    """Which shipped configs a relative ``--config-path`` names: ``pretrain`` or ``linear``."""
    default_path: str
    default_name: str
    runner: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--config-path",
            default=self.default_path,
            help=f"config directory: absolute, relative to the current directory, or one of the "
            f"shipped scripts/{self.kind}/ folders (default: {self.default_path})",
        )
        parser.add_argument(
            "--config-name",
            default=self.default_name,
            help=f"YAML file in that directory (default: {self.default_name})",
        )
        parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. max_epochs=1")

    def compose(self, args: argparse.Namespace) -> DictConfig:
        """The config the parsed ``args`` name (a ``ConfigError`` when it cannot be composed)."""
        from solo_clamp.configs.compose import compose_config

        return compose_config(self.kind, args.config_path, args.config_name, args.overrides)

    def run(self, args: argparse.Namespace) -> int:
        require_solo()
        cfg = self.compose(args)
        module_name, function_name = self.runner.split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        summary = function(cfg)  # user mistakes are SoloClampErrors: one line in main()
        if isinstance(summary, dict) and "checkpoint" in summary:
            print(f"checkpoint: {summary['checkpoint']}")
        return 0


COMMANDS: dict[str, tuple[Union[HydraCommand, str], str]] = {
    "pretrain": (
        HydraCommand(
            "pretrain", "mnist", "clamp.yaml", "solo_clamp.training.pretrain:run_pretrain"
        ),
        "CLAMP pretraining (Hydra config, default: MNIST)",
    ),
    "linear": (
        HydraCommand("linear", "mnist", "clamp.yaml", "solo_clamp.training.linear:run_linear"),
        "linear evaluation of a pretrained backbone",
    ),
    "finetune": (
        HydraCommand(
            "linear", "mnist", "finetune.yaml", "solo_clamp.training.finetune:run_finetune"
        ),
        "fine-tune a backbone end to end on a fraction of the labels",
    ),
    "few-label": (
        HydraCommand(
            "linear", "mnist", "few_label.yaml", "solo_clamp.training.few_label:run_few_label"
        ),
        "few-label linear probes (prior samples as extra labelled features), or the "
        "ManifoldCLR paper's semi-supervised protocol (protocol=semi_supervised)",
    ),
    "knn": (
        HydraCommand("linear", "mnist", "knn.yaml", "solo_clamp.training.knn:run_knn"),
        "offline weighted kNN evaluation of a checkpoint",
    ),
    "prepare-data": (
        "solo_clamp.commands.prepare_data",
        "MNIST / Fashion-MNIST idx -> ImageFolder",
    ),
    "export": ("solo_clamp.commands.export", "a backbone for torchvision, timm or detectron2"),
    "zoo": ("solo_clamp.commands.zoo", "list, download, verify, load and publish checkpoints"),
    "geometry": ("solo_clamp.commands.geometry", "manifold geometry figures for a checkpoint"),
    "compare": ("solo_clamp.commands.compare", "CLAMP vs SimCLR, BYOL and VICReg side by side"),
    "run-solo": ("solo_clamp.commands.run_solo", "run a solo-learn program with CLAMP registered"),
}


def build_parser(available: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="solo-clamp",
        description="CLAMP (Contrastive Learning As Manifold Packing) for solo-learn.",
    )
    parser.add_argument("--version", action="version", version=f"solo-clamp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (spec, help_text) in COMMANDS.items():
        if available is not None and name not in available:
            continue
        if isinstance(spec, HydraCommand):
            command = spec
        else:
            try:
                command = importlib.import_module(spec)
            except ModuleNotFoundError as err:
                if not err.name or not err.name.startswith("solo_clamp.commands"):
                    raise
                continue
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = [argv[0]] if argv and argv[0] in COMMANDS else None
    parser = build_parser(wanted)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except SoloClampError as err:  # a user's mistake; anything else is a bug: its traceback
        print(f"solo-clamp {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
