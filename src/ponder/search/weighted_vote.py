"""Weighted majority vote (Li et al., 2023; Uesato et al., 2022): sample N candidates, score
each with a verifier, and answer with the equivalence class whose scores sum highest.
Unscored candidates weigh 0; if nothing is scored it is a plain vote."""

from __future__ import annotations

from typing import ClassVar

from ponder.runtime.context import Context
from ponder.runtime.strategy import strategy
from ponder.search.sample import ScoredSample
from ponder.search.vote import tally
from ponder.types import Problem, Result


@strategy
class WeightedVote(ScoredSample):
    """The answer whose samples' verifier scores sum highest."""

    name: ClassVar[str] = "weighted_vote"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        candidates, stopped = await self.draw_scored(problem, ctx)
        weights = [c.score or 0.0 for c in candidates]
        if not any(weights):
            weights = [1.0] * len(candidates)
        answer, totals, tie = tally(candidates, weights, problem.kind)
        ctx.report("tally", weights=totals, answer=answer)
        return ctx.result(
            problem, self, answer, candidates, stopped=stopped, weights=totals, tie=tie
        )
