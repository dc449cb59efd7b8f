"""Greedy decoding: one answer at temperature 0. The baseline every other strategy must beat."""

from __future__ import annotations

from typing import ClassVar

from ponder.runtime.context import Context
from ponder.runtime.strategy import Strategy, strategy
from ponder.types import Problem, Result


@strategy
class Greedy(Strategy):
    """One answer at temperature 0: the baseline every other strategy must beat."""

    name: ClassVar[str] = "greedy"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        req = ctx.request(problem, n=1, temperature=0.0)
        if ctx.affordable(req) < 1:
            return ctx.result(problem, self, None, [], stopped="budget")
        candidates = await ctx.candidates(problem, await ctx.generate(req))
        return ctx.result(problem, self, candidates[0].answer, candidates)
