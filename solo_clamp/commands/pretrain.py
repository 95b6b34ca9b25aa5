"""``solo-clamp pretrain``: CLAMP pretraining from a Hydra config (default: MNIST on CPU)."""

from solo_clamp.commands.hydra_config import hydra_command

add_arguments, run = hydra_command(
    "pretrain", "mnist", "clamp.yaml", "solo_clamp.training.pretrain:run_pretrain"
)
