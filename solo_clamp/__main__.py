"""``python -m solo_clamp ...``: the same as the ``solo-clamp`` console command."""

import sys

from solo_clamp.cli import main

if __name__ == "__main__":
    sys.exit(main())
