"""Greedy decoding: one answer at temperature 0. The baseline every other strategy must beat."""

from __future__ import annotations

from typing import ClassVar

from ponder.search.base import Context, Strategy
from ponder.types import Problem, Result


class Greedy(Strategy):
    name: ClassVar[str] = "greedy"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        req = ctx.request(problem, n=1, temperature=0.0)
        if ctx.affordable(req) < 1:
            return ctx.result(problem, self, None, [], stopped="budget")
        candidates = await ctx.candidates(problem, await ctx.generate(req))
        return ctx.result(problem, self, candidates[0].answer, candidates)
