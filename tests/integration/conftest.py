"""The integration tier: every test below this folder needs the real solo-learn.

All of them are marked ``integration`` here. When solo-learn is not installed, each test
module of this folder is skipped with one reason before it is imported, so test modules may
import ``solo`` (and the solo_clamp modules that import it) at their top.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent
SOLO_MISSING_REASON = "solo-learn is not installed: integration tier skipped"
SOLO_MISSING = importlib.util.find_spec("solo") is None


class _SkippedModule(pytest.Module):
    """A test module of this folder, reported as skipped instead of imported."""

    def collect(self):
        pytest.skip(SOLO_MISSING_REASON, allow_module_level=True)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent) -> Optional[pytest.Module]:
    if SOLO_MISSING and INTEGRATION_DIR in module_path.parents:
        return _SkippedModule.from_parent(parent, path=module_path)
    return None


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest's collection hook sees the items of the whole session, not only its folder.
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def clamp_method() -> type:
    """The CLAMP class, registered as ``solo.methods.METHODS["clamp"]``."""
    import solo_clamp

    return solo_clamp.register()
