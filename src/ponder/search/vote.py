"""Self-consistency (Wang et al., 2023): sample n reasoning paths, answer by majority vote over
their extracted answers, equivalent answers voting together (0.5 and \\frac{1}{2} are one
answer). Samples without an answer do not vote. A tie goes to the answer that appeared first,
which is deterministic for a given seed; the tie is reported."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ponder.answers import cluster
from ponder.runtime.context import Context
from ponder.runtime.strategy import strategy
from ponder.search.sample import Sample
from ponder.types import Candidate, Problem, Result


def tally(
    candidates: Sequence[Candidate], weights: Sequence[float], kind: str | None
) -> tuple[str | None, dict[str, float], bool]:
    """(winning answer, total weight per answer class keyed by its first spelling, tie?)."""
    answers = [c.answer for c in candidates]
    ids = cluster(answers, kind or "math")
    totals: dict[int, float] = {}
    first: dict[int, str] = {}
    for cid, answer, w in zip(ids, answers, weights, strict=True):
        if cid is None or answer is None:
            continue
        totals[cid] = totals.get(cid, 0.0) + w
        first.setdefault(cid, answer)
    if not totals:
        return None, {}, False
    top = max(totals.values())
    leaders = [cid for cid in totals if totals[cid] == top]  # dicts keep first-seen order
    return first[leaders[0]], {first[c]: t for c, t in totals.items()}, len(leaders) > 1


def plurality(answers: Sequence[str | None]) -> tuple[str | None, dict[str, int], bool]:
    """Plain plurality over exact answer strings (kept for callers without candidates)."""
    cands = [Candidate(text="", answer=a) for a in answers]
    winner, totals, tie = tally(cands, [1.0] * len(cands), None)
    return winner, {a: int(t) for a, t in totals.items()}, tie


@strategy
class Vote(Sample):
    """Self-consistency: the majority over the samples' extracted answers."""

    name: ClassVar[str] = "vote"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        candidates, stopped = await self.draw(problem, ctx)
        answer, totals, tie = tally(candidates, [1.0] * len(candidates), problem.kind)
        votes = {a: int(t) for a, t in totals.items()}
        ctx.report("tally", votes=votes, answer=answer)
        return ctx.result(problem, self, answer, candidates, stopped=stopped, votes=votes, tie=tie)
