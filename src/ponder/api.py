"""The public Python API: `solve` and its async twin `asolve`."""

from __future__ import annotations

import asyncio
from typing import Any

from ponder.budget import Budget
from ponder.engine import Engine
from ponder.search import STRATEGIES
from ponder.types import Result


async def asolve(
    question: str,
    strategy: str = "vote",
    n: int = 8,
    model: str | None = None,
    base_url: str | None = None,
    seed: int | None = None,
    budget: Budget | dict[str, Any] | None = None,
    **options: Any,
) -> Result:
    """Answer `question` with `strategy` on `model` (the embedded default when both `model`
    and `base_url` are None). `n` applies to strategies that sample (ignored by `greedy`).
    Loads the model for this call; hold an `Engine` to answer many questions."""
    if strategy in STRATEGIES and "n" in STRATEGIES[strategy].model_fields:
        options["n"] = n  # the API's default n, for strategies that sample
    engine = await asyncio.to_thread(Engine.open, model, base_url=base_url)
    async with engine:
        return await engine.solve(question, strategy, seed=seed, budget=budget, **options)


def solve(
    question: str,
    strategy: str = "vote",
    n: int = 8,
    model: str | None = None,
    base_url: str | None = None,
    seed: int | None = None,
    budget: Budget | dict[str, Any] | None = None,
    **options: Any,
) -> Result:
    """Synchronous twin of `asolve`."""
    return asyncio.run(asolve(question, strategy, n, model, base_url, seed, budget, **options))
