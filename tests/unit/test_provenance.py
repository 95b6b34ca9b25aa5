"""``solo_clamp.provenance.code_state``: the code a process loaded, read once."""

import pytest

from solo_clamp import provenance


@pytest.fixture
def fake_git(monkeypatch):
    """``_git`` answering from a dict (``rev-parse`` / ``status``), with the cache cleared
    before and after so that no other test sees the fake."""
    answers = {"rev-parse": "a" * 40, "status": ""}
    monkeypatch.setattr(provenance, "_git", lambda command, *args: answers[command])
    provenance._code_state_at_first_call.cache_clear()
    yield answers
    provenance._code_state_at_first_call.cache_clear()


def test_code_state_keeps_the_first_call_s_answer_when_the_checkout_moves(fake_git):
    first = provenance.code_state()
    fake_git.update({"rev-parse": "b" * 40, "status": " M solo_clamp/provenance.py"})
    assert provenance.code_state() == first == {"commit": "a" * 40, "dirty": False}
    provenance._code_state_at_first_call.cache_clear()  # a new process
    assert provenance.code_state() == {"commit": "b" * 40, "dirty": True}


def test_code_state_outside_a_checkout(fake_git):
    fake_git["rev-parse"] = ""
    assert provenance.code_state() == {"commit": "unknown", "dirty": None}


def test_code_state_returns_a_copy(fake_git):
    provenance.code_state()["commit"] = "changed"
    assert provenance.code_state()["commit"] == "a" * 40
