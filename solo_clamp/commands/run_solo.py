"""``solo-clamp run-solo SCRIPT [ARGS...]``: runs one of solo-learn's own programs
(``main_linear.py``, ``main_knn.py``, ``main_umap.py``, ...) unchanged, with CLAMP
registered in ``solo.methods.METHODS`` first, so they accept ``method: clamp`` checkpoints.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from solo_clamp.commands import CommandError, require_solo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", help="path of a solo-learn program, e.g. solo-learn/main_knn.py")
    parser.add_argument(
        "script_args", nargs=argparse.REMAINDER, help="arguments passed to the program unchanged"
    )


def run(args: argparse.Namespace) -> int:
    require_solo()  # and registers CLAMP
    script = Path(args.script)
    if not script.is_file():
        raise CommandError(f"{script} does not exist (give the path of a solo-learn program).")
    sys.argv = [str(script), *args.script_args]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")
    return 0
