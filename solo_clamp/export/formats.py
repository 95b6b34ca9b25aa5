"""A solo-learn backbone's weights in the layouts of torchvision, timm and detectron2.

solo-learn's ResNets are torchvision's with ``fc`` replaced by ``Identity``, so torchvision
and timm (whose ResNets use the same parameter names) load the weights as they are, with only
``fc.*`` missing. detectron2 reads a pickle of numpy arrays under its own names (``stem.*``,
``res2`` .. ``res5``, ``convN.norm``, ``shortcut``), the renaming of MoCo's
``convert-pretrain-to-detectron2.py`` that the official CLAMP code also uses.

A backbone a target cannot represent is refused with the reason: the CIFAR stem (a 3 x 3,
stride-1 first convolution without max-pool) exists in none of the three ImageNet ResNets,
only ResNets have a detectron2 or torchvision counterpart here, and ResNet kwargs that change
the architecture (groups, width, dilation) are not what ``torchvision.models.resnet50()``
builds.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torchvision
from safetensors.torch import save_file

from solo_clamp.errors import SoloClampError
from solo_clamp.io import atomic_path

TARGETS = {
    "torchvision": "torchvision.models.{name}().load_state_dict(torch.load('{out}'), "
    "strict=False)  # only fc.* missing",
    "timm": "timm.create_model('{name}', pretrained=True, num_classes=0, "
    "pretrained_cfg_overlay=dict(file='{out}'))",
    "detectron2": "MODEL.WEIGHTS {out}",
}
"""The libraries a backbone is exported for (``solo-clamp export --to``), each with how it loads
the file (``{name}``: the backbone, ``{out}``: the file written)."""
RESNETS = ("resnet18", "resnet50")
"""The solo-learn backbones with the same architecture in torchvision, timm and detectron2."""
HARMLESS_KWARGS = ("zero_init_residual",)
"""ResNet kwargs that change only the initialisation, not the architecture."""
DETECTRON2_DEPTH = {"resnet18": 18, "resnet50": 50}


class ExportError(SoloClampError, ValueError):
    """The backbone cannot be written in the requested format."""


def check_target(target: str) -> None:
    """Raises :class:`ExportError` unless ``target`` is one of :data:`TARGETS`."""
    if target not in TARGETS:
        raise ExportError(f"--to must be one of {list(TARGETS)}, got {target!r}.")


def check_exportable(
    name: str, cifar_stem: bool, target: str, kwargs: Mapping[str, Any] | None = None
) -> None:
    """Raises :class:`ExportError` saying why ``target`` cannot represent the backbone."""
    check_target(target)
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
    changed = sorted(set(kwargs or {}) - set(HARMLESS_KWARGS))
    if changed:
        raise ExportError(
            f"backbone {name!r} was built with {changed}, which change the architecture: "
            f"{target}'s default {name} cannot represent it."
        )


def float32_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies, floating tensors in fp32 (zoo weights may be stored in fp16)."""
    return {
        key: (value.float() if value.is_floating_point() else value).detach().cpu().contiguous()
        for key, value in state.items()
    }


def check_torchvision_fit(name: str, state: Mapping[str, torch.Tensor]) -> None:
    """Loads ``state`` into ``torchvision.models.<name>()``: only ``fc.*`` may be missing,
    nothing may be unexpected, every shape must match (else :class:`ExportError`)."""
    model = getattr(torchvision.models, name)()
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ExportError(f"the weights do not fit torchvision's {name}: {err}") from err
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ExportError(
            f"the weights do not fit torchvision's {name}: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}."
        )


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
    ``num_batches_tracked`` dropped (detectron2's FrozenBatchNorm has none). The
    ``__author__`` key makes detectron2 read it as its own format, ``matching_heuristics``
    lets it find ``res5`` inside the C4 ROI head."""
    model = {
        detectron2_key(key): value.detach().cpu().float().numpy()
        for key, value in state.items()
        if not key.endswith("num_batches_tracked")
    }
    return {"model": model, "__author__": "solo-clamp", "matching_heuristics": True}


def detectron2_settings(
    name: str, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> list[str]:
    """The detectron2 config lines these weights need: RGB input normalised as in
    pretraining (detectron2 works in 0-255), torchvision's stride in the 3x3 convolution."""
    lines = [
        f"MODEL.RESNETS.DEPTH {DETECTRON2_DEPTH[name]}",
        "MODEL.RESNETS.STRIDE_IN_1X1 False",
        "INPUT.FORMAT RGB",
    ]
    if name == "resnet18":
        lines.append("MODEL.RESNETS.RES2_OUT_CHANNELS 64")
    if mean is not None and std is not None:
        lines.append("MODEL.PIXEL_MEAN " + str([round(255 * float(m), 3) for m in mean]))
        lines.append("MODEL.PIXEL_STD " + str([round(255 * float(s), 3) for s in std]))
    return lines


def write_export(
    state: Mapping[str, torch.Tensor],
    name: str,
    cifar_stem: bool,
    target: str,
    out: Path,
    kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Writes ``state`` (a solo-learn backbone's ``state_dict``) for ``target`` to ``out``
    atomically, after checking that ``torchvision.models.<name>()`` loads it: a ``torch.save``
    state dict (torchvision), safetensors (timm) or a pickle (detectron2, ``.pkl``, the
    suffix detectron2 needs to read it as one). Floating tensors are written in fp32.
    Returns ``out``."""
    check_exportable(name, cifar_stem, target, kwargs)
    out = Path(out)
    if target == "detectron2" and out.suffix != ".pkl":
        raise ExportError(
            f"--out {out}: detectron2 reads a pickled checkpoint only from a file ending in '.pkl'."
        )
    state = float32_state(state)
    check_torchvision_fit(name, state)
    with atomic_path(out) as tmp:
        if target == "torchvision":
            torch.save(state, tmp)
        elif target == "timm":
            save_file(state, str(tmp), metadata={"format": "pt", "timm_model": name})
        else:
            with open(tmp, "wb") as stream:
                pickle.dump(detectron2_state(state), stream)
    return out
