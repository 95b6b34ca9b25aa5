"""Where CLAMP joins ``solo.methods.METHODS``: ``import solo_clamp.methods``, ``register()`` and
the commands that run solo-learn (``import solo_clamp`` alone does not import solo-learn)."""

from __future__ import annotations

import subprocess
import sys

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
