"""Offline replay: run a stopping rule on a stored pool of samples, so its cost and accuracy are
known exactly without running the model again.

The pool stands for the samples the live system would have drawn, in the order they would have
finished. The replay launches waves as the live system does (`StoppingRule.next_wave`), lets
each wave's samples finish in pool order and asks the rule after every one; when it stops, the
rest of that wave is cancelled. What a cancelled sample had cost by then lies between nothing
and its whole length: `charge_cancelled` picks the bound ("full", the default, is conservative).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ponder.consensus.observations import EPSILON, Observation, Trace, leader, totals
from ponder.consensus.stopping import Decision, StoppingRule
from ponder.errors import UsageError

CancelCharge = Literal["none", "full"]


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    samples: int  # launched (finished plus cancelled)
    tokens: int  # completion tokens charged
    answer: int | None  # the rule's leader when it stopped (weighted for WeightedConsensus)
    decision: Decision  # the decision that stopped it


@dataclass(frozen=True, slots=True)
class ExpectedOutcome:
    samples: float  # mean samples launched over the orders
    tokens: float  # mean tokens charged
    answers: tuple[int | None, ...]  # the answer of each order

    def accuracy(self, correct: Collection[int]) -> float:
        """The share of orders answered with a correct class."""
        return sum(a in correct for a in self.answers if a is not None) / len(self.answers)


def _check(pool_size: int, budget: int, slots: int) -> None:
    if budget < 1 or slots < 1:
        raise UsageError(f"budget ({budget}) and slots ({slots}) must be at least 1")
    if budget > pool_size:
        raise UsageError(f"a pool of {pool_size} samples cannot replay a budget of {budget}")


def replay(
    rule: StoppingRule,
    pool: Sequence[Observation],
    budget: int,
    slots: int,
    charge_cancelled: CancelCharge = "full",
) -> ReplayOutcome:
    """`rule` run live on `pool` (in its order) with `slots` parallel samples and a budget."""
    _check(len(pool), budget, slots)
    finished: list[Observation] = []
    tokens = 0
    while True:
        wave = pool[len(finished) : len(finished) + rule.next_wave(finished, budget, slots)]
        launched = len(finished) + len(wave)
        for i, sample in enumerate(wave):
            finished.append(sample)
            tokens += sample.tokens
            decision = rule.decide(finished, budget)
            if decision.stop:
                if charge_cancelled == "full":
                    tokens += sum(o.tokens for o in wave[i + 1 :])
                return ReplayOutcome(launched, tokens, decision.leader, decision)
        if not wave:  # cannot happen: decide stops at the budget, and waves stop there too
            raise AssertionError(f"{rule.name} launched nothing before its budget")


def expected(
    rule: StoppingRule,
    pool: Sequence[Observation],
    budget: int,
    slots: int,
    orders: int,
    seed: int,
    charge_cancelled: CancelCharge = "full",
) -> ExpectedOutcome:
    """The mean of `replay` over the stored order and `orders − 1` seeded permutations of it.

    Samples are drawn i.i.d., so the stored order is already one random order and every
    permutation is as likely: averaging over them estimates the expectation over sampling
    rather than the luck of one order."""
    if orders < 1:
        raise UsageError(f"orders must be at least 1 (got {orders})")
    rng = np.random.default_rng(seed)
    runs = [replay(rule, pool, budget, slots, charge_cancelled)]
    for _ in range(orders - 1):
        order = rng.permutation(len(pool))
        shuffled = [pool[int(i)] for i in order]
        runs.append(replay(rule, shuffled, budget, slots, charge_cancelled))
    return ExpectedOutcome(
        samples=sum(r.samples for r in runs) / orders,
        tokens=sum(r.tokens for r in runs) / orders,
        answers=tuple(r.answer for r in runs),
    )


class OnlineFilter:
    """DeepConf's online check of one trace: stop it the moment its group confidence (the mean
    confidence of its last `window` tokens, once it has that many) falls below `threshold`.
    O(1) per token: a running sum over a ring of the last `window` confidences."""

    __slots__ = ("_ring", "_sum", "threshold", "window")

    def __init__(self, threshold: float, window: int) -> None:
        if window < 1:
            raise UsageError(f"window must be at least 1 token (got {window})")
        self.threshold = threshold
        self.window = window
        self._ring: deque[float] = deque(maxlen=window)
        self._sum = 0.0

    def update(self, token_confidence: float) -> bool:
        """Take the next token's confidence; True: stop the trace now (this token included)."""
        if len(self._ring) == self.window:
            self._sum -= self._ring[0]
        self._ring.append(token_confidence)
        self._sum += token_confidence
        return len(self._ring) == self.window and self._sum / self.window < self.threshold


@dataclass(frozen=True, slots=True)
class OnlineOutcome:
    samples: int  # traces launched (warm-up included)
    tokens: int  # completion tokens charged (a stopped trace: up to its stopping token)
    answer: int | None  # the confidence-weighted vote of the traces that voted
    stopped_early: int  # traces cut off by the filter
    threshold: float  # the group confidence the warm-up set
    reason: str  # why no more traces were launched


def lowest_group(confidence: np.ndarray, window: int) -> float:
    """A trace's lowest group confidence (its mean when shorter than a window), in float64 as
    OnlineFilter sums it (`ponder.signals.group_confidence` rounds to float32)."""
    c = confidence.astype(np.float64)
    if c.shape[0] <= window:
        return float(c.mean())
    sums = np.cumsum(np.concatenate([[0.0], c]))
    return float(((sums[window:] - sums[:-window]) / window).min())


def deepconf_online(
    pool: Sequence[Trace],
    budget: int,
    *,
    warmup: int = 4,
    percentile: float = 10.0,
    window: int = 32,
    consensus: float = 0.95,
) -> OnlineOutcome:
    """DeepConf online (Fu et al., 2025, Algorithm 2) replayed on a pool, one trace at a time.

    The first `warmup` traces run whole; the threshold is the `percentile` of their lowest group
    confidences (10: "DeepConf-high", about 90% of traces pass; 90: "DeepConf-low", about 10%).
    Every later trace is cut the moment a group falls below it (charged the tokens up to and
    including that one) and does not vote. A trace votes when it has an answer and its lowest
    group is not below the threshold (this also drops a warm-up trace below it, and a trace
    shorter than a window, which the online check never sees whole), with weight its lowest
    group confidence, as DeepConf's reference code does (deepconf-online.py votes with each
    trace's `min_conf`, the confidence the online check reads). Traces are added
    until the leader holds `consensus` of the weighted vote or `budget` traces were launched."""
    _check(len(pool), budget, 1)
    if not 1 <= warmup <= budget or not 0.0 <= percentile <= 100.0 or window < 1:
        raise UsageError(
            f"DeepConf online needs 1 ≤ warmup ≤ budget, a percentile in [0, 100] and a window "
            f"≥ 1 (warmup={warmup}, budget={budget}, percentile={percentile}, window={window})"
        )
    if not 0.0 < consensus <= 1.0:
        raise UsageError(f"consensus must be in (0, 1] (got {consensus})")
    for i, trace in enumerate(pool[:budget]):
        if trace.confidence.shape[0] == 0:
            raise UsageError(f"trace {i} has no token confidences: DeepConf online needs them")

    lowest = [lowest_group(t.confidence, window) for t in pool[:warmup]]
    threshold = float(np.percentile(lowest, percentile))
    voters: list[Observation] = []
    tokens = sum(t.tokens for t in pool[:warmup])
    for trace, low in zip(pool[:warmup], lowest, strict=True):
        if trace.answer is not None and low >= threshold:
            voters.append(Observation(trace.answer, trace.tokens, low))
    launched, stopped = warmup, 0
    while True:
        votes = totals(voters, [max(o.confidence or 0.0, EPSILON) for o in voters])
        share = max(votes.values()) / sum(votes.values()) if votes else 0.0
        if share >= consensus:
            reason = f"weighted share {share:.3f} ≥ {consensus}"
            break
        if launched >= budget:
            reason = f"budget of {budget} reached"
            break
        trace = pool[launched]
        launched += 1
        check = OnlineFilter(threshold, window)
        cut = next((i for i, c in enumerate(trace.confidence.tolist()) if check.update(c)), None)
        if cut is not None:
            stopped += 1
            tokens += min(cut + 1, trace.tokens)
            continue
        tokens += trace.tokens
        low = lowest_group(trace.confidence, window)
        checked = trace.confidence.shape[0] >= window  # every group passed the check
        if trace.answer is not None and (checked or low >= threshold):
            voters.append(Observation(trace.answer, trace.tokens, low))
    return OnlineOutcome(launched, tokens, leader(votes)[0], stopped, threshold, reason)
