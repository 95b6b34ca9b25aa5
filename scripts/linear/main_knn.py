"""Offline weighted kNN of a CLAMP (or any solo-learn) checkpoint: ``solo-clamp knn``.

    python scripts/linear/main_knn.py --config-path mnist --config-name knn.yaml \
        pretrained_checkpoint=trained_models/clamp/<run>

``--config-path`` is absolute, relative to the current directory, or one of this folder's
(``scripts/linear``, the configs the package ships).
"""

import sys

from solo_clamp.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["knn", *sys.argv[1:]]))
