from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from ponder.lm.registry import DEFAULT_MODEL, Registry

# No test asserts on time (these machines are shared): hypothesis' per-example deadline is off.
settings.register_profile("ponder", deadline=None)
settings.load_profile("ponder")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "PONDER_DATA_DIR" not in os.environ and (DATA / "gsm8k").is_dir():
    os.environ["PONDER_DATA_DIR"] = str(DATA)


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded default model, pulled (and verified) if it is not cached yet."""
    reg = Registry()
    return reg.pull(reg.spec(DEFAULT_MODEL))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from ponder.tasks.data import data_dir as find

    return find()
