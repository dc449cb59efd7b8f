"""The public Python API: `solve` and its async twin `asolve`."""

from __future__ import annotations

import asyncio
from typing import Any

from ponder.runtime.budget import Budget
from ponder.runtime.engine import Engine
from ponder.runtime.strategy import STRATEGIES, make_strategy
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
    and `base_url` are None). `n` is the strategy's width (samples, beam width, MCTS
    iterations; ignored by strategies without one, such as `greedy`). Loads the model for
    this call; hold an `Engine` to answer many questions."""
    width = STRATEGIES.get(strategy).obj.width
    given_width = width is not None and options.get(width) is not None
    strat = make_strategy(strategy, n=n if width and not given_width else None, **options)
    engine = await asyncio.to_thread(Engine.open, model=model, base_url=base_url)
    async with engine:
        return await engine.solve(question, strat, seed=seed, budget=budget)


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
