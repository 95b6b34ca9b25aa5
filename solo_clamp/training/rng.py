"""Global random-number-generator states, storable in a checkpoint.

Lightning 2.1 does not save the global RNG states in its checkpoints, so after a resume the
data order (``RandomSampler`` draws its seed from torch's global generator) and the random
augmentations differ from an uninterrupted run. Saving them with each checkpoint and
restoring them when the next epoch starts makes a resumed run repeat the uninterrupted one.
A run resumed in the middle of an epoch also needs that epoch's data iterator at the same
position: :func:`replay_epoch_position`.

The states are kept in types that ``torch.load(weights_only=True)`` accepts (tensors, lists,
numbers, strings), because Lightning loads checkpoints with torch's default.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def collect_rng_states() -> dict[str, Any]:
    """The torch (CPU and initialised CUDA), numpy and Python global RNG states."""
    kind, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached_gauss),
        ],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores states returned by :func:`collect_rng_states` (missing entries are skipped)."""
    if "torch" in states:
        torch.set_rng_state(states["torch"].cpu())
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    if "numpy" in states:
        kind, keys, pos, has_gauss, cached_gauss = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gauss))
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
