"""Model zoo: a manifest of pretrained backbones, verified downloads, loading and publishing.

    from solo_clamp import zoo
    backbone = zoo.load("clamp-mnist-resnet18")   # verified download, eval mode

Modules, one concern each:

* :mod:`~solo_clamp.zoo.errors`: the user-facing errors.
* :mod:`~solo_clamp.zoo.manifest`: entry dataclasses and their validation (the schema).
* :mod:`~solo_clamp.zoo.index`: reading, validating and atomically writing ``index.yaml``.
* :mod:`~solo_clamp.zoo.files`: atomic file replacement and sha256 verification.
* :mod:`~solo_clamp.zoo.fetch`: one source into a ``.part`` file (HTTP Range, Hugging Face).
* :mod:`~solo_clamp.zoo.download`: the cache, locking and verified downloads of an entry.
* :mod:`~solo_clamp.zoo.weights`: safetensors files, solo-learn backbones, :func:`load`.
* :mod:`~solo_clamp.zoo.publish`: a pretrain checkpoint into the zoo.

Checkpoints are read by :mod:`solo_clamp.checkpoints`, which also builds the backbones.
Importing this package needs torch only: solo-learn is imported inside
:func:`solo_clamp.checkpoints.build_backbone` (and so by :func:`load` and :func:`publish`).
"""

from __future__ import annotations

from solo_clamp.zoo.download import CACHE_ENV, cache_dir, download
from solo_clamp.zoo.errors import (
    DownloadError,
    HashMismatchError,
    ManifestError,
    UnknownModelError,
    ZooError,
)
from solo_clamp.zoo.files import PathLike, sha256_file, verify_file
from solo_clamp.zoo.index import (
    INDEX_ENV,
    SCHEMA_VERSION,
    IndexLike,
    ZooIndex,
    default_index_path,
    find_by_sha256,
    load_index,
    parse_index,
    write_index,
)
from solo_clamp.zoo.manifest import (
    FORMATS,
    BackboneSpec,
    Evaluation,
    Source,
    ZooEntry,
    check_name,
    check_sha256,
    check_url,
    parse_entry,
)
from solo_clamp.zoo.publish import DTYPES, publish
from solo_clamp.zoo.weights import load, read_weights, weights_metadata

__all__ = [
    "BackboneSpec",
    "DownloadError",
    "Evaluation",
    "HashMismatchError",
    "ManifestError",
    "Source",
    "UnknownModelError",
    "ZooEntry",
    "ZooError",
    "ZooIndex",
    "cache_dir",
    "check_name",
    "default_index_path",
    "download",
    "find_by_sha256",
    "load",
    "load_index",
    "parse_entry",
    "parse_index",
    "publish",
    "read_weights",
    "sha256_file",
    "verify_file",
    "weights_metadata",
    "write_index",
    # also importable from here, as before the split
    "CACHE_ENV",
    "DTYPES",
    "FORMATS",
    "INDEX_ENV",
    "SCHEMA_VERSION",
    "IndexLike",
    "PathLike",
    "check_sha256",
    "check_url",
]
