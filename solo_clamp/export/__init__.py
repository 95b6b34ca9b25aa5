"""A pretrained backbone for use elsewhere, written for torchvision, timm or detectron2
(:mod:`~solo_clamp.export.formats`); :func:`solo_clamp.backbones.resolve_backbone` finds its
weights in a checkpoint, a run directory or the zoo. Needs torch and torchvision, not
solo-learn.
"""

from __future__ import annotations

from solo_clamp.export.formats import (
    TARGETS,
    ExportError,
    check_exportable,
    check_target,
    detectron2_key,
    detectron2_settings,
    detectron2_state,
    write_export,
)

__all__ = [
    "TARGETS",
    "ExportError",
    "check_exportable",
    "check_target",
    "detectron2_key",
    "detectron2_settings",
    "detectron2_state",
    "write_export",
]
