"""``solo-clamp linear``: linear evaluation of a pretrained backbone (Hydra config)."""

from solo_clamp.commands.hydra_config import hydra_command

add_arguments, run = hydra_command(
    "linear", "mnist", "clamp.yaml", "solo_clamp.training.linear:run_linear"
)
