"""What a stopped, resumed or failing pretraining run reports: exit status and exceptions.

Importable without solo-learn, so that job scripts and tests can name them cheaply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from solo_clamp.errors import SoloClampError

EXIT_PREEMPTED = 143
"""Exit status of a run stopped by SIGTERM or SIGUSR1 after saving (128 + SIGTERM, what a
scheduler's requeue-on-failure sees): resume with ``auto_resume.enabled=True``."""


class TrainingPreempted(SystemExit):
    """Training stopped on a stop signal after saving its state: the process exits with
    :data:`EXIT_PREEMPTED` unless a caller catches it."""

    def __init__(self, message: str, checkpoint: Optional[Path]):
        super().__init__(EXIT_PREEMPTED)
        self.message = message
        self.checkpoint = checkpoint


class CheckpointWriteError(SoloClampError, ValueError):
    """A checkpoint or ``args.json`` that could not be written (no space left, no permission):
    ``solo-clamp`` reports it as one line (exit status 2), not a traceback."""


class ResumeWarning(UserWarning):
    """A checkpoint skipped by resume because it cannot be loaded, or a fresh start after that."""
