from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from ponder.lm.registry import DEFAULT_MODEL, Registry

# No test asserts on time (these machines are shared): hypothesis' per-example deadline is off.
settings.register_profile("ponder", deadline=None)
settings.load_profile("ponder")


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded default model, pulled (and verified) if it is not cached yet."""
    reg = Registry()
    return reg.pull(reg.spec(DEFAULT_MODEL))
