"""Model zoo: a manifest of pretrained backbones and verified downloads.

    from solo_clamp.backbones import load_backbone
    backbone = load_backbone("clamp-mnist-resnet18")   # verified download, eval mode

Modules, one concern each:

* :mod:`~solo_clamp.zoo.errors`: the user-facing errors.
* :mod:`~solo_clamp.zoo.manifest`: entry dataclasses and their validation (the schema).
* :mod:`~solo_clamp.zoo.index`: reading, validating and atomically writing ``index.yaml``.
* :mod:`~solo_clamp.zoo.download`: sha256 checks, the cache, and locked, resumable downloads
  through pooch (HTTP Range, Hugging Face).
* :mod:`~solo_clamp.zoo.weights`: safetensors files.
* :mod:`~solo_clamp.zoo.portable`: the training cfg as the manifest records it.
* :mod:`~solo_clamp.zoo.publish`: a pretrain checkpoint into the zoo (a tool built on the
  backbone loader; not imported by this package).

The backbone loader, :func:`solo_clamp.backbones.load_backbone`, takes a zoo name as well as a
checkpoint or a run directory. Importing this package needs torch only.
"""

from __future__ import annotations

from solo_clamp.zoo.download import CACHE_ENV, cache_dir, download, sha256_file, verify_file
from solo_clamp.zoo.errors import (
    DownloadError,
    HashMismatchError,
    ManifestError,
    UnknownModelError,
    ZooError,
)
from solo_clamp.zoo.index import (
    ZooIndex,
    default_index_path,
    find_by_sha256,
    load_index,
    write_index,
)
from solo_clamp.zoo.manifest import BackboneSpec, Evaluation, check_sha256
from solo_clamp.zoo.weights import read_weights, weights_metadata

__all__ = [
    "CACHE_ENV",
    "BackboneSpec",
    "DownloadError",
    "Evaluation",
    "HashMismatchError",
    "ManifestError",
    "UnknownModelError",
    "ZooError",
    "ZooIndex",
    "cache_dir",
    "check_sha256",
    "default_index_path",
    "download",
    "find_by_sha256",
    "load_index",
    "read_weights",
    "sha256_file",
    "verify_file",
    "weights_metadata",
    "write_index",
]
