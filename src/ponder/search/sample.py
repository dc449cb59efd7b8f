"""Repeated sampling: n independent samples, all kept; the answer is the first sample's.

Its candidates are the pool that pass@k and maj@k are estimated from.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ponder.search.base import Context, Strategy, candidates_of
from ponder.types import Candidate, Problem, Result


class Sample(Strategy):
    name: ClassVar[str] = "sample"
    n: int = Field(default=8, ge=1)
    temperature: float = Field(default=0.7, ge=0.0)

    async def draw(self, problem: Problem, ctx: Context) -> tuple[list[Candidate], str | None]:
        """Up to n samples in one request (siblings share the prompt's prefill); fewer if the
        budget only affords fewer, with the reason."""
        req = ctx.request(problem, n=self.n, temperature=self.temperature)
        n = ctx.affordable(req)
        if n == 0:
            return [], "budget"
        gen = await ctx.generate(req.model_copy(update={"n": n}))
        return candidates_of(gen), ("budget" if n < self.n else None)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        candidates, stopped = await self.draw(problem, ctx)
        answer = candidates[0].answer if candidates else None
        return ctx.result(problem, self, answer, candidates, stopped=stopped)
