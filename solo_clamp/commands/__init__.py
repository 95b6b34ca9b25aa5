"""Subcommands of the ``solo-clamp`` console command.

Each module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and imports
solo-learn, torch (or any heavy dependency) only inside ``run``: the lazy boundary that keeps
``solo-clamp --help`` cheap (see docs/architecture.md).

``solo-clamp`` prints a :class:`~solo_clamp.errors.SoloClampError` (a bad config, checkpoint
or data, a diverged run, a zoo failure, a :class:`CommandError`) as one line and exits with
status 2; any other exception is a bug and keeps its traceback. A command converts only the
errors of libraries that do not raise those (a missing solo-learn's ``ModuleNotFoundError``)
into a ``CommandError``.
"""

import solo_clamp
from solo_clamp.errors import SoloClampError


class CommandError(SoloClampError):
    """A command's arguments that cannot be used, or a missing dependency: ``solo-clamp``
    prints it as one line and exits with status 2."""


def require_solo() -> None:
    """Stops a command that needs solo-learn when it is missing; else registers CLAMP as
    ``solo.methods.METHODS["clamp"]``, which every such command relies on."""
    if not solo_clamp.solo_available():
        raise CommandError(solo_clamp.SOLO_MISSING_MESSAGE)
    try:
        solo_clamp.register()
    except ImportError as err:
        message = f"solo-learn was found but CLAMP could not be registered: {err}"
        raise CommandError(message) from err
