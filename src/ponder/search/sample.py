"""Repeated sampling: n independent samples, all kept; the answer is the first sample's.

Its candidates are the pool that pass@k and maj@k are estimated from.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import ClassVar

from pydantic import Field, field_validator

from ponder.consensus import SelectionRule, observations
from ponder.errors import BackendError, BudgetExceeded
from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, POOLED, SCORED, Strategy, strategy
from ponder.runtime.verifiers import VerifierSpec
from ponder.signals import SignalName
from ponder.types import Candidate, Problem, Result


async def draw_samples(
    problem: Problem, ctx: Context, n: int, temperature: float
) -> tuple[list[Candidate], str | None]:
    """Up to n samples in one request (siblings share the prompt's prefill); fewer if the
    budget only affords fewer, with the reason ("budget")."""
    if n == 0:
        return [], None
    req = ctx.request(problem, n=n, temperature=temperature)
    k = ctx.affordable(req)
    if k == 0:
        return [], "budget"
    gen = await ctx.generate(replace(req, n=k))
    candidates = await ctx.candidates(problem, gen)
    ctx.report("samples", answers=[c.answer for c in candidates])
    return candidates, ("budget" if k < n else None)


@strategy
class Sample(Strategy):
    """n independent samples, all kept; the answer is the first sample's."""

    name: ClassVar[str] = "sample"
    width: ClassVar[str | None] = "n"
    capabilities: ClassVar[frozenset[str]] = frozenset({POOLED})
    n: int = Field(default=8, ge=1, description="samples", json_schema_extra=MULTIPLIES)
    temperature: float = Field(default=0.7, ge=0.0, description="sampling temperature")

    async def draw(self, problem: Problem, ctx: Context) -> tuple[list[Candidate], str | None]:
        """`draw_samples` at this strategy's n and temperature."""
        return await draw_samples(problem, ctx, self.n, self.temperature)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        candidates, stopped = await self.draw(problem, ctx)
        answer = candidates[0].answer if candidates else None
        return ctx.result(problem, self, answer, candidates, stopped=stopped)


class ScoredSample(Sample):
    """n samples, each scored by a verifier (a name, or a VerifierSpec as plain data)."""

    capabilities: ClassVar[frozenset[str]] = frozenset({POOLED, SCORED})

    verifier: VerifierSpec = Field(
        default_factory=VerifierSpec,
        description="the verifier that scores each sample: a name or {name, options, ...}",
    )

    @field_validator("verifier", mode="before")
    @classmethod
    def _spec(cls, v: object) -> object:
        return VerifierSpec.of(v) if isinstance(v, str) else v

    async def draw_scored(
        self, problem: Problem, ctx: Context
    ) -> tuple[list[Candidate], str | None]:
        """`draw`, then every candidate scored by the verifier `spec`. A judge that continues
        the candidate's own conversation gets each sample as its own request, scored the moment
        it finishes, while the backend slot that wrote it still holds it in its prefix cache
        (llama.cpp keeps no per-choice cache for n > 1 requests: measured, see RESULTS.md)."""
        spec = self.verifier
        if not ctx.reuses_candidate_prefix(spec):
            candidates, stopped = await self.draw(problem, ctx)
            await ctx.score(problem, candidates, spec)
            return candidates, stopped
        req = ctx.request(problem, n=self.n, temperature=self.temperature)
        n = ctx.ledger.affordable_n(req, ctx.policy.info, native_n=False)
        base_seed = req.seed or 0

        async def one(i: int) -> list[Candidate]:
            single = replace(req, n=1, seed=base_seed + i)
            with ctx.pinned() as held:  # the sample and its judgement on one slot
                try:
                    gen = await held.generate(single)
                except (BackendError, BudgetExceeded) as e:
                    # one lost sample must not lose the others: it stays, empty, with the reason
                    return [Candidate(text="", completion_tokens=0, note=f"sample failed: {e}")]
                candidates = await held.candidates(problem, gen)
                await held.score(problem, candidates, spec)
            for c in candidates:
                ctx.report("sample", answer=c.answer, score=c.score)
            return candidates

        if n == 0:  # the budget affords no sample at all: nothing to answer with, as vote
            return [], "budget"
        parts = await asyncio.gather(*(one(i) for i in range(n)))
        candidates = [c for part in parts for c in part]
        if all(c.note and c.note.startswith("sample failed") for c in candidates):
            raise BackendError(candidates[0].note or "every sample failed")
        return candidates, ("budget" if n < self.n else None)


class SelectedSample(Sample):
    """n samples, the answer chosen by a selection rule that reads each sample's confidence
    (ponder.consensus.selection); without confidence signals it falls back to a majority
    vote and says so."""

    capabilities: ClassVar[frozenset[str]] = frozenset({POOLED})
    signal: SignalName = Field(
        default="tail", description="the trace confidence the rule reads (ponder.signals)"
    )

    def rule(self) -> SelectionRule:
        raise NotImplementedError

    async def run(self, problem: Problem, ctx: Context) -> Result:
        candidates, stopped = await self.draw(problem, ctx)
        pool = observations(candidates, problem.kind, self.signal)
        chosen = self.rule().select(pool)
        answer = next(
            (c.answer for c, o in zip(candidates, pool, strict=True) if o.answer == chosen.answer),
            None,
        )
        weights = {
            next(c.answer for c, o in zip(candidates, pool, strict=True) if o.answer == cid): w
            for cid, w in chosen.weights.items()
        }
        ctx.report("tally", weights=weights, answer=answer)
        return ctx.result(
            problem,
            self,
            answer,
            candidates,
            stopped=stopped,
            weights=weights,
            tie=chosen.tie,
            note=chosen.note,
        )
