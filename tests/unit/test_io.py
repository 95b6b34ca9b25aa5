"""Atomic writes: the new content replaces the old in one step; a failure keeps the old file."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from solo_clamp.io import atomic_path, atomic_torch_save, atomic_write_text, write_below_marker


class Failure(Exception):
    pass


class Unpicklable:
    def __reduce__(self):
        raise Failure


def test_atomic_path_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "new" / "folder" / "file.txt"  # missing folders are created
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
        assert not target.exists()  # nothing visible before the block succeeds
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_an_exception_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(Failure), atomic_path(target) as tmp:
        tmp.write_text("half writ")
        raise Failure
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_write_text_and_torch_save_replace_atomically(tmp_path):
    text, weights = tmp_path / "results.md", tmp_path / "backbone.pt"
    atomic_write_text(text, "± old\n")
    atomic_write_text(text, "± new\n")
    assert text.read_text(encoding="utf-8") == "± new\n"

    atomic_torch_save({"w": torch.ones(2)}, weights)
    with pytest.raises(Failure):  # torch.save fails midway through the file
        atomic_torch_save({"w": torch.zeros(2), "f": Unpicklable()}, weights)
    assert torch.equal(torch.load(weights, weights_only=True)["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backbone.pt", "results.md"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_permissions_are_those_of_a_plain_write(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    atomic_write_text(atomic, "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    atomic.chmod(0o640)  # replacing a file keeps its permissions
    atomic_write_text(atomic, "y")
    assert stat.S_IMODE(atomic.stat().st_mode) == 0o640


def test_write_below_marker_keeps_the_hand_written_text_and_replaces_the_rest(tmp_path):
    page, marker = tmp_path / "page.md", "<!-- tool -->"
    write_below_marker(page, marker, "first\n")  # a new page: the marker, then the output
    assert page.read_text() == f"{marker}\n\nfirst\n"
    page.write_text(f"# Notes\n\nhand-written\n{marker}\n\nfirst\n")
    write_below_marker(page, marker, "second\n")
    assert page.read_text() == f"# Notes\n\nhand-written\n{marker}\n\nsecond\n"


def test_write_below_marker_keeps_a_page_without_a_marker_whole(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Study\ntext")
    write_below_marker(page, "<!-- m -->", "out\n")
    assert page.read_text() == "# Study\ntext\n<!-- m -->\n\nout\n"
