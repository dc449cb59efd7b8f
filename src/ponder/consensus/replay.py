"""Offline replay: run a stopping rule on a stored pool of samples, so its cost and accuracy are
known exactly without running the model again.

The pool stands for the samples the live strategy would have drawn, in launch order. The
replay launches waves as the live strategy does (`StoppingRule.next_wave`); a wave's samples
start together and write at the same pace, so they finish in order of length, and the rule is
asked after each. When it stops, the wave's other samples are stopped too, having written as
many tokens as the sample that settled it ("elapsed", the default; "full" and "none" bound it
from above and below).

Rolling (`rolling=True`, the live strategy's `rolling`): the next sample starts the moment one
finishes, so up to `wave` run at all times; every sample writes one token per step from its
own start, and finishes in order of its end (start + length). When the rule stops, each
sample still running has written the steps since its start.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ponder.consensus.observations import Observation, Trace
from ponder.consensus.online import DeepConfVote, check_settings, cut_point, lowest_group
from ponder.consensus.stopping import Decision, StoppingRule
from ponder.errors import UsageError

CancelCharge = Literal["elapsed", "none", "full"]


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    samples: int  # launched (finished plus cancelled)
    tokens: int  # completion tokens charged
    answer: int | None  # the rule's leader when it stopped (weighted for WeightedConsensus)
    decision: Decision  # the decision that stopped it
    steps: int  # when it stopped, in tokens written by one sample (its latency at equal pace)


@dataclass(frozen=True, slots=True)
class ExpectedOutcome:
    samples: float  # mean samples launched over the orders
    tokens: float  # mean tokens charged
    answers: tuple[int | None, ...]  # the answer of each order
    steps: float  # mean latency in steps

    def accuracy(self, correct: Collection[int]) -> float:
        """The share of orders answered with a correct class."""
        return sum(a in correct for a in self.answers if a is not None) / len(self.answers)


def _check(pool_size: int, budget: int, slots: int) -> None:
    if budget < 1 or slots < 1:
        raise UsageError(f"budget ({budget}) and slots ({slots}) must be at least 1")
    if budget > pool_size:
        raise UsageError(f"a pool of {pool_size} samples cannot replay a budget of {budget}")


def _charge(rest: Sequence[tuple[int, int]], how: CancelCharge) -> int:
    """What samples cut short when another's finish settled the answer had cost by then
    (`rest`: each one's length and the steps it had run)."""
    if how == "full":
        return sum(t for t, _ in rest)
    if how == "none":
        return 0
    return sum(min(t, ran) for t, ran in rest)


def replay(
    rule: StoppingRule,
    pool: Sequence[Observation],
    budget: int,
    wave: int,
    charge_cancelled: CancelCharge = "elapsed",
    *,
    rolling: bool = False,
) -> ReplayOutcome:
    """`rule` run as the live strategy runs it (ponder.search.adaptive) on `pool`, in its
    order, with waves of at most `wave` samples (rolling: at most `wave` running) and a
    budget."""
    _check(len(pool), budget, wave)
    if rolling:
        return _replay_rolling(rule, pool, budget, wave, charge_cancelled)
    finished: list[Observation] = []
    tokens = launched = clock = 0  # clock: the steps the waves before this one took
    while True:
        size = rule.next_wave(finished, budget, wave)
        batch = pool[launched : launched + size]
        launched += len(batch)
        if not batch:  # cannot happen: decide stops at the budget, and waves stop there too
            raise AssertionError(f"{rule.name} launched nothing before its budget")
        order = sorted(range(len(batch)), key=lambda i: batch[i].tokens)
        for j, i in enumerate(order):
            sample = batch[i]
            finished.append(sample)
            tokens += sample.tokens
            decision = rule.decide(finished, budget)
            if decision.stop:
                rest = [(batch[r].tokens, sample.tokens) for r in order[j + 1 :]]
                tokens += _charge(rest, charge_cancelled)
                steps = clock + sample.tokens
                return ReplayOutcome(launched, tokens, decision.leader, decision, steps)
        clock += max(o.tokens for o in batch)  # a wave ends with its longest sample


def _replay_rolling(
    rule: StoppingRule,
    pool: Sequence[Observation],
    budget: int,
    wave: int,
    charge_cancelled: CancelCharge,
) -> ReplayOutcome:
    finished: list[Observation] = []
    running: list[tuple[int, int, int]] = []  # (end step, launch order, start step)
    tokens = launched = now = 0
    while True:
        for _ in range(rule.next_wave(finished, budget, wave, in_flight=len(running))):
            heapq.heappush(running, (now + pool[launched].tokens, launched, now))
            launched += 1
        if not running:  # cannot happen: decide stops at the budget
            raise AssertionError(f"{rule.name} launched nothing before its budget")
        now, i, _ = heapq.heappop(running)
        finished.append(pool[i])
        tokens += pool[i].tokens
        decision = rule.decide(finished, budget)
        if decision.stop:
            rest = [(pool[j].tokens, now - start) for _, j, start in running]
            tokens += _charge(rest, charge_cancelled)
            return ReplayOutcome(launched, tokens, decision.leader, decision, now)


def expected(
    rule: StoppingRule,
    pool: Sequence[Observation],
    budget: int,
    wave: int,
    orders: int,
    seed: int,
    charge_cancelled: CancelCharge = "elapsed",
    *,
    rolling: bool = False,
) -> ExpectedOutcome:
    """The mean of `replay` over the stored order and `orders − 1` seeded permutations of it.

    Samples are drawn i.i.d., so the stored order is already one random order and every
    permutation is as likely: averaging over them estimates the expectation over sampling
    rather than the luck of one order."""
    if orders < 1:
        raise UsageError(f"orders must be at least 1 (got {orders})")
    rng = np.random.default_rng(seed)
    runs = [replay(rule, pool, budget, wave, charge_cancelled, rolling=rolling)]
    for _ in range(orders - 1):
        order = rng.permutation(len(pool))
        shuffled = [pool[int(i)] for i in order]
        runs.append(replay(rule, shuffled, budget, wave, charge_cancelled, rolling=rolling))
    return ExpectedOutcome(
        samples=sum(r.samples for r in runs) / orders,
        tokens=sum(r.tokens for r in runs) / orders,
        answers=tuple(r.answer for r in runs),
        steps=sum(r.steps for r in runs) / orders,
    )


@dataclass(frozen=True, slots=True)
class OnlineOutcome:
    samples: int  # traces launched (warm-up included)
    tokens: int  # completion tokens charged (a stopped trace: up to its stopping token)
    answer: int | None  # the confidence-weighted vote of the traces that voted
    stopped_early: int  # traces cut off by the filter
    threshold: float  # the group confidence the warm-up set
    reason: str  # why no more traces were launched


def deepconf_online(
    pool: Sequence[Trace],
    budget: int,
    *,
    warmup: int = 4,
    percentile: float = 10.0,
    window: int = 32,
    consensus: float = 0.95,
    wave: int = 4,
    charge_cancelled: CancelCharge = "elapsed",
) -> OnlineOutcome:
    """DeepConf online replayed on a pool as the live strategy (ponder.search.deepconf) runs
    it: the first `warmup` traces run whole and set the threshold (DeepConfVote); then waves of
    at most `wave` traces, each cut the moment a group falls below the threshold (charged the
    tokens up to and including that one; it does not vote). A wave's traces start together,
    so they end in order of the tokens they write; the vote is checked after each, and when
    the leader holds `consensus` of it the wave's others are stopped (charged what they had
    written by then) and no more are launched."""
    _check(len(pool), budget, wave)
    check_settings(warmup, budget, percentile, window, consensus)
    for i, trace in enumerate(pool[:budget]):
        if trace.confidence.shape[0] == 0:
            raise UsageError(f"trace {i} has no token confidences: DeepConf online needs them")
    vote = DeepConfVote(window=window, percentile=percentile, consensus=consensus)
    warm = pool[:warmup]
    threshold = vote.calibrate([lowest_group(t.confidence, window) for t in warm])
    tokens = sum(t.tokens for t in warm)
    for t in sorted(warm, key=lambda t: t.tokens):
        vote.offer(t.answer, t.tokens, t.confidence)
    launched, stopped = warmup, 0
    reason = ""
    while True:
        if vote.settled():
            reason = f"weighted share {vote.share():.3f} ≥ {consensus}"
            break
        if launched >= budget:
            reason = f"budget of {budget} reached"
            break
        batch = pool[launched : launched + min(wave, budget - launched)]
        launched += len(batch)
        cuts = [cut_point(t.confidence, threshold, window) for t in batch]
        ends = [
            t.tokens if c is None else min(c + 1, t.tokens)
            for t, c in zip(batch, cuts, strict=True)
        ]
        order = sorted(range(len(batch)), key=lambda i: ends[i])
        for j, i in enumerate(order):
            tokens += ends[i]
            if cuts[i] is not None:
                stopped += 1
                continue
            vote.offer(batch[i].answer, batch[i].tokens, batch[i].confidence)
            if vote.settled():
                rest = [(ends[r], ends[i]) for r in order[j + 1 :]]
                tokens += _charge(rest, charge_cancelled)
                break
    return OnlineOutcome(launched, tokens, vote.answer(), stopped, threshold, reason)
