"""Model zoo: manifest validation and verified, resumable, locked downloads (torch only).

Downloads go to a loopback HTTP server (127.0.0.1, port 0) whose handler implements
``Range`` requests and can drop the connection part-way; it stops in the fixture finalizer
and, failing that, by itself after a minute.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Optional

import pooch
import pytest
import torch
import yaml

from solo_clamp import errors, zoo
from solo_clamp.cli import main as cli_main
from solo_clamp.zoo.download import CACHE_ENV
from solo_clamp.zoo.manifest import ZooIndex
from solo_clamp.zoo.manifest import write_index as write_zoo_index
from solo_clamp.zoo.publish import portable_config, publish

PAYLOAD = os.urandom(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FileServer:
    """State shared with the request handler: files, request log, faults to inject."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, Optional[str]]] = []
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before the first drop
        self.chunk_delay = 0.0
        self.ignore_range = False
        self.lock = threading.Lock()
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def gets(self, path: str) -> list[Optional[str]]:
        """The Range headers (None: no Range) of the GETs of ``path``."""
        with self.lock:
            return [rng for p, rng in self.requests if p == path]


def _handler(state: FileServer) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
                drop = state.drop_after.pop(self.path, None)
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if rng and not state.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if drop is not None:  # promise the whole body, send part of it, hang up
                self.wfile.write(body[:drop])
                self.wfile.flush()
                self.close_connection = True
                return
            for i in range(0, len(body), 32_768):
                self.wfile.write(body[i : i + 32_768])
                if state.chunk_delay:
                    time.sleep(state.chunk_delay)

    return Handler


@pytest.fixture
def server():
    state = FileServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    watchdog = threading.Timer(60.0, httpd.shutdown)  # stops by itself if the test hangs
    watchdog.daemon = True
    watchdog.start()
    yield state
    watchdog.cancel()
    stopper = threading.Thread(target=httpd.shutdown, daemon=True)
    stopper.start()
    stopper.join(timeout=5)
    thread.join(timeout=5)
    httpd.server_close()


@pytest.fixture
def retrieved(monkeypatch) -> list[str]:
    """The URLs handed to ``pooch.retrieve``: every download goes through pooch."""
    urls: list[str] = []
    real = pooch.retrieve

    def spy(url: str, *args: Any, **kwargs: Any) -> str:
        urls.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(pooch, "retrieve", spy)
    return urls


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(path))
    return path


def raw_entry(**overrides: Any) -> dict[str, Any]:
    entry = {
        "name": "tiny",
        "method": "clamp",
        "backbone": {"name": "resnet18", "kwargs": {}, "cifar_stem": False},
        "dataset": "mnist",
        "epochs": 2,
        "views": 4,
        "evaluation": {"knn": {"top1": 91.5, "command": "solo-clamp knn ..."}},
        "config": {"method": "clamp"},
        "size": len(PAYLOAD),
        "sha256": SHA,
        "sources": [],
        "format": "safetensors-fp16",
    }
    entry.update(overrides)
    return entry


def write_index(path: Path, *entries: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "models": list(entries)}))
    return path


@pytest.fixture
def hosted(server, tmp_path) -> Path:
    """A manifest whose entry ``tiny`` is served by the loopback server."""
    server.files["/tiny.bin"] = PAYLOAD
    return write_index(
        tmp_path / "zoo" / "index.yaml", raw_entry(sources=[server.url("/tiny.bin")])
    )


def leftovers(cache: Path) -> list[str]:
    """Cache files other than lock files."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def test_download_verifies_and_caches(hosted, server, cache, retrieved):
    path = zoo.download("tiny", hosted, progress=False)
    assert retrieved == [server.url("/tiny.bin")]
    assert path.parent == cache and path.name == zoo.load_index(hosted).get("tiny").cache_name
    assert path.read_bytes() == PAYLOAD
    zoo.verify_file(path, SHA, len(PAYLOAD))
    assert zoo.download("tiny", hosted, progress=False) == path
    assert server.gets("/tiny.bin") == [None]  # the second call used the verified cache
    assert leftovers(cache) == [path.name]


def test_interrupted_download_resumes_on_the_next_call(hosted, server, cache, retrieved):
    server.drop_after["/tiny.bin"] = 70_000
    with pytest.raises(errors.DownloadError, match="partial data kept") as err:
        zoo.download("tiny", hosted, progress=False, attempts=1)
    assert server.url("/tiny.bin") in str(err.value)
    part = cache / (zoo.load_index(hosted).get("tiny").cache_name + ".part")
    assert 0 < part.stat().st_size < len(PAYLOAD)
    kept = part.stat().st_size

    path = zoo.download("tiny", hosted, progress=True)
    assert server.gets("/tiny.bin") == [None, f"bytes={kept}-"]
    assert pooch.file_hash(str(path)) == SHA
    assert not part.exists()
    assert retrieved == [server.url("/tiny.bin")] * 2


def test_interrupted_download_resumes_within_one_call(hosted, server, cache):
    server.drop_after["/tiny.bin"] = 50_000
    path = zoo.download("tiny", hosted, progress=False, retry_wait=0)
    ranges = server.gets("/tiny.bin")
    assert ranges[0] is None and len(ranges) == 2 and ranges[1].startswith("bytes=")
    assert path.read_bytes() == PAYLOAD


def test_a_server_ignoring_range_sends_the_whole_file(hosted, server, cache):
    server.ignore_range = True
    server.drop_after["/tiny.bin"] = 70_000
    path = zoo.download("tiny", hosted, progress=False, retry_wait=0)
    ranges = server.gets("/tiny.bin")
    assert ranges[0] is None and len(ranges) == 2 and ranges[1].startswith("bytes=")
    assert path.read_bytes() == PAYLOAD  # the 200 answer replaced the kept prefix


def test_tampered_file_is_rejected_and_not_kept(hosted, server, cache, retrieved):
    tampered = bytearray(PAYLOAD)
    tampered[1234] ^= 0xFF
    server.files["/tiny.bin"] = bytes(tampered)
    with pytest.raises(errors.HashMismatchError, match="nothing was kept") as err:
        zoo.download("tiny", hosted, progress=False)
    assert SHA in str(err.value) and "does not match the known hash" in str(err.value)  # pooch's
    assert leftovers(cache) == []  # no final file, no .part to poison a later download
    assert retrieved == [server.url("/tiny.bin")]

    server.files["/tiny.bin"] = PAYLOAD
    assert zoo.download("tiny", hosted, progress=False).read_bytes() == PAYLOAD


def test_wrong_size_is_rejected_before_downloading(hosted, server, cache):
    server.files["/tiny.bin"] = PAYLOAD + b"extra"
    with pytest.raises(errors.HashMismatchError, match="serves"):
        zoo.download("tiny", hosted, progress=False)
    assert leftovers(cache) == []


def test_stale_partial_file_does_not_poison_the_download(hosted, server, cache):
    entry = zoo.load_index(hosted).get("tiny")
    cache.mkdir()
    (cache / (entry.cache_name + ".part")).write_bytes(b"garbage" * 1000)
    path = zoo.download("tiny", hosted, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.gets("/tiny.bin") == ["bytes=7000-", None]  # resumed, failed, restarted


def test_corrupted_cached_copy_is_replaced(hosted, server, cache):
    path = zoo.download("tiny", hosted, progress=False)
    path.write_bytes(b"x" * len(PAYLOAD))
    with pytest.warns(UserWarning, match="corrupted"):
        assert zoo.download("tiny", hosted, progress=False).read_bytes() == PAYLOAD
    assert len(server.gets("/tiny.bin")) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_source_failing_lists_each_source(server, tmp_path, cache):
    refused = f"http://127.0.0.1:{_closed_port()}/tiny.bin"
    missing = server.url("/missing.bin")
    index = write_index(tmp_path / "index.yaml", raw_entry(sources=[missing, refused]))
    with pytest.raises(errors.DownloadError, match="every source failed") as err:
        zoo.download("tiny", index, progress=False, retry_wait=0, timeout=5)
    message = str(err.value)
    assert f"{missing}: HTTPError: HTTP 404" in message
    assert refused in message and "ConnectionError" in message
    assert "\n" not in message  # one line, as solo-clamp prints it
    assert not isinstance(err.value, errors.HashMismatchError)
    assert leftovers(cache) == []


def test_later_source_is_used_when_the_first_fails(hosted, server, tmp_path, cache):
    index = write_index(
        tmp_path / "other.yaml",
        raw_entry(sources=[server.url("/missing.bin"), server.url("/tiny.bin")]),
    )
    assert zoo.download("tiny", index, progress=False).read_bytes() == PAYLOAD


def test_unknown_name_lists_the_available_names(hosted, tmp_path):
    index = write_index(
        tmp_path / "two.yaml",
        raw_entry(sources=["https://x.org/a"]),
        raw_entry(name="other", sources=["https://x.org/b"]),
    )
    with pytest.raises(errors.UnknownModelError, match="available: tiny, other"):
        zoo.download("nope", index)
    assert cli_main(["zoo", "--index", str(index), "info", "nope"]) == 2


def test_concurrent_downloads_share_one_transfer(hosted, server, cache):
    server.chunk_delay = 0.01
    results: list[Any] = []

    def worker() -> None:
        try:
            results.append(zoo.download("tiny", hosted, progress=False))
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            results.append(err)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 5 and all(isinstance(r, Path) for r in results), results
    assert len(set(results)) == 1 and results[0].read_bytes() == PAYLOAD
    assert server.gets("/tiny.bin") == [None]  # the lock holders after the first found it done
    assert leftovers(cache) == [results[0].name]


def test_shipped_file_resolves_locally_without_network(tmp_path, cache):
    root = tmp_path / "zoo"
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "tiny.safetensors").write_bytes(PAYLOAD)
    unreachable = f"http://127.0.0.1:{_closed_port()}/tiny.bin"
    index = write_index(
        root / "index.yaml", raw_entry(file="weights/tiny.safetensors", sources=[unreachable])
    )
    assert zoo.download("tiny", index) == root / "weights" / "tiny.safetensors"
    assert leftovers(cache) == []

    (root / "weights" / "tiny.safetensors").write_bytes(PAYLOAD[:-1] + b"?")
    with pytest.raises(errors.HashMismatchError, match="sha256"):
        zoo.download("tiny", index)


def test_hugging_face_source(tmp_path, cache, monkeypatch):
    hub_file = tmp_path / "hub" / "tiny.safetensors"
    hub_file.parent.mkdir()
    hub_file.write_bytes(PAYLOAD)
    calls = []

    def hf_hub_download(repo_id: str, filename: str, revision: Optional[str] = None) -> str:
        calls.append((repo_id, filename, revision))
        return str(hub_file)

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download)
    )
    index = write_index(
        tmp_path / "index.yaml",
        raw_entry(sources=[{"hf_repo": "org/models", "hf_filename": "tiny.safetensors"}]),
    )
    assert zoo.download("tiny", index).read_bytes() == PAYLOAD
    assert calls == [("org/models", "tiny.safetensors", None)]
    assert leftovers(cache) == [zoo.load_index(index).get("tiny").cache_name]


BAD_ENTRIES = [
    ({"sha256": "abc"}, "(tiny).sha256 must be a string matching ^[0-9a-f]{64}$, got 'abc'."),
    ({"format": "pickle"}, "format must be 'safetensors-fp16' or 'safetensors-fp32', got 'pick"),
    ({"colour": "red"}, "(tiny).colour is not a field; fields: ['name', 'method', 'backbone',"),
    ({"epochs": 0}, "epochs must be a positive integer, got 0."),
    ({"views": "four"}, "views must be a positive integer, got 'four'."),
    ({"epochs": True}, "epochs must be a positive integer, got True."),
    ({"name": "Bad Name"}, "models[0].name must be a model name: lowercase letters"),
    ({"sources": ["http://example.org/x"]}, "sources[0] must be an https:// URL"),
    ({"sources": [{"hf_repo": "a/b"}]}, "sources[0].hf_filename is required."),
    ({"sources": [3]}, "sources[0] must be a mapping, got 3."),
    ({"sources": []}, "(tiny): needs a shipped 'file' or at least one of 'sources'."),
    ({"file": "../outside.safetensors"}, "file must be a relative path inside the zoo"),
    ({"file": "/abs/x.safetensors"}, "must be a relative path"),
    ({"backbone": {"name": "vit_tiny", "cifar_stem": True}}, "backbone must name a resnet"),
    ({"backbone": {"name": "resnet18", "cifar_stem": "yes"}}, "cifar_stem must be true or false"),
    ({"backbone": {"kwargs": {}}}, "backbone.name is required."),
    ({"method": " "}, "method must be a non-empty string, got ' '."),
    ({"evaluation": {"knn": {"top1": 120, "command": "x"}}}, "knn.top1 must be <= 100, got 120."),
    (
        {"evaluation": {"svm": {"top1": 1, "command": "x"}}},
        "evaluation key 'svm' must be 'knn' or 'linear'.",
    ),
    ({"evaluation": {"knn": {"top1": 50}}}, "evaluation.knn.command is required."),
]


@pytest.mark.parametrize(("change", "message"), BAD_ENTRIES)
def test_manifest_validation_names_the_field(tmp_path, change, message):
    index = write_index(
        tmp_path / "index.yaml", raw_entry(**{"sources": ["https://x.org/a"], **change})
    )
    with pytest.raises(errors.ManifestError) as err:
        zoo.load_index(index)
    assert message in str(err.value)
    assert str(index) in str(err.value)


def test_manifest_level_errors(tmp_path):
    entry = raw_entry(sources=["https://x.org/a"])
    with pytest.raises(errors.ManifestError, match="duplicate model name 'tiny'"):
        zoo.load_index(write_index(tmp_path / "dup.yaml", entry, entry))
    (tmp_path / "v.yaml").write_text("version: 9\nmodels: []\n")
    with pytest.raises(errors.ManifestError, match="v.yaml: version must be 1, got 9"):
        zoo.load_index(tmp_path / "v.yaml")
    (tmp_path / "m.yaml").write_text("models: {tiny: 1}\n")
    with pytest.raises(errors.ManifestError, match="models must be a list"):
        zoo.load_index(tmp_path / "m.yaml")
    (tmp_path / "y.yaml").write_text("models: [\n")
    with pytest.raises(errors.ManifestError, match="not valid YAML"):
        zoo.load_index(tmp_path / "y.yaml")
    with pytest.raises(errors.ManifestError, match="no zoo manifest at"):
        zoo.load_index(tmp_path / "absent.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert zoo.load_index(tmp_path / "empty.yaml").entries == {}


def test_repository_manifest_is_valid(repo_root):
    zoo.load_index(repo_root / "zoo" / "index.yaml")


def test_manifest_round_trip(tmp_path):
    index = zoo.load_index(
        write_index(
            tmp_path / "index.yaml",
            raw_entry(
                sources=[
                    "https://x.org/a",
                    {"hf_repo": "o/r", "hf_filename": "f", "hf_revision": "v1"},
                ],
                file="tiny.safetensors",
            ),
        )
    )
    out = ZooIndex(tmp_path / "copy.yaml", index.entries)
    write_zoo_index(out)
    assert zoo.load_index(out.path).entries == index.entries


def test_checkpoints_load_without_arbitrary_pickles(tmp_path):
    from omegaconf import OmegaConf

    from solo_clamp.checkpoints import CheckpointError, backbone_state, load_checkpoint

    state = {"backbone.w": torch.ones(2), "projector.w": torch.zeros(1)}
    good = tmp_path / "good.ckpt"
    torch.save(
        {"state_dict": state, "hyper_parameters": OmegaConf.create({"a": [1, 2]}), "epoch": 3}, good
    )
    assert set(load_checkpoint(good)["state_dict"]) == set(state)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": state, "x": types.SimpleNamespace(a=1)}, evil)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(evil)
    backbone = backbone_state(state, torch.float16)
    assert list(backbone) == ["w"] and backbone["w"].dtype == torch.float16
    with pytest.raises(CheckpointError, match="not finite"):
        backbone_state({"backbone.w": torch.tensor([1e6])}, torch.float16)


def test_cli_download_and_verify(hosted, server, cache, capsys):
    assert cli_main(["zoo", "download", "tiny", "--index", str(hosted), "--no-progress"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.read_bytes() == PAYLOAD
    assert cli_main(["zoo", "--index", str(hosted), "verify", str(path)]) == 0
    assert "matches tiny" in capsys.readouterr().out
    assert cli_main(["zoo", "verify", str(path), "--sha256", "0" * 64]) == 2
    assert "expected 0000" in capsys.readouterr().err
    assert cli_main(["zoo", "--index", str(hosted), "list"]) == 0
    listing = capsys.readouterr().out
    assert "tiny" in listing and "91.50" in listing and "cached" in listing


def _absolute_paths(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [p for value in node.values() for p in _absolute_paths(value)]
    if isinstance(node, list):
        return [p for value in node for p in _absolute_paths(value)]
    return [node] if isinstance(node, str) and os.path.isabs(node) else []


def test_publish_records_the_yaml_learning_rates_and_no_local_paths(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "tiny-ep=1.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.ones(3), "projector.w": torch.ones(1)}}, ckpt)
    data = tmp_path / "datasets" / "mnist-500xall-s0"
    args = {  # solo-learn's args.json: the cfg after parse_cfg, lr scaled by 128 * 2 / 256
        "method": "clamp",
        "backbone": {"name": "resnet18", "kwargs": {}},
        "prepare_data": {"name": "mnist", "root": str(tmp_path / "datasets"), "seed": 0},
        "data": {
            "dataset": "custom",
            "train_path": str(data / "train"),
            "val_path": str(data / "val"),
        },
        "evaluate": {"knn": {"train_path": str(data / "train"), "k": 20}},
        "checkpoint": {"dir": "trained_models"},
        "optimizer": {"batch_size": 128, "lr": 0.3, "classifier_lr": 0.15},
        "devices": [0, 1],
        "num_nodes": 1,
        "max_epochs": 2,
    }
    (run / "args.json").write_text(json.dumps(args))
    entry = publish(ckpt, "tiny", tmp_path / "zoo" / "index.yaml", check=False)
    config = zoo.load_index(tmp_path / "zoo" / "index.yaml").get("tiny").config
    assert config["optimizer"] == {"batch_size": 128, "lr": 0.3, "classifier_lr": 0.15}
    assert entry.config == config and entry.dataset == "mnist"
    assert _absolute_paths(config) == []
    assert config["data"]["train_path"] is None and config["prepare_data"]["name"] == "mnist"
    assert config["checkpoint"]["dir"] == "trained_models"  # relative paths are portable


def test_publish_validates_the_entry_before_writing_anything(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": {"backbone.w": torch.ones(3)}}, run / "tiny-ep=0.ckpt")
    args = {"method": "clamp", "backbone": {"name": "resnet18"}, "data": {"dataset": "mnist"}}
    (run / "args.json").write_text(json.dumps(args))
    index = tmp_path / "zoo" / "index.yaml"
    no_command = {"knn": {"top1": 50.0, "command": None}}  # --knn-top1 without --knn-command
    with pytest.raises(
        errors.ManifestError, match=r"evaluation\.knn\.command must be a string, got None"
    ):
        publish(run, "tiny", index, evaluation=no_command, check=False)
    with pytest.raises(errors.ManifestError, match="hf_filename must be a string, got None"):
        publish(run, "tiny", index, sources=[{"hf_repo": "o/r", "hf_filename": None}], check=False)
    assert not index.parent.exists()  # neither the weights nor the manifest were written


def test_portable_config_undoes_solo_learns_scaling():
    args = {
        "optimizer": {"batch_size": 64, "lr": 0.25, "classifier_lr": 0.1},
        "data": {"val_path": None},
        "devices": 1,
    }
    assert portable_config(args)["optimizer"]["lr"] == 1.0
    assert portable_config(args)["optimizer"]["classifier_lr"] == 0.1  # unscaled without val
    assert args["optimizer"]["lr"] == 0.25  # the input is left alone
    many = {"optimizer": {"batch_size": 8, "lr": 0.075}, "devices": "4", "num_nodes": 2}
    assert portable_config(many)["optimizer"]["lr"] == 0.3
    noisy = {"optimizer": {"batch_size": 192, "lr": 0.1 * 192 / 256}}  # 0.07500000000000001
    assert portable_config(noisy)["optimizer"]["lr"] == 0.1


def test_shipped_manifest_records_the_yaml_learning_rate_and_no_local_paths(repo_root):
    entry = zoo.load_index(repo_root / "zoo" / "index.yaml").get("clamp-mnist-resnet18")
    recipe = yaml.safe_load((repo_root / "scripts/pretrain/mnist/clamp.yaml").read_text())
    assert entry.config["optimizer"]["lr"] == recipe["optimizer"]["lr"] == 1.0
    assert _absolute_paths(entry.config) == []
