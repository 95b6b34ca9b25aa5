"""Composing a config: a YAML file of a local or shipped folder plus Hydra overrides, with
Hydra's compose API (what ``solo-clamp pretrain``, ``linear``, ``finetune``, ``few-label``
and ``knn`` run on)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from solo_clamp.configs import config_dir
from solo_clamp.errors import ConfigError

__all__ = ["ConfigError", "compose_config"]


def compose_config(
    kind: str, config_path: str, config_name: str, overrides: Sequence[str] = ()
) -> DictConfig:
    """``config_name`` of the folder ``config_path`` with ``overrides`` (``key=value``, Hydra's
    syntax), without Hydra's own ``hydra`` node and not in struct mode.

    A relative ``config_path`` is looked up in the current directory first, then among the
    shipped configs of ``kind`` (:func:`~solo_clamp.configs.config_dir`).

    Raises:
        ConfigError: no such folder or file (the message lists the files there), or an
            override Hydra refuses.
    """
    shipped = config_dir(kind)
    directory = Path(config_path)
    if not directory.is_absolute():
        local = Path.cwd() / directory
        directory = local if local.is_dir() else shipped / directory
    if not directory.is_dir():
        raise ConfigError(
            f"--config-path {config_path!r}: no such config directory "
            f"(looked in the current directory and {shipped})."
        )
    if not (directory / config_name).exists() and not (directory / f"{config_name}.yaml").exists():
        available = sorted(p.name for p in directory.glob("*.yaml"))
        raise ConfigError(
            f"--config-name {config_name!r} not found in {directory}; available: {available}."
        )
    try:
        with initialize_config_dir(config_dir=str(directory.resolve()), version_base="1.2"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except HydraException as err:
        raise ConfigError(f"bad config or override: {err}") from err
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    return cfg
