"""A pretrained backbone for use elsewhere: resolved from a checkpoint, a run directory or a
zoo name (:mod:`~solo_clamp.export.source`), written for torchvision, timm or detectron2
(:mod:`~solo_clamp.export.formats`). Needs torch and torchvision, not solo-learn.
"""

from __future__ import annotations

from solo_clamp.export.formats import (
    TARGETS,
    ExportError,
    check_exportable,
    detectron2_key,
    detectron2_settings,
    detectron2_state,
    write_export,
)
from solo_clamp.export.source import PretrainedBackbone, resolve_backbone

__all__ = [
    "TARGETS",
    "ExportError",
    "PretrainedBackbone",
    "check_exportable",
    "detectron2_key",
    "detectron2_settings",
    "detectron2_state",
    "resolve_backbone",
    "write_export",
]
