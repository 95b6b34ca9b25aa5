"""``solo-clamp pretrain``: CLAMP pretraining from a Hydra config (default: MNIST on CPU)."""

from __future__ import annotations

import argparse

from solo_clamp.commands import CommandError
from solo_clamp.commands.hydra_config import add_config_arguments, compose_config, require_solo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "pretrain", "mnist", "clamp.yaml")


def run(args: argparse.Namespace) -> int:
    require_solo()
    cfg = compose_config(args)
    from solo_clamp.training.pretrain import run_pretrain

    try:
        summary = run_pretrain(cfg)
    except ValueError as err:
        raise CommandError(str(err)) from err
    if "checkpoint" in summary:
        print(f"checkpoint: {summary['checkpoint']}")
    return 0
