"""The Hydra-configured subcommands (pretrain, linear, knn) and the solo-learn check."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from solo_clamp.commands import CommandError
from solo_clamp.configs import config_dir

if TYPE_CHECKING:
    from omegaconf import DictConfig


def add_config_arguments(
    parser: argparse.ArgumentParser, kind: str, default_path: str, default_name: str
) -> None:
    parser.add_argument(
        "--config-path",
        default=default_path,
        help=f"config directory: absolute, relative to the current directory, or one of the "
        f"shipped scripts/{kind}/ folders (default: {default_path})",
    )
    parser.add_argument(
        "--config-name",
        default=default_name,
        help=f"YAML file in that directory (default: {default_name})",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. max_epochs=1")
    parser.set_defaults(_kind=kind)


def compose_config(args: argparse.Namespace) -> DictConfig:
    """Composes ``--config-path/--config-name`` plus overrides with Hydra's compose API.

    A relative ``--config-path`` is looked up in the current directory first, then among the
    shipped configs of the command (:func:`solo_clamp.configs.config_dir`).
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    shipped = config_dir(args._kind)
    directory = Path(args.config_path)
    if not directory.is_absolute():
        local = Path.cwd() / directory
        directory = local if local.is_dir() else shipped / directory
    if not directory.is_dir():
        raise CommandError(
            f"--config-path {args.config_path!r}: no such config directory "
            f"(looked in the current directory and {shipped})."
        )
    name = args.config_name
    if not (directory / name).exists() and not (directory / f"{name}.yaml").exists():
        available = sorted(p.name for p in directory.glob("*.yaml"))
        raise CommandError(
            f"--config-name {name!r} not found in {directory}; available: {available}."
        )
    try:
        with initialize_config_dir(config_dir=str(directory.resolve()), version_base="1.2"):
            cfg = compose(config_name=name, overrides=list(args.overrides))
    except HydraException as err:
        raise CommandError(f"bad config or override: {err}") from err
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    return cfg


def require_solo() -> None:
    """Stops a command that needs solo-learn when it is missing; else registers CLAMP as
    ``solo.methods.METHODS["clamp"]``, which every such command relies on."""
    import solo_clamp

    if not solo_clamp.solo_available():
        raise CommandError(solo_clamp.SOLO_MISSING_MESSAGE)
    try:
        solo_clamp.register()
    except ImportError as err:
        message = f"solo-learn was found but CLAMP could not be registered: {err}"
        raise CommandError(message) from err


@dataclass(frozen=True)
class HydraCommand:
    """A subcommand that composes a Hydra config (``--config-path``, ``--config-name``,
    overrides) and passes it to ``runner`` (``"module:function"``, imported when it runs)."""

    kind: str
    default_path: str
    default_name: str
    runner: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, self.kind, self.default_path, self.default_name)

    def run(self, args: argparse.Namespace) -> int:
        require_solo()
        cfg = compose_config(args)
        module_name, function_name = self.runner.split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        try:
            summary = function(cfg)
        except (ValueError, FileNotFoundError, FloatingPointError) as err:
            raise CommandError(str(err)) from err
        if isinstance(summary, dict) and "checkpoint" in summary:
            print(f"checkpoint: {summary['checkpoint']}")
        return 0
