"""DeepConf online (Fu et al., 2025, "Deep Think with Confidence", Algorithm 2): warm-up traces
set a confidence threshold; every later trace is watched while it is written and stopped the
moment its group confidence falls below it; sampling stops once the confidence-weighted vote
is settled.

    warm ← W traces, whole
    s ← the p-th percentile of their lowest group confidences          (p = 10: keep ~90%)
    vote ← warm traces whose lowest group ≥ s, weighted by it
    while the leader's weighted share < τ and fewer than n traces:
        wave ← up to w traces, each streamed; a trace stops the moment the mean confidence of
               its last `window` tokens < s (charged so far; it does not vote)
        as each trace finishes whole: it votes if its lowest group ≥ s;
                                      if the leader's share ≥ τ: stop the wave's others
    answer ← the weighted leader

On a backend that cannot stop a generation midway the traces are written whole (and charged
whole), cut afterwards where the check would have cut them, and the result says so. Without
log-probabilities there is no confidence: it says so and votes plainly, stopping on the same
share of plain counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from pydantic import Field

from ponder.answers import cluster
from ponder.consensus import DeepConfVote, OnlineFilter, lowest_group
from ponder.consensus.online import check_settings
from ponder.errors import UsageError
from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, Strategy, strategy
from ponder.search.adaptive import WaveSampler
from ponder.signals import token_confidence
from ponder.types import Candidate, Problem, Result, TokenLogprob


@strategy
class DeepConf(Strategy):
    """DeepConf online: warm-up traces set a confidence bar; later traces stop below it."""

    name: ClassVar[str] = "deepconf"
    width: ClassVar[str | None] = "n"
    n: int = Field(
        default=16, ge=1, description="the budget: traces at most", json_schema_extra=MULTIPLIES
    )
    temperature: float = Field(default=0.7, ge=0.0, description="sampling temperature")
    warmup: int = Field(default=4, ge=1, description="traces written whole to set the bar")
    percentile: float = Field(
        default=10.0,
        ge=0.0,
        le=100.0,
        description="the bar: this percentile of the warm-up's lowest group confidences "
        "(10 keeps ~90% of traces, DeepConf-high; 90 keeps ~10%, DeepConf-low)",
    )
    window: int = Field(default=32, ge=1, description="tokens per group")
    consensus: float = Field(
        default=0.95, gt=0.0, le=1.0, description="the leader's weighted share to stop"
    )
    wave: int = Field(default=4, ge=1, description="traces of one problem launched at once")
    k: int = Field(default=20, ge=1, le=20, description="top-k log-probabilities per token")

    def model_post_init(self, context: object) -> None:
        if self.warmup > self.n:
            raise UsageError(f"deepconf: warmup {self.warmup} exceeds n {self.n}", option="warmup")
        check_settings(self.warmup, self.n, self.percentile, self.window, self.consensus)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        vote = DeepConfVote(
            window=self.window, percentile=self.percentile, consensus=self.consensus
        )
        notes: list[str] = []
        if not ctx.policy.capabilities.logprobs:
            notes.append("no log-probabilities from the backend: plain votes, no confidence bar")
        elif not ctx.policy.capabilities.stream:
            notes.append(
                "the backend cannot stop a generation midway: traces were written whole (and "
                "charged whole), then cut where the check would have cut them"
            )
        bar: list[float] = []  # the threshold, once the warm-up has set it
        sampler = WaveSampler(ctx, problem, self.temperature, watch=self.online_check(bar))
        warm = [await t for t in asyncio.as_completed(sampler.launch(self.warmup))]
        finished = sorted(warm, key=lambda c: c.completion_tokens)
        lowest = [self.lowest(c) for c in finished if c.stats is not None]
        if lowest:
            bar.append(vote.calibrate(lowest))
        else:
            vote.threshold = float("-inf")  # no confidence: every answered trace votes
        voters: list[Candidate] = []
        for c in finished:
            self.offer(vote, voters, c, finished, problem)
        launched = len(warm)
        while not vote.settled() and launched < self.n and not sampler.short:
            wave = sampler.launch(min(self.wave, self.n - launched))
            launched += len(wave)
            async for cand in sampler.voting(wave):  # the cut ones: charged, not voting
                finished.append(cand)
                self.offer(vote, voters, cand, finished, problem)
                ctx.report("trace", answer=cand.answer, share=round(vote.share(), 3))
                if vote.settled():
                    sampler.settle()
        cid = vote.answer()
        classes = self.classes(finished, problem)
        answer = next((c.answer for c, k in zip(finished, classes, strict=True) if k == cid), None)
        share = vote.share()
        return ctx.result(
            problem,
            self,
            answer,
            [*finished, *sampler.late, *sampler.cut],
            stopped="budget" if sampler.short else None,
            threshold=bar[0] if bar else None,
            voters=len(voters),
            cut=len(sampler.cut),
            share=round(share, 4),
            reason=(
                f"weighted share {share:.3f} ≥ {self.consensus}"
                if vote.settled()
                else f"budget of {self.n} traces reached"
            ),
            notes=notes,
        )

    def online_check(self, bar: list[float]) -> Callable[[], Callable[[TokenLogprob], bool]]:
        """A fresh check per trace: off during the warm-up (no bar yet), then DeepConf's."""

        def make() -> Callable[[TokenLogprob], bool]:
            if not bar:
                return lambda token: False
            check = OnlineFilter(bar[0], self.window)
            return lambda token: check.update(token_confidence(token, self.k))

        return make

    def lowest(self, cand: Candidate) -> float:
        assert cand.stats is not None
        return lowest_group(cand.stats.confidence, self.window)

    def classes(self, finished: list[Candidate], problem: Problem) -> list[int | None]:
        return cluster([c.answer for c in finished], problem.kind or "math")

    def offer(
        self,
        vote: DeepConfVote,
        voters: list[Candidate],
        cand: Candidate,
        finished: list[Candidate],
        problem: Problem,
    ) -> None:
        at = next(i for i, c in enumerate(finished) if c is cand)
        cid = self.classes(finished, problem)[at]
        confidence = cand.stats.confidence if cand.stats is not None else np.ones(1, np.float32)
        if vote.offer(cid, cand.completion_tokens, confidence):
            voters.append(cand)
