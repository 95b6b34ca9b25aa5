"""Linear evaluation of a CLAMP (or any solo-learn) checkpoint.

    python scripts/linear/main_linear.py --config-path mnist --config-name clamp.yaml \
        pretrained_feature_extractor=trained_models/clamp/<run>
"""

import sys

import hydra
from omegaconf import DictConfig

import solo_clamp


@hydra.main(version_base="1.2", config_path="mnist", config_name="clamp.yaml")
def main(cfg: DictConfig) -> None:
    if not solo_clamp.solo_available():
        sys.exit(f"error: {solo_clamp.SOLO_MISSING_MESSAGE}")
    from solo_clamp.training.linear import run_linear

    run_linear(cfg)


if __name__ == "__main__":
    main()
