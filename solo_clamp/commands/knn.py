"""``solo-clamp knn``: offline weighted kNN of a checkpoint (Hydra config)."""

from __future__ import annotations

import argparse

from solo_clamp.commands import CommandError
from solo_clamp.commands.hydra_config import add_config_arguments, compose_config, require_solo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "linear", "mnist", "knn.yaml")


def run(args: argparse.Namespace) -> int:
    require_solo()
    cfg = compose_config(args)
    from solo_clamp.training.knn import run_knn

    try:
        run_knn(cfg)
    except (ValueError, FileNotFoundError) as err:
        raise CommandError(str(err)) from err
    return 0
