"""The solo-clamp console command: help, dispatch and user-facing errors (no solo needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import solo_clamp
from solo_clamp.cli import COMMANDS, main


def _run_python(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, cwd=cwd
    )


def test_help_lists_every_subcommand():
    out = _run_python("-m", "solo_clamp", "--help").stdout
    assert set(COMMANDS) >= {"pretrain", "linear", "knn", "prepare-data", "zoo", "geometry"}
    for name in COMMANDS:
        assert name in out


def test_python_dash_m_is_the_console_command():
    for argv in (["--help"], ["zoo", "--help"]):
        assert (
            _run_python("-m", "solo_clamp", *argv).stdout
            == _run_python("-m", "solo_clamp.cli", *argv).stdout
        )


def test_import_and_help_do_not_import_solo_learn():
    """``import solo_clamp`` (and the loss's torch) stay cheap: CLAMP registers on demand."""
    probe = (
        "import sys\n"
        "import solo_clamp\n"
        "after_import = sorted(m for m in ('solo', 'torch') if m in sys.modules)\n"
        "from solo_clamp.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(after_import, 'solo' in sys.modules)\n"
    )
    out = _run_python("-c", probe).stdout.splitlines()[-1]
    assert out == "[] False"


def test_loss_functions_load_on_first_access():
    import torch

    loss = solo_clamp.clamp_loss_func(torch.randn(8, 4), num_views=2, rs=7.0)
    assert torch.isfinite(loss) and "clamp_loss_and_stats" in solo_clamp.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        solo_clamp.nope  # noqa: B018


@pytest.mark.parametrize(
    "script, command",
    [
        ("scripts/pretrain/main_pretrain.py", "pretrain"),
        ("scripts/linear/main_linear.py", "linear"),
        ("scripts/linear/main_knn.py", "knn"),
        ("scripts/compare/compare.py", "compare"),
    ],
)
def test_scripts_are_the_cli_commands(repo_root, tmp_path, script, command):
    out = _run_python(str(repo_root / script), "--help", cwd=tmp_path).stdout
    assert out.startswith(f"usage: solo-clamp {command}")


@pytest.mark.parametrize(
    "argv, field, value",
    [
        (["pretrain"], "name", "clamp-mnist"),
        (
            ["pretrain", "--config-path", "cifar", "--config-name", "clamp_cifar100.yaml"],
            "data.dataset",
            "cifar100",
        ),
        (["knn", "pretrained_checkpoint=run"], "pretrained_checkpoint", "run"),
    ],
)
def test_relative_config_paths_are_the_shipped_folders(monkeypatch, tmp_path, argv, field, value):
    """``solo-clamp pretrain`` composes scripts/pretrain/mnist/clamp.yaml from any directory."""
    from omegaconf import OmegaConf

    from solo_clamp.cli import COMMANDS, build_parser

    monkeypatch.chdir(tmp_path)  # no config folder here: the shipped ones are used
    command = COMMANDS[argv[0]][0]
    cfg = command.compose(build_parser(argv[:1]).parse_args(argv))
    assert OmegaConf.select(cfg, field) == value


def test_version():
    out = _run_python("-m", "solo_clamp", "--version").stdout
    assert solo_clamp.__version__ in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 1
    assert "usage: solo-clamp" in capsys.readouterr().out


def test_prepare_data_bad_source_is_a_one_line_error(tmp_path, capsys):
    assert (
        main(["prepare-data", "mnist", "--source", str(tmp_path), "--root", str(tmp_path / "out")])
        == 2
    )
    err = capsys.readouterr().err
    assert "solo-clamp prepare-data: error:" in err and "idx files" in err


def test_prepare_data_writes_the_tree(mnist_source, tmp_path, capsys):
    assert (
        main(
            [
                "prepare-data",
                "mnist",
                "--source",
                str(mnist_source),
                "--root",
                str(tmp_path),
                "--train-per-class",
                "1",
                "--val-per-class",
                "1",
            ]
        )
        == 0
    )
    assert "(10 images)" in capsys.readouterr().out


def test_pretrain_without_solo_learn_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(solo_clamp, "solo_available", lambda: False)
    assert main(["pretrain"]) == 2
    err = capsys.readouterr().err
    assert "solo-learn is not installed" in err and "not on PyPI" in err


def test_register_without_solo_learn_raises_a_named_error(monkeypatch):
    monkeypatch.setattr(solo_clamp, "solo_available", lambda: False)
    with pytest.raises(ModuleNotFoundError, match="solo-learn is not installed"):
        solo_clamp.register()


@pytest.mark.parametrize("command", ["pretrain", "linear", "knn"])
def test_unknown_config_is_a_clear_error(command, capsys):
    if not solo_clamp.solo_available():
        pytest.skip("solo-learn is not installed: the config lookup runs after the solo check")
    assert main([command, "--config-name", "nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "--config-name 'nope.yaml' not found" in err and "available:" in err


RAISE_IN_PREPARE_DATA = (
    "import sys\n"
    "import solo_clamp.commands.prepare_data as command\n"
    "from solo_clamp.errors import DataError\n"
    "def prepare(*args, **kwargs):\n"
    "    raise {error}\n"
    "command.prepare_image_folder = prepare\n"
    "from solo_clamp.cli import main\n"
    "sys.exit(main(['prepare-data', 'mnist']))\n"
)


def test_a_user_mistake_is_one_line_and_a_bug_keeps_its_traceback():
    """A SoloClampError (here a DataError) is the user's to fix: one line, exit status 2. Any
    other exception, a ValueError included, is a bug: Python prints its traceback."""

    def run(error: str) -> subprocess.CompletedProcess:
        code = RAISE_IN_PREPARE_DATA.format(error=error)
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    mistake = run("DataError('the idx files are corrupted')")
    assert mistake.returncode == 2
    assert mistake.stderr == "solo-clamp prepare-data: error: the idx files are corrupted\n"

    for error, last_line in [
        ("ValueError('an index off by one')", "ValueError: an index off by one"),
        ("KeyError('num_classes')", "KeyError: 'num_classes'"),
    ]:
        bug = run(error)
        assert bug.returncode == 1
        assert bug.stderr.startswith("Traceback (most recent call last):")
        assert "in prepare" in bug.stderr and bug.stderr.splitlines()[-1] == last_line
        assert "solo-clamp prepare-data: error:" not in bug.stderr


def test_every_user_facing_error_is_a_solo_clamp_error():
    """The errors the CLI prints as one line, and the builtins they still are for callers that
    catch those."""
    from solo_clamp import errors
    from solo_clamp.checkpoints import CheckpointError, CheckpointNotFoundError
    from solo_clamp.commands import CommandError
    from solo_clamp.configs.compose import ConfigError
    from solo_clamp.internals import UntestedVersionError
    from solo_clamp.training.faults import CheckpointWriteError

    assert ConfigError is errors.ConfigError and CheckpointError is errors.CheckpointError
    for error, builtin in [
        (errors.ConfigError, ValueError),
        (errors.CheckpointError, ValueError),
        (CheckpointNotFoundError, FileNotFoundError),
        (errors.DataError, ValueError),
        (errors.DivergedError, FloatingPointError),
        (CheckpointWriteError, ValueError),
        (UntestedVersionError, RuntimeError),
        (CommandError, Exception),
    ]:
        assert issubclass(error, errors.SoloClampError) and issubclass(error, builtin)
