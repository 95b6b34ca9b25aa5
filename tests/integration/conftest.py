"""The integration tier: every test below this folder needs the real solo-learn.

All of them are marked ``integration`` here and, when solo-learn is not installed, skipped
with one reason. Test modules therefore import ``solo`` (and the solo_clamp modules that
import it) inside their tests and fixtures, so that they still collect without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent
SOLO_MISSING_REASON = "solo-learn is not installed: integration tier skipped"


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest's collection hook sees the items of the whole session, not only its folder.
    skip = None
    if importlib.util.find_spec("solo") is None:
        skip = pytest.mark.skip(reason=SOLO_MISSING_REASON)
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def clamp_method() -> type:
    """The CLAMP class, registered as ``solo.methods.METHODS["clamp"]``."""
    import solo_clamp

    return solo_clamp.register()
