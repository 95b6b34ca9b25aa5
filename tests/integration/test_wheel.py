"""The wheel: built from a copy of the repository, installed into a fresh virtual environment
and used from an empty directory, where only the package's own resources can be found."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# What the build reads (the copy keeps the links solo_clamp/configs/* -> scripts/*).
SOURCES = ("setup.py", "pyproject.toml", "README.md", "solo_clamp", "scripts", "zoo")
# Run in the venv: resolve the main job's config the way `solo-clamp pretrain` does.
PROBE = """
import json
import solo_clamp
from solo_clamp.cli import COMMANDS, build_parser
from solo_clamp.zoo.manifest import default_index_path

cfg = COMMANDS["pretrain"][0].compose(build_parser(["pretrain"]).parse_args(["pretrain"]))
print(json.dumps({"package": solo_clamp.__file__, "name": cfg.name, "method": cfg.method,
                  "index": str(default_index_path())}))
"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SOLO_CLAMP_ZOO_INDEX")}
    env["PIP_NO_INDEX"] = "1"  # everything is local: never reach for a registry
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def running_site_packages() -> list[str]:
    """The site-packages folders of the interpreter running the tests (a venv's own, plus its
    base's when it was made with ``--system-site-packages``, plus the user's)."""
    paths = sysconfig.get_paths()
    folders = [*site.getsitepackages(), paths["purelib"], paths["platlib"]]
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return list(dict.fromkeys(f for f in folders if Path(f).is_dir()))


def see_site_packages(python: Path, folders: list[str]) -> None:
    """Makes the venv of ``python`` see ``folders`` after its own site-packages, their ``.pth``
    files (editable installs) included, with a ``.pth`` file of its own."""
    own = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({folder!r})" for folder in folders]
    (Path(own) / "_tests_interpreter.pth").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def installed(tmp_path_factory, repo_root) -> dict[str, Path]:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: the wheel cannot be built without isolation")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        path = repo_root / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    dist, venv, empty = root / "dist", root / "venv", root / "empty"
    empty.mkdir()
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        str(source),
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(dist),
        cwd=empty,
    )
    wheel = next(dist.glob("solo_clamp-*.whl"))
    # The venv uses the packages of the interpreter running the tests (torch, hydra, pip),
    # whether that is a base interpreter or itself a venv (``--system-site-packages`` would
    # reach the base interpreter's only); a pip of its own would bring an older bundled
    # setuptools that shadows them (and take seconds to install).
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=empty)
    bin_dir = venv / "bin"
    python = bin_dir / "python"
    see_site_packages(python, running_site_packages())
    _run(str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel), cwd=empty)
    return {"wheel": wheel, "venv": venv, "python": python, "bin": bin_dir, "empty": empty}


def test_wheel_ships_the_configs_and_the_zoo_manifest_but_no_weights(installed, repo_root):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    shipped = {n for n in names if n.endswith(".yaml")}
    expected = {
        "solo_clamp/configs/" + p.relative_to(repo_root / "scripts").as_posix()
        for p in (repo_root / "scripts").rglob("*.yaml")
    } | {"solo_clamp/zoo/index.yaml"}
    assert shipped == expected
    assert "solo_clamp/configs/pretrain/mnist/clamp.yaml" in shipped
    assert not [n for n in names if n.endswith((".safetensors", ".ckpt", ".pt"))]
    modules = {
        "solo_clamp/configs/" + p.name for p in (repo_root / "solo_clamp/configs").glob("*.py")
    }
    assert {n for n in names if n.startswith("solo_clamp/configs/") and n.endswith(".py")} == (
        modules  # the package's own, none of the scripts of scripts/
    )


def test_installed_wheel_resolves_the_main_config_from_an_empty_directory(installed):
    out = _run(str(installed["python"]), "-I", "-c", PROBE, cwd=installed["empty"]).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert Path(probe["package"]).resolve().is_relative_to(installed["venv"].resolve())
    assert (probe["name"], probe["method"]) == ("clamp-mnist", "clamp")
    assert Path(probe["index"]).resolve().is_relative_to(installed["venv"].resolve())


def test_installed_console_script_lists_the_zoo(installed):
    out = _run(str(installed["bin"] / "solo-clamp"), "zoo", "list", cwd=installed["empty"]).stdout
    assert "clamp-mnist-resnet18" in out
    assert "remote" in out  # the manifest is shipped, its weights file is not
