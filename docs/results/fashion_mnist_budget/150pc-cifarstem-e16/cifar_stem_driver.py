"""Budget-search experiment, not a compare option: ``solo-clamp`` with solo-learn's CIFAR stem
(3x3 conv, stride 1, no max-pool) swapped into every method's backbone after construction, as
solo-learn itself does only for the cifar10/cifar100 datasets. Usage: the ``solo-clamp``
arguments, e.g. ``python cifar_stem_driver.py compare --config ... --tune-only``."""

import sys

import solo.methods.base as base
import torch.nn as nn

from solo_clamp.cli import main

_build = base.BaseMethod.__init__


def _build_with_cifar_stem(self, cfg) -> None:
    _build(self, cfg)
    self.backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    self.backbone.maxpool = nn.Identity()


base.BaseMethod.__init__ = _build_with_cifar_stem

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
