"""Best-of-N (Cobbe et al., 2021; Lightman et al., 2023): sample N candidates, score each with
a verifier, answer with the top-scored one. Unscored candidates rank below scored ones; a tie
goes to the earliest candidate."""

from __future__ import annotations

from typing import ClassVar

from ponder.runtime.context import Context
from ponder.runtime.strategy import strategy
from ponder.search.sample import ScoredSample
from ponder.types import Candidate, Problem, Result
from ponder.verify.quality import best_index


@strategy
class BestOfN(ScoredSample):
    """The sample the verifier scores highest."""

    name: ClassVar[str] = "best_of_n"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        candidates, stopped = await self.draw_scored(problem, ctx)
        best: Candidate | None
        i = best_index([c.score for c in candidates])
        if i is not None:
            best = candidates[i]
        else:  # no verdict at all: fall back to the first candidate with an answer
            best = next((c for c in candidates if c.answer is not None), None)
        answer = best.answer if best is not None else None
        score = best.score if best is not None else None
        return ctx.result(problem, self, answer, candidates, stopped=stopped, score=score)
