"""Semi-supervised fine-tuning of a CLAMP (or any solo-learn) backbone: ``solo-clamp finetune``.

    python scripts/linear/main_finetune.py --config-path mnist --config-name finetune.yaml \
        pretrained_feature_extractor=clamp-mnist-resnet18 labels.fraction=0.01

``--config-path`` is absolute, relative to the current directory, or one of this folder's
(``scripts/linear``, the configs the package ships).
"""

import sys

from solo_clamp.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["finetune", *sys.argv[1:]]))
