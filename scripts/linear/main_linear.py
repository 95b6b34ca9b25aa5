"""Linear evaluation of a CLAMP (or any solo-learn) checkpoint: ``solo-clamp linear``.

    python scripts/linear/main_linear.py --config-path mnist --config-name clamp.yaml \
        pretrained_feature_extractor=trained_models/clamp/<run>

``--config-path`` is absolute, relative to the current directory, or one of this folder's
(``scripts/linear``, the configs the package ships).
"""

import sys

from solo_clamp.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["linear", *sys.argv[1:]]))
