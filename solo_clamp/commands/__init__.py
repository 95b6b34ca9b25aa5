"""Subcommands of the ``solo-clamp`` console command.

Each module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and imports
solo-learn (or any heavy dependency) only inside ``run``.
"""


class CommandError(Exception):
    """A user-facing error: ``solo-clamp`` prints it as one line and exits with status 2."""
