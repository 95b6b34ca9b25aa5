"""CLAMP vs solo-learn's SimCLR, BYOL and VICReg (same as ``solo-clamp compare``).

    python scripts/compare/compare.py                       # Fashion-MNIST, CPU, about an hour
    python scripts/compare/compare.py --quick --out runs/smoke
    python scripts/compare/compare.py --config scripts/compare/cifar10.yaml --out runs/cifar10

Every flag of ``solo-clamp compare --help`` works here.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from solo_clamp.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
