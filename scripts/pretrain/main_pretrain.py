"""CLAMP pretraining, solo-learn style: the same program as ``solo-clamp pretrain``.

    python scripts/pretrain/main_pretrain.py --config-path mnist --config-name clamp.yaml

``--config-path`` is absolute, relative to the current directory, or one of this folder's
(``scripts/pretrain``, the configs the package ships). Unlike solo-learn's own
``main_pretrain.py``, any number of large crops is accepted.
"""

import sys

from solo_clamp.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["pretrain", *sys.argv[1:]]))
