"""CoT × program self-consistency: chains of thought and executed programs vote together, and
an answer that both kinds reached outranks one that only one kind did.

A small model's chains of thought often agree on a wrong answer, and its programs often fail
or compute the wrong thing; the two go wrong in different ways, so when a program the sandbox
ran and a chain of thought land on the same answer independently, that answer is right far
more often than the vote's (the agreement of two formats as the signal, as in MathPrompter,
Imani et al., 2023, and PAL's cross-checks; measured in benchmarks/RESULTS.md):

    programs ← m samples answering with a program (`partner`: PAL, or tool-integrated
               reasoning); the first greedy, the rest at `temperature`
    chains   ← chain-of-thought samples (the strategy's own `answer_with`) in waves, at most n;
               with `stop_early`, none more once a chain reaches a program's answer
    backed   ← answer classes reached by a program and by a chain
    if backed: answer ← the backed class with the most votes (chains and programs)
    else:      answer ← the majority over chains and programs (a tie: first seen)

With one program, stopping at the first backed chain cannot change the answer (it is the
program's), so `stop_early` saves tokens at no cost in accuracy. The programs are written
before the chains so that the rule knows their answers from the first chain on, which also
makes the run replayable exactly on stored runs (`ponder.consensus.CrossCheck`); in a bench
many problems are in flight, so the backend's slots stay full meanwhile. Every token of both
kinds is charged.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Literal

from pydantic import Field

from ponder.answers import cluster
from ponder.consensus import CrossCheck, Observation
from ponder.errors import UsageError
from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, Strategy, strategy, where
from ponder.search.adaptive import sample_until
from ponder.search.sample import draw_samples
from ponder.types import Candidate, Problem, Result

Partner = Literal["program", "tir"]


@strategy
class CrossVote(Strategy):
    """Chains of thought and executed programs vote; an answer both reached wins."""

    name: ClassVar[str] = "cross_vote"
    width: ClassVar[str | None] = "n"
    n: int = Field(
        default=8,
        ge=0,
        description="chain-of-thought samples (at most)",
        json_schema_extra=MULTIPLIES,
    )
    programs: int = Field(
        default=1,
        ge=0,
        description="program samples (the first greedy, the rest sampled)",
        json_schema_extra=MULTIPLIES,
    )
    partner: Partner = Field(
        default="program",
        description="how the program samples answer: program (PAL: the sandbox runs the "
        "finished program) or tir (Python called mid-reasoning)",
    )
    stop_early: bool = Field(
        default=True,
        description="stop sampling chains once one reaches a program's answer (exact with "
        "one program: the answer cannot change after)",
    )
    wave: int = Field(default=4, ge=1, description="chains launched at once")
    temperature: float = Field(default=0.7, ge=0.0, description="sampling temperature")

    def check_fits(self, problem: Problem) -> None:
        super().check_fits(problem)
        if problem.kind == "code":
            raise UsageError(
                f"cross_vote: a code problem{where(problem)} has no single answer for a "
                "program and a chain of thought to agree on; use vote or refine"
            )

    async def run(self, problem: Problem, ctx: Context) -> Result:
        coder = ctx.answering(self.partner)
        greedy = min(self.programs, 1)
        drawn = await asyncio.gather(
            draw_samples(problem, coder, greedy, 0.0),
            draw_samples(problem, coder, self.programs - greedy, self.temperature),
        )
        programs = [*drawn[0][0], *drawn[1][0]]
        short = any(stopped == "budget" for _, stopped in drawn)
        kind = problem.kind or "math"

        def classes(chains: list[Candidate]) -> list[int | None]:
            return cluster([c.answer for c in [*programs, *chains]], kind)

        def observe(chains: list[Candidate]) -> list[Observation]:
            ids = classes(chains)[len(programs) :]
            return [
                Observation(answer=cid, tokens=c.completion_tokens)
                for c, cid in zip(chains, ids, strict=True)
            ]

        rule = CrossCheck(programs=tuple(classes([])), stop_early=self.stop_early)
        chains: list[Candidate] = []
        charged: list[Candidate] = []
        reason = "no chains asked for"
        if self.n > 0:
            run = await sample_until(
                ctx,
                problem,
                rule,
                observe,
                n=self.n,
                wave=self.wave,
                fill=False,
                temperature=self.temperature,
            )
            chains, charged, reason = run.finished, run.candidates[len(run.finished) :], run.reason
            short = short or run.stopped == "budget"
        answer, votes, backed = cross_tally(programs, chains, problem.kind)
        ctx.report("tally", votes=votes, backed=backed, answer=answer)
        return ctx.result(
            problem,
            self,
            answer,
            [*programs, *chains, *charged],  # `programs` and `chains` in info say how many
            stopped="budget" if short else None,
            programs=len(programs),
            chains=len(chains),
            votes=votes,
            backed=backed,
            reason=reason,
        )


def cross_tally(
    programs: list[Candidate], chains: list[Candidate], kind: str | None
) -> tuple[str | None, dict[str, int], list[str]]:
    """(the answer `CrossCheck` leads with, the votes per answer class by its first spelling,
    the backed answers in first-seen order). Candidates without an answer do not vote."""
    everyone = [*programs, *chains]
    ids = cluster([c.answer for c in everyone], kind or "math")
    first: dict[int, str] = {}
    votes: dict[int, int] = {}
    for cid, cand in zip(ids, everyone, strict=True):
        if cid is not None and cand.answer is not None:
            first.setdefault(cid, cand.answer)
            votes[cid] = votes.get(cid, 0) + 1
    rule = CrossCheck(programs=tuple(ids[: len(programs)]))
    seen = [Observation(answer=cid, tokens=0) for cid in ids[len(programs) :]]
    lead = rule.decide(seen, len(seen)).leader
    backed = rule.backed(seen)
    return (
        None if lead is None else first[lead],
        {first[c]: v for c, v in votes.items()},
        [first[c] for c in votes if c in backed],
    )
