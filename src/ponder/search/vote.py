"""Self-consistency (Wang et al., 2023): sample n reasoning paths, answer by majority vote over
their extracted answers. Samples without an answer do not vote. A tie goes to the answer that
appeared first, which is deterministic for a given seed; the tie is reported."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from ponder.search.base import Context
from ponder.search.sample import Sample
from ponder.types import Problem, Result


def plurality(answers: Sequence[str | None]) -> tuple[str | None, dict[str, int], bool]:
    """(winner, votes per answer, whether the top count was tied)."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None, {}, False
    top = max(votes.values())
    leaders = [a for a in votes if votes[a] == top]  # Counter keeps first-seen order
    return leaders[0], dict(votes), len(leaders) > 1


class Vote(Sample):
    name: ClassVar[str] = "vote"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        candidates, stopped = await self.draw(problem, ctx)
        answer, votes, tie = plurality([c.answer for c in candidates])
        return ctx.result(problem, self, answer, candidates, stopped=stopped, votes=votes, tie=tie)
