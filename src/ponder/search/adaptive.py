"""Adaptive self-consistency: sample in waves and stop as soon as the answer is settled, so an
easy question costs a few samples and a hard one the whole budget. The stopping rule is one of
ponder.consensus's: ESC (Li et al., 2024: a window of identical answers), Beta stopping
(Aggarwal et al., 2023: P(the leader stays the leader) ≥ a threshold), its_hub's agreement
share, or DeepConf's confidence-weighted consensus.

    finished ← []
    while the rule says go on:
        wave ← rule.next_wave(finished, n, w)             (at most w samples of this problem;
                                                           later waves with `fill`: at most
                                                           max(w, the backend's idle slots))
        launch the wave; each sample streams, watched
        as each sample finishes:
            finished += it
            if rule.decide(finished, n) says stop:
                stop the wave's other samples (they stop at their next token, charged so far)
    answer ← the rule's leader

With `rolling`, a problem does not wait for its whole wave: the next sample starts as soon as
one finishes (at most w running), so no slot waits on a wave's slowest sample.

Many problems run at once (a bench, a server), so a wave of w < slots keeps the backend full
while each problem stops early; the slots a settled problem frees go to those still open: with
`fill`, a later wave widens to the slots idle when no request waits (the end of a workload,
when few problems are left open). The rule is a pure function of the finished samples, so
`ponder.consensus.replay` prices the same rule on a stored pool exactly for fixed waves (with
`fill`, a widened wave can only cut more samples short, so the replay is a lower bound on
tokens there), and rolling under equal pace (every sample writes a token per step).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ponder.answers import cluster
from ponder.consensus import (
    ESC,
    Agreement,
    BetaStop,
    Decision,
    Observation,
    PriceStop,
    StoppingRule,
    WeightedConsensus,
)
from ponder.errors import BackendError, BudgetExceeded
from ponder.lm.protocol import Watch
from ponder.runtime.context import Context
from ponder.runtime.strategy import MULTIPLIES, OptionsClash, Strategy, strategy
from ponder.signals import SignalName
from ponder.types import Candidate, GenRequest, Problem, Result, TokenLogprob

Rule = Literal["esc", "beta", "agreement", "weighted", "price"]


@strategy
class Adaptive(Strategy):
    """Self-consistency that stops sampling once the answer is settled (ESC, Beta, weighted),
    or once one more sample is worth less than its price (price)."""

    name: ClassVar[str] = "adaptive"
    width: ClassVar[str | None] = "n"
    n: int = Field(
        default=16,
        ge=1,
        description="the budget: samples at most",
        json_schema_extra=MULTIPLIES,
    )
    temperature: float = Field(default=0.7, ge=0.0, description="sampling temperature")
    rule: Rule = Field(
        default="beta",
        description="when to stop: esc (a window of equal answers), beta (P(leader stays) ≥ "
        "threshold), agreement (the leader's share ≥ threshold), weighted (its "
        "confidence-weighted share ≥ threshold), price (1 − P(leader stays) per generated "
        "token, damped by √samples, < price)",
    )
    threshold: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="beta: 0.95; agreement: 0.75; weighted: 0.95 (the rule's own default)",
    )
    window: int = Field(default=4, ge=1, description="esc: equal answers in a row to stop")
    price: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="price: accuracy per generated token one more sample must promise "
        "[default: the rule's, 7e-4]",
    )
    min_samples: int | None = Field(
        default=None, ge=1, description="samples before the rule may stop [default: the rule's]"
    )
    give_up_after: int | None = Field(
        default=None,
        ge=2,
        description="stop once this many samples have finished with no two answers alike "
        "(the vote would be a guess) [default: never]",
    )
    wave: int = Field(
        default=4, ge=1, description="samples of one problem launched at once (a wave)"
    )
    rolling: bool = Field(
        default=False,
        description="launch a problem's next sample as soon as one finishes (at most `wave` "
        "running) instead of waiting for the whole wave",
    )
    fill: bool = Field(
        default=True,
        description="a later wave also takes the backend's idle slots (when no request "
        "waits), so a problem still open after the others settled finishes sooner",
    )
    signal: SignalName = Field(
        default="tail", description="weighted: the confidence each sample's vote weighs"
    )

    @model_validator(mode="after")
    def _settings_of_the_rule(self) -> Adaptive:
        # a setting another rule reads would be silently ignored
        if self.price is not None and self.rule != "price":
            raise OptionsClash(
                f"price is read by rule=price, not rule={self.rule}", "price", "rule"
            )
        if self.threshold is not None and self.rule in ("price", "esc"):
            raise OptionsClash(
                f"threshold is read by rule=beta, agreement or weighted, not rule={self.rule}",
                "threshold",
                "rule",
            )
        # (a setting away from its default: a stored config, re-made, sets every field)
        fields = type(self).model_fields
        given = {k for k in ("window", "signal") if getattr(self, k) != fields[k].default}
        if "window" in given and self.rule != "esc":
            raise OptionsClash(
                f"window is read by rule=esc, not rule={self.rule}", "window", "rule"
            )
        if "signal" in given and self.rule != "weighted":
            raise OptionsClash(
                f"signal is read by rule=weighted, not rule={self.rule}", "signal", "rule"
            )
        # a count past the budget could never be reached: the rule would never act on it
        counts = {"min_samples": self.min_samples, "give_up_after": self.give_up_after}
        if self.rule == "esc" and "window" in given:
            counts["window"] = self.window
        for key, count in counts.items():
            if count is not None and count > self.n:
                raise OptionsClash(
                    f"{key} {count} exceeds n {self.n}, the samples at most", key, "n"
                )
        return self

    def stopping_rule(self) -> StoppingRule:
        common: dict[str, int] = {"give_up_after": self.give_up_after} if self.give_up_after else {}
        if self.min_samples is not None:
            common["min_samples"] = self.min_samples
        threshold = {} if self.threshold is None else {"threshold": self.threshold}
        if self.rule == "esc":
            return ESC(window=self.window, **common)
        if self.rule == "beta":
            return BetaStop(**threshold, **common)
        if self.rule == "agreement":
            share = {} if self.threshold is None else {"share": self.threshold}
            return Agreement(**share, **common)
        if self.rule == "price":
            price = {} if self.price is None else {"price": self.price}
            return PriceStop(**price, **common)
        return WeightedConsensus(**threshold, **common)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        return await self.run_from(problem, ctx, [])

    async def run_from(self, problem: Problem, ctx: Context, probe: list[Candidate]) -> Result:
        """The rule run on samples already drawn (`probe`, e.g. `auto`'s), then on as usual."""
        run = await sample_until(
            ctx,
            problem,
            self.stopping_rule(),
            lambda finished: self.observe(finished, problem),
            n=self.n,
            wave=self.wave,
            fill=self.fill,
            temperature=self.temperature,
            probe=probe,
            rolling=self.rolling,
        )
        answer = None
        if run.decision is not None and run.decision.leader is not None:
            answer = next(
                c.answer
                for c, cid in zip(run.finished, self.classes(run.finished, problem), strict=True)
                if cid == run.decision.leader
            )
        return ctx.result(
            problem,
            self,
            answer,
            run.candidates,
            stopped=run.stopped,
            samples=len(run.finished),
            cut=len(run.sampler.cut),
            reason=run.reason,
            streamed=ctx.policy.capabilities.stream,
        )

    def classes(self, finished: list[Candidate], problem: Problem) -> list[int | None]:
        return cluster([c.answer for c in finished], problem.kind or "math")

    def observe(self, finished: list[Candidate], problem: Problem) -> list[Observation]:
        """The finished samples as the rule reads them (class ids in first-seen order)."""
        return [
            Observation(
                answer=cid,
                tokens=c.completion_tokens,
                confidence=c.signals.get(self.signal) if c.signals else None,
            )
            for c, cid in zip(finished, self.classes(finished, problem), strict=True)
        ]


@dataclass
class Sampled:
    """What `sample_until` drew: the samples that finished (in order), the rule's last
    decision, the sampler (its cut and late samples) and why it stopped short, if it did."""

    finished: list[Candidate]
    decision: Decision | None
    sampler: WaveSampler
    stopped: str | None

    @property
    def candidates(self) -> list[Candidate]:
        """Every sample charged: those that voted, those finished late, those cut short."""
        return [*self.finished, *self.sampler.late, *self.sampler.cut]

    @property
    def reason(self) -> str:
        return self.decision.reason if self.decision else "no sample finished"


async def sample_until(
    ctx: Context,
    problem: Problem,
    rule: StoppingRule,
    observe: Callable[[list[Candidate]], list[Observation]],
    *,
    n: int,
    wave: int,
    fill: bool,
    temperature: float,
    probe: Sequence[Candidate] = (),
    rolling: bool = False,
) -> Sampled:
    """Samples of `problem` in waves until `rule` stops (the loop in the module docstring);
    `observe` turns the finished samples into what the rule reads. Rolling, the next sample
    starts as soon as one finishes (at most `wave` running) instead of after the whole wave."""
    sampler = WaveSampler(ctx, problem, temperature)
    finished: list[Candidate] = list(probe)
    decision: Decision | None = None
    if finished:
        decision = rule.decide(observe(finished), n)
    if rolling:
        return await _rolling(ctx, rule, observe, sampler, finished, decision, n, wave, fill)
    stopped: str | None = None
    while decision is None or not decision.stop:
        size = rule.next_wave(observe(finished), n, _width(ctx, wave, fill, finished))
        if size == 0:
            break
        launched = sampler.launch(size)
        if not launched:
            stopped = "budget"
            break
        async for cand in sampler.voting(launched):
            finished.append(cand)
            decision = rule.decide(observe(finished), n)
            ctx.report("sample", answer=cand.answer, reason=decision.reason)
            if decision.stop:
                sampler.settle()
        if sampler.short:
            stopped = "budget"
            break
    return Sampled(finished, decision, sampler, stopped)


async def _rolling(
    ctx: Context,
    rule: StoppingRule,
    observe: Callable[[list[Candidate]], list[Observation]],
    sampler: WaveSampler,
    finished: list[Candidate],
    decision: Decision | None,
    n: int,
    wave: int,
    fill: bool,
) -> Sampled:
    """Rolling sampling, the next sample launched as soon as one finishes:

    running ← the rule's first wave
    as each sample finishes:
        finished += it (unless cut short or late)
        if rule.decide(finished, n) says stop: stop the others (next token, charged)
        else: launch rule.next_wave(finished, n, w, in_flight=|running|) more
    """
    running: set[asyncio.Task[Candidate]] = set()
    launch_order: dict[asyncio.Task[Candidate], int] = {}
    while decision is None or not decision.stop or running:
        if not sampler.settled and not sampler.short:
            width = _width(ctx, wave, fill, finished, len(running))
            size = rule.next_wave(observe(finished), n, width, in_flight=len(running))
            launched = sampler.launch(size) if size else []
            for task in launched:
                launch_order[task] = len(launch_order)
            running.update(launched)
        if not running:
            break
        done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in sorted(done, key=launch_order.__getitem__):  # ties: in launch order
            cand = task.result()
            if not sampler.counts(cand):
                continue
            finished.append(cand)
            decision = rule.decide(observe(finished), n)
            ctx.report("sample", answer=cand.answer, reason=decision.reason)
            if decision.stop:
                sampler.settle()
    return Sampled(finished, decision, sampler, "budget" if sampler.short else None)


def _width(ctx: Context, wave: int, fill: bool, finished: list[Candidate], running: int = 0) -> int:
    """The samples of this problem that may run now: `wave`, or with `fill` (after the
    first wave) as many as run already plus the backend's idle slots, if that is more."""
    if fill and finished:
        return max(wave, running + ctx.idle_slots())
    return wave


class WaveSampler:
    """Launches single samples of one problem, each streamed with a watch that stops it once
    the problem is settled; keeps the samples that were stopped (charged, not voting)."""

    def __init__(
        self,
        ctx: Context,
        problem: Problem,
        temperature: float,
        watch: Callable[[], Callable[[TokenLogprob], bool]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.problem = problem
        self.temperature = temperature
        self.extra_watch = watch
        self.settled = False
        self.short = False  # the budget afforded fewer samples than asked
        self.cut: list[Candidate] = []  # stopped midway
        self.late: list[Candidate] = []  # finished after the answer was settled

    def settle(self) -> None:
        """The answer is settled: samples in flight stop at their next token."""
        self.settled = True

    def launch(self, k: int) -> list[asyncio.Task[Candidate]]:
        tasks = []
        for _ in range(k):
            req = self.ctx.request(self.problem, n=1, temperature=self.temperature)
            if self.ctx.affordable(req) < 1:
                self.short = True
                break
            tasks.append(asyncio.ensure_future(self.one(req)))
        return tasks

    async def voting(self, wave: list[asyncio.Task[Candidate]]) -> AsyncIterator[Candidate]:
        """The wave's samples as they finish, but those stopped or written after the answer
        was settled: charged (kept in `cut` or `late`), not voting."""
        for done in asyncio.as_completed(wave):
            cand = await done
            if self.counts(cand):
                yield cand

    def counts(self, cand: Candidate) -> bool:
        """Whether a finished sample votes: not one stopped midway (kept in `cut`) nor one
        written after the answer was settled (kept in `late`)."""
        if self.settled or cand.finish_reason == "stopped":
            if cand.finish_reason != "stopped":
                self.late.append(cand)
            return False
        return True

    def watch(self) -> Watch:
        extra = self.extra_watch() if self.extra_watch is not None else None

        def check(token: TokenLogprob) -> bool:
            if self.settled:
                return True
            return extra is not None and extra(token)

        return check

    async def one(self, req: GenRequest) -> Candidate:
        try:
            gen = await self.ctx.generate(req, self.watch)
        except (BackendError, BudgetExceeded) as e:
            # one lost sample must not lose the others: it stays, empty, with the reason
            return Candidate(text="", note=f"sample failed: {e}", finish_reason="error")
        (cand,) = await self.ctx.candidates(self.problem, gen)
        if cand.finish_reason == "stopped":
            why = "the answer was settled" if self.settled else "its confidence fell too low"
            cand.note = f"stopped: {why}"
            self.cut.append(cand)
        return cand
