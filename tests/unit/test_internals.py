"""The one door to framework internals: its version check, both ways, and the private
attributes it reads still meaning what its public twins say on the installed Lightning."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from solo_clamp import internals


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    monkeypatch.setattr(internals, "_checked", set())
    monkeypatch.delenv(internals.ALLOW_ENV, raising=False)


def installed(monkeypatch, versions: dict[str, str]) -> None:
    monkeypatch.setattr(internals, "installed_version", lambda name: versions[name])


def test_the_tested_versions_pass(monkeypatch):
    installed(monkeypatch, {"lightning": "2.1.2", "solo-learn": "1.0.6 (commit 9187ea3)"})
    internals.require_tested_version("lightning")
    internals.require_tested_version("solo-learn")
    installed(monkeypatch, {"solo-learn": "1.0.6"})  # an editable install records no commit
    monkeypatch.setattr(internals, "_checked", set())
    internals.require_tested_version("solo-learn")


@pytest.mark.parametrize(
    "name, version, tested",
    [
        ("lightning", "2.2.0", "2.1.2"),
        ("lightning", "not installed", "2.1.2"),
        ("solo-learn", "1.0.6 (commit abcdef0)", "1.0.6 (commit 9187ea3)"),
        ("solo-learn", "1.0.7", "1.0.6 (commit 9187ea3)"),
    ],
)
def test_another_version_stops_with_both_versions_named(monkeypatch, name, version, tested):
    installed(monkeypatch, {name: version})
    with pytest.raises(internals.UntestedVersionError) as caught:
        internals.require_tested_version(name)
    message = str(caught.value)
    assert f"tested with {name} {tested}, but {version} is installed" in message
    assert internals.ALLOW_ENV in message


def test_the_override_warns_and_goes_on(monkeypatch):
    installed(monkeypatch, {"lightning": "2.2.0"})
    monkeypatch.setenv(internals.ALLOW_ENV, "1")
    with pytest.warns(RuntimeWarning, match="but 2.2.0 is installed"):
        internals.require_tested_version("lightning")


def test_every_accessor_checks_before_it_touches_anything(monkeypatch):
    installed(monkeypatch, {"lightning": "3.0.0"})
    trainer = SimpleNamespace(_signal_connector=SimpleNamespace(received_sigterm=False))
    with pytest.raises(internals.UntestedVersionError):
        internals.set_stop_after_step(trainer, True)
    assert trainer._signal_connector.received_sigterm is False


def test_installed_version_reads_pips_record_of_the_commit(monkeypatch):
    record = {"url": "https://github.com/vturrisi/solo-learn", "vcs_info": {"commit_id": "9" * 40}}
    dist = SimpleNamespace(version="1.0.6", read_text=lambda name: json.dumps(record))
    monkeypatch.setattr(internals.metadata, "distribution", lambda name: dist)
    assert internals.installed_version("solo-learn") == "1.0.6 (commit 9999999)"
    dist.read_text = lambda name: None  # a plain or editable install: no direct_url.json
    assert internals.installed_version("solo-learn") == "1.0.6"


@pytest.mark.skipif(
    internals.installed_version("lightning") != internals.TESTED_VERSIONS["lightning"],
    reason="the installed Lightning is not the tested one",
)
def test_the_private_state_matches_lightnings_public_view():
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert not trainer.received_sigterm
    internals.set_stop_after_step(trainer, True)
    assert trainer.received_sigterm
    internals.set_stop_after_step(trainer, False)
    assert not trainer.received_sigterm
    assert internals.epochs_started(trainer) == trainer.current_epoch == 0
    assert internals.batches_completed(trainer) == 0
    assert not internals.epoch_in_progress(trainer)
    assert not internals.resuming_mid_epoch(trainer)


def test_solo_optimizers_reads_the_models_table_after_the_version_check(monkeypatch):
    """Fine-tuning builds its own parameter groups with the optimizer solo-learn would pick:
    the class by ``optimizer.name`` from the model's ``_OPTIMIZERS`` table, read here only."""
    table = {"sgd": object, "adamw": type}
    model = SimpleNamespace(_OPTIMIZERS=table)
    installed(monkeypatch, {"solo-learn": "1.0.6"})
    optimizers = internals.solo_optimizers(model)
    assert optimizers == table and optimizers is not table  # a copy: the table stays solo's
    monkeypatch.setattr(internals, "_checked", set())
    installed(monkeypatch, {"solo-learn": "1.0.7"})
    with pytest.raises(internals.UntestedVersionError):
        internals.solo_optimizers(model)
