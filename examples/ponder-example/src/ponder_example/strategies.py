"""A strategy: majority vote among the shorter half of n samples."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from pydantic import Field

from ponder.runtime.context import Context
from ponder.runtime.strategy import Strategy, strategy
from ponder.search.vote import tally
from ponder.types import Problem, Result


@strategy
class ShortestVote(Strategy):
    """n samples, then a majority vote among the shorter half."""

    name: ClassVar[str] = "shortest_vote"
    width: ClassVar[str | None] = "n"
    n: int = Field(default=8, ge=1, description="samples")
    temperature: float = Field(default=0.7, ge=0.0, description="sampling temperature")
    keep: float = Field(default=0.5, gt=0.0, le=1.0, description="share of shortest kept")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        req = ctx.request(problem, n=self.n, temperature=self.temperature)
        n = ctx.affordable(req)
        if n == 0:
            return ctx.result(problem, self, None, [], stopped="budget")
        gen = await ctx.generate(replace(req, n=n))
        candidates = await ctx.candidates(problem, gen)
        kept = sorted(candidates, key=lambda c: c.completion_tokens)
        kept = kept[: max(1, round(self.keep * len(kept)))]
        answer, totals, tie = tally(kept, [1.0] * len(kept), problem.kind)
        return ctx.result(problem, self, answer, candidates, votes=totals, tie=tie)
