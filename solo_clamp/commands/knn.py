"""``solo-clamp knn``: offline weighted kNN of a checkpoint (Hydra config)."""

from solo_clamp.commands.hydra_config import hydra_command

add_arguments, run = hydra_command("linear", "mnist", "knn.yaml", "solo_clamp.training.knn:run_knn")
