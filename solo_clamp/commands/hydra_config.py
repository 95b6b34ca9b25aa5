"""Shared options of the Hydra-configured subcommands (pretrain, linear, knn)."""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig

from solo_clamp.commands import CommandError

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts"


def add_config_arguments(
    parser: argparse.ArgumentParser, kind: str, default_path: str, default_name: str
) -> None:
    parser.add_argument(
        "--config-path",
        default=default_path,
        help=f"config directory, absolute or relative to scripts/{kind}/ (default: {default_path})",
    )
    parser.add_argument(
        "--config-name",
        default=default_name,
        help=f"YAML file in that directory (default: {default_name})",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. max_epochs=1")
    parser.set_defaults(_kind=kind)


def compose_config(args: argparse.Namespace) -> DictConfig:
    """Composes ``--config-path/--config-name`` plus overrides with Hydra's compose API."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    directory = Path(args.config_path)
    if not directory.is_absolute():
        local = Path.cwd() / directory
        directory = local if local.is_dir() else SCRIPTS_DIR / args._kind / directory
    if not directory.is_dir():
        raise CommandError(
            f"--config-path {args.config_path!r}: no such config directory "
            f"(looked in the current directory and {SCRIPTS_DIR / args._kind})."
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
    import solo_clamp

    if not solo_clamp.solo_available():
        raise CommandError(solo_clamp.SOLO_MISSING_MESSAGE)


def hydra_command(kind: str, default_path: str, default_name: str, runner: str):
    """``(add_arguments, run)`` of a subcommand that composes a Hydra config and passes it to
    ``runner`` (``"module:function"``, imported only when the command runs)."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, kind, default_path, default_name)

    def run(args: argparse.Namespace) -> int:
        import importlib

        require_solo()
        cfg = compose_config(args)
        module_name, function_name = runner.split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        try:
            summary = function(cfg)
        except (ValueError, FileNotFoundError, FloatingPointError) as err:
            raise CommandError(str(err)) from err
        if isinstance(summary, dict) and "checkpoint" in summary:
            print(f"checkpoint: {summary['checkpoint']}")
        return 0

    return add_arguments, run
