"""The public Python API (ponder.solve / asolve): its arguments checked as the CLI's are."""

from __future__ import annotations

import pytest

import ponder
from ponder.errors import UsageError


async def test_the_python_api_says_what_is_wrong_with_its_arguments() -> None:
    """Wrong types are a UsageError naming the argument, before any
    model loads (they were an AttributeError from deep inside, or, for a seed, a
    ValidationError after the whole solve had run); solve inside a running loop points at
    asolve."""
    for kwargs, says in (
        ({"question": None}, "question: a str, not NoneType"),
        ({"question": "q", "strategy": ["vote"]}, r"strategy: a name \(str\), not list"),
        ({"question": "q", "seed": -1}, r"seed: an int in \[0, 2\*\*63\), not -1"),
        ({"question": "q", "seed": 1.5}, r"seed: an int in \[0, 2\*\*63\), not 1.5"),
    ):
        with pytest.raises(UsageError, match=says):
            await ponder.asolve(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"inside one, await ponder\.asolve"):
        ponder.solve("q")
