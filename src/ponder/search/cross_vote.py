"""CoT × program self-consistency: chains of thought and executed programs vote together, and
an answer that both kinds reached outranks one that only one kind did.

A small model's chains of thought often agree on a wrong answer, and its programs often fail
or compute the wrong thing; the two go wrong in different ways, so when a program the sandbox
ran and a chain of thought land on the same answer independently, that answer is right far
more often than the vote's (the agreement of two formats as the signal, as in MathPrompter,
Imani et al., 2023, and PAL's cross-checks; measured in benchmarks/RESULTS.md):

    programs ← m samples answering with a program (`partner`: PAL, or tool-integrated
               reasoning); the first greedy, the rest at `temperature`
    chains   ← n chain-of-thought samples (the strategy's own `answer_with`)
    backed   ← answer classes reached by a program and by a chain
    if backed: answer ← the backed class with the most votes (chains and programs)
    else:      answer ← the majority over chains and programs (a tie: first seen)

Both kinds are drawn at once, so they share the backend's slots; every token of both is
charged.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import ClassVar, Literal

from pydantic import Field

from ponder.answers import cluster
from ponder.runtime.context import Context
from ponder.runtime.strategy import Strategy, strategy
from ponder.types import Candidate, Problem, Result

Partner = Literal["program", "tir"]


@strategy
class CrossVote(Strategy):
    """Chains of thought and executed programs vote; an answer both reached wins."""

    name: ClassVar[str] = "cross_vote"
    width: ClassVar[str | None] = "n"
    n: int = Field(default=8, ge=0, description="chain-of-thought samples")
    programs: int = Field(
        default=1, ge=0, description="program samples (the first greedy, the rest sampled)"
    )
    partner: Partner = Field(
        default="program",
        description="how the program samples answer: program (PAL: the sandbox runs the "
        "finished program) or tir (Python called mid-reasoning)",
    )
    temperature: float = Field(default=0.7, ge=0.0, description="sampling temperature")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        coder = ctx.answering(self.partner)
        greedy = min(self.programs, 1)
        drawn = await asyncio.gather(
            self.draw(problem, coder, greedy, 0.0),
            self.draw(problem, coder, self.programs - greedy, self.temperature),
            self.draw(problem, ctx, self.n, self.temperature),
        )
        programs, chains = [*drawn[0][0], *drawn[1][0]], drawn[2][0]
        short = any(stopped for _, stopped in drawn)
        answer, votes, backed = cross_tally(programs, chains, problem.kind)
        ctx.report("tally", votes=votes, backed=backed, answer=answer)
        return ctx.result(
            problem,
            self,
            answer,
            [*programs, *chains],  # programs first: `programs` in info says how many
            stopped="budget" if short else None,
            programs=len(programs),
            votes=votes,
            backed=backed,
        )

    @staticmethod
    async def draw(
        problem: Problem, ctx: Context, n: int, temperature: float
    ) -> tuple[list[Candidate], bool]:
        """Up to n samples in one request; whether the budget afforded fewer."""
        if n == 0:
            return [], False
        req = ctx.request(problem, n=n, temperature=temperature)
        k = ctx.affordable(req)
        if k == 0:
            return [], True
        gen = await ctx.generate(replace(req, n=k))
        return await ctx.candidates(problem, gen), k < n


def cross_tally(
    programs: list[Candidate], chains: list[Candidate], kind: str | None
) -> tuple[str | None, dict[str, int], list[str]]:
    """(the answer, the votes per answer class by its first spelling, the backed answers):
    see the module docstring. Candidates without an answer do not vote."""
    everyone = [*programs, *chains]
    ids = cluster([c.answer for c in everyone], kind or "math")
    votes: dict[int, int] = {}
    first: dict[int, str] = {}
    for cid, cand in zip(ids, everyone, strict=True):
        if cid is None or cand.answer is None:
            continue
        votes[cid] = votes.get(cid, 0) + 1
        first.setdefault(cid, cand.answer)
    if not votes:
        return None, {}, []
    by_program = {cid for cid in ids[: len(programs)] if cid is not None}
    by_chain = {cid for cid in ids[len(programs) :] if cid is not None}
    backed = [cid for cid in votes if cid in by_program and cid in by_chain]  # first-seen order
    eligible = backed or list(votes)
    top = max(votes[cid] for cid in eligible)
    winner = next(cid for cid in eligible if votes[cid] == top)
    return first[winner], {first[c]: v for c, v in votes.items()}, [first[c] for c in backed]
