"""Where the methods join ``solo.methods.METHODS``: ``import solo_clamp.methods``, ``register()``
and the commands that run solo-learn (``import solo_clamp`` alone does not import solo-learn);
the one path they take, :func:`~solo_clamp.methods.registry.register_method`, and the facts it
checks; and each method's training step against the keys its facts say it logs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from clamp_testing import small_method_kwargs
from solo.methods import METHODS, SimCLR
from solo.methods.base import BaseMethod

from solo_clamp.methods import (
    CLAMP,
    facts_of,
    known,
    register_method,
    unregister_method,
)
from solo_clamp.methods.clamp import ClampKwargs

PROBE = "from solo.methods import METHODS; print('clamp:', METHODS.get('clamp').__name__)"


def _python(*args: str, cwd=None) -> str:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_importing_solo_clamp_methods_registers_clamp():
    assert "clamp: CLAMP" in _python("-c", f"import solo_clamp.methods\n{PROBE}")


def test_run_solo_registers_clamp_before_the_program_runs(tmp_path):
    program = tmp_path / "program.py"
    program.write_text(f"import sys\n{PROBE}\nprint('argv:', sys.argv[1:])\n")
    out = _python("-m", "solo_clamp", "run-solo", str(program), "--flag", "x", cwd=tmp_path)
    assert "clamp: CLAMP" in out and "argv: ['--flag', 'x']" in out


def test_every_method_is_in_both_tables_under_its_facts_name():
    assert len(known()) == 5
    for name in known():
        assert facts_of(name).name == name
        own = getattr(METHODS[name], "facts", None)
        assert own is None or own is facts_of(name)  # solo-learn's classes carry none


def test_register_method_refuses_what_it_cannot_register():
    with pytest.raises(TypeError, match="BaseMethod subclass"):
        register_method(dict)
    with pytest.raises(TypeError, match="has no MethodFacts"):
        register_method(type("NoFacts", (BaseMethod,), {}))
    with pytest.raises(ValueError, match=r"method 'clamp' is already .*CLAMP"):
        register_method(type("Impostor", (BaseMethod,), {"facts": CLAMP.facts}))
    other = dataclasses.replace(CLAMP.facts, name="clamp-copy")
    with pytest.raises(ValueError, match="differs from the facts"):
        register_method(CLAMP, other)
    assert "clamp-copy" not in METHODS and "clamp-copy" not in known()


def test_facts_of_a_class_replaced_behind_the_registry():
    spare = type("Spare", (SimCLR,), {})
    register_method(spare, dataclasses.replace(facts_of("simclr"), name="spare"))
    try:
        assert facts_of("spare").name == "spare" and "spare" in known()
        METHODS["spare"] = SimCLR  # written into solo-learn's table, not through the registry
        with pytest.raises(ValueError, match=r"METHODS\['spare'\] is SimCLR, not Spare"):
            facts_of("spare")
        assert "spare" not in known()
    finally:
        METHODS["spare"] = spare
        unregister_method("spare")
    assert "spare" not in METHODS
    with pytest.raises(ValueError, match="is not a solo-learn method"):
        facts_of("spare")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": ""}, "needs a name and a loss_key"),
        ({"curve_stats": ("radius",)}, r"curve_stats \['radius'\] are not in stat_keys"),
        ({"shape_fields": ("rz",)}, r"shape_fields \['rz'\] are not fields of ClampKwargs"),
        (
            {"projector_width_fields": ("block_dim",)},
            r"projector_width_fields \['block_dim'\] are not fields of ClampKwargs",
        ),
    ],
)
def test_facts_that_contradict_themselves_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(CLAMP.facts, **change)
    assert CLAMP.facts.kwargs_schema is ClampKwargs


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("method", known())
def test_the_training_step_logs_the_keys_its_facts_name(method, clamp_cfg_factory):
    """For solo-clamp's methods the step logs through its facts; for solo-learn's, whose step
    spells its keys itself, this is what keeps the facts true."""
    facts = facts_of(method)
    cfg = clamp_cfg_factory(num_views=2, batch_size=4)
    cfg.method, cfg.method_kwargs = method, small_method_kwargs(facts.kwargs_schema)
    cfg.momentum = {}  # solo-learn's momentum methods (BYOL) fill in their defaults
    torch.manual_seed(0)
    model = METHODS[method](METHODS[method].add_and_assert_specific_cfg(cfg))
    logged = {}
    model.log = lambda key, value, **_: logged.__setitem__(key, value)
    model.log_dict = lambda values, **_: logged.update(values)
    crops = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    model.training_step([torch.arange(4), crops, torch.arange(4) % 3], 0)
    assert facts.loss_key in logged
    assert set(facts.stat_keys.values()) <= set(logged)
    assert torch.isfinite(torch.as_tensor(logged[facts.loss_key]))
