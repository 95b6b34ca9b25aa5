"""Model zoo: a manifest of pretrained backbones, verified downloads, loading and publishing.

    from solo_clamp import zoo
    backbone = zoo.load("clamp-mnist-resnet18")   # verified download, eval mode

Modules, one concern each:

* :mod:`~solo_clamp.zoo.errors`: the user-facing errors.
* :mod:`~solo_clamp.zoo.manifest`: entry dataclasses and their validation (the schema).
* :mod:`~solo_clamp.zoo.index`: reading, validating and atomically writing ``index.yaml``.
* :mod:`~solo_clamp.zoo.files`: sha256 digests and verification.
* :mod:`~solo_clamp.zoo.fetch`: one source into a ``.part`` file (HTTP Range, Hugging Face).
* :mod:`~solo_clamp.zoo.download`: the cache, locking and verified downloads of an entry.
* :mod:`~solo_clamp.zoo.weights`: safetensors files.
* :mod:`~solo_clamp.zoo.publish`: a pretrain checkpoint into the zoo.
* :mod:`~solo_clamp.zoo.portable`: the training cfg as the manifest records it.

:func:`load` is the backbone loader, :func:`solo_clamp.backbones.load_backbone`, which also
takes a checkpoint or a run directory. Importing this package needs torch only: solo-learn is
imported inside :func:`solo_clamp.backbones.build_backbone` (and so by :func:`load` and
:func:`publish`).
"""

from __future__ import annotations

from solo_clamp.backbones import BackboneSpec
from solo_clamp.backbones import load_backbone as load
from solo_clamp.zoo.download import CACHE_ENV, cache_dir, download
from solo_clamp.zoo.errors import (
    DownloadError,
    HashMismatchError,
    ManifestError,
    UnknownModelError,
    ZooError,
)
from solo_clamp.zoo.files import sha256_file, verify_file
from solo_clamp.zoo.index import (
    ZooIndex,
    default_index_path,
    find_by_sha256,
    load_index,
    write_index,
)
from solo_clamp.zoo.manifest import Evaluation, check_sha256
from solo_clamp.zoo.publish import publish
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
    "load",
    "load_index",
    "publish",
    "read_weights",
    "sha256_file",
    "verify_file",
    "weights_metadata",
    "write_index",
]
