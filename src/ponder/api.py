"""The public Python API: `solve` and its async twin `asolve`."""

from __future__ import annotations

import asyncio
from typing import Any

from ponder.errors import UsageError
from ponder.runtime.budget import Budget
from ponder.runtime.engine import Engine
from ponder.runtime.strategy import STRATEGIES, make_strategy
from ponder.types import SEED_LIMIT, Result


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
    check_arguments(question, strategy, seed)
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
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop running here: solve runs its own
    else:
        raise UsageError("ponder.solve runs its own event loop; inside one, await ponder.asolve")
    return asyncio.run(asolve(question, strategy, n, model, base_url, seed, budget, **options))


def check_arguments(question: object, strategy: object, seed: object) -> None:
    """The arguments' types, said as a usage error before any model loads (not an
    AttributeError from deep inside, or a seed refused after the solve has run)."""
    if not isinstance(question, str):
        raise UsageError(f"question: a str, not {type(question).__name__}")
    if not isinstance(strategy, str):
        raise UsageError(f"strategy: a name (str), not {type(strategy).__name__}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT
    ):
        raise UsageError(f"seed: an int in [0, 2**63), not {seed!r}")
