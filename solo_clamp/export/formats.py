"""A solo-learn backbone's weights in the layouts of torchvision, timm and detectron2.

solo-learn's ResNets are torchvision's with ``fc`` replaced by ``Identity``, so torchvision
and timm (whose ResNets use the same parameter names) load the weights as they are, with only
``fc.*`` missing. detectron2 reads a pickle of numpy arrays under its own names (``stem.*``,
``res2`` .. ``res5``, ``convN.norm``, ``shortcut``), the renaming of MoCo's
``convert-pretrain-to-detectron2.py`` that the official CLAMP code also uses.

A backbone a target cannot represent is refused with the reason: the CIFAR stem (a 3 x 3,
stride-1 first convolution without max-pool) exists in none of the three ImageNet ResNets,
and only ResNets have a detectron2 or torchvision counterpart here.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import torch

from solo_clamp.io import atomic_path

TARGETS = ("torchvision", "timm", "detectron2")
RESNETS = ("resnet18", "resnet50")
"""The solo-learn backbones with the same architecture in torchvision, timm and detectron2."""


class ExportError(ValueError):
    """The backbone cannot be written in the requested format."""


def check_exportable(name: str, cifar_stem: bool, target: str) -> None:
    """Raises :class:`ExportError` saying why ``target`` cannot represent the backbone."""
    if target not in TARGETS:
        raise ExportError(f"--to must be one of {list(TARGETS)}, got {target!r}.")
    if name not in RESNETS:
        raise ExportError(
            f"backbone {name!r} has no {target} counterpart here: only {list(RESNETS)} are "
            "exported (same architecture and parameter names)."
        )
    if cifar_stem:
        raise ExportError(
            f"backbone {name!r} has the CIFAR stem (3x3 stride-1 conv1, no max-pool), which "
            f"{target}'s ImageNet ResNet cannot represent: its conv1 is 7x7, stride 2."
        )


def _torchvision_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in state.items()}


def detectron2_key(key: str) -> str:
    """torchvision ResNet name -> detectron2 ResNet name (``layer1.0.bn1.weight`` ->
    ``res2.0.conv1.norm.weight``)."""
    if not key.startswith("layer"):
        key = "stem." + key
    for stage in (1, 2, 3, 4):
        key = key.replace(f"layer{stage}.", f"res{stage + 1}.")
    for index in (1, 2, 3):
        key = key.replace(f"bn{index}.", f"conv{index}.norm.")
    return key.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")


def detectron2_state(state: Mapping[str, torch.Tensor]) -> dict:
    """detectron2's checkpoint dict: numpy arrays under detectron2's names, BatchNorm's
    ``num_batches_tracked`` dropped (detectron2's FrozenBatchNorm has none)."""
    model = {
        detectron2_key(key): value.detach().cpu().float().numpy()
        for key, value in state.items()
        if not key.endswith("num_batches_tracked")
    }
    return {"model": model, "__author__": "solo-clamp", "matching_heuristics": True}


def write_export(
    state: Mapping[str, torch.Tensor], name: str, cifar_stem: bool, target: str, out: Path
) -> Path:
    """Writes ``state`` (a solo-learn backbone's ``state_dict``) for ``target`` to ``out``
    atomically: a ``torch.save`` state dict (torchvision), safetensors (timm) or a pickle
    (detectron2, ``.pkl``). Returns ``out``."""
    check_exportable(name, cifar_stem, target)
    out = Path(out)
    with atomic_path(out) as tmp:
        if target == "torchvision":
            torch.save(_torchvision_state(state), tmp)
        elif target == "timm":
            from safetensors.torch import save_file

            save_file(_torchvision_state(state), str(tmp), metadata={"timm_model": name})
        else:
            with open(tmp, "wb") as stream:
                pickle.dump(detectron2_state(state), stream)
    return out
