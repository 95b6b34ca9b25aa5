"""CLAMP vs solo-learn's SimCLR, BYOL and VICReg: the same program as ``solo-clamp compare``.

    python scripts/compare/compare.py                       # Fashion-MNIST, CPU, about an hour
    python scripts/compare/compare.py --quick --out runs/smoke
    python scripts/compare/compare.py --config scripts/compare/cifar10.yaml --out runs/cifar10

Every flag of ``solo-clamp compare --help`` works here.
"""

import sys

from solo_clamp.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["compare", *sys.argv[1:]]))
