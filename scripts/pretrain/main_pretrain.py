"""CLAMP pretraining, solo-learn style.

    python scripts/pretrain/main_pretrain.py --config-path mnist --config-name clamp.yaml

``--config-path`` is relative to this folder (``scripts/pretrain``) or absolute. Unlike
solo-learn's own ``main_pretrain.py``, any number of large crops is accepted.
"""

import sys

import hydra
from omegaconf import DictConfig

import solo_clamp


@hydra.main(version_base="1.2", config_path="mnist", config_name="clamp.yaml")
def main(cfg: DictConfig) -> None:
    if not solo_clamp.solo_available():
        sys.exit(f"error: {solo_clamp.SOLO_MISSING_MESSAGE}")
    from solo_clamp.training.pretrain import run_pretrain

    run_pretrain(cfg)


if __name__ == "__main__":
    main()
