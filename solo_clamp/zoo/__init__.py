"""Model zoo: a manifest of pretrained backbones and their verified downloads.

    from solo_clamp.backbones import load_backbone
    backbone = load_backbone("clamp-mnist-resnet18")   # verified download, eval mode
    path = solo_clamp.zoo.download("clamp-mnist-resnet18")  # just the weights file

:mod:`~solo_clamp.zoo.manifest` reads, validates and writes ``index.yaml``, whose entries are
:mod:`~solo_clamp.zoo.entry`'s; :mod:`~solo_clamp.zoo.download` verifies, caches and downloads
(through pooch) an entry's safetensors file and reads it; :mod:`~solo_clamp.zoo.publish` turns a
pretrain checkpoint into an entry (a tool built on the backbone loader, not imported here). Their
errors are the ``ZooError`` family of :mod:`solo_clamp.errors`. Importing this package needs torch
only.
"""

from solo_clamp.zoo.download import download, read_weights, verify_file
from solo_clamp.zoo.manifest import load_index

__all__ = ["download", "load_index", "read_weights", "verify_file"]
