"""Settings chosen on a train pool and judged on a test pool it never saw: a stopping rule's
(`tune_stopping`) and a confidence-based selection rule's (`tune_selection`).

    for each rule family (esc, beta, agreement, weighted, DeepConf online):
        replay every setting of its grid on the train pool
        keep those within `tolerance` of the train pool's majority@n accuracy
        choose the one that writes the fewest tokens (none kept: the most accurate)
        replay the chosen setting on the test pool, beside the test pool's majority@n

A rule's default thresholds were set for large models whose samples mostly agree; a small
model's samples rarely do, so its rules stop late. Choosing the threshold on train problems
(never the problems reported) is the honest way to move it.

    for k in ks, for each selection family (CISC, DeepConf offline, self-certainty Borda):
        the rule, its parameter and the signal it reads that are most accurate at k on train
        judged on test at k beside majority@k (paired bootstrap over problems)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ponder.bench.analysis import Point, point_of, points
from ponder.bench.confidence import (
    DEEPCONF_WARMUP,
    PoolSignals,
    Replayed,
    aligned,
    online_replayable,
    paired,
    replay_fixed,
    replay_online,
    replay_rule,
    selected_at,
    weigher,
)
from ponder.consensus import (
    ESC,
    Agreement,
    BetaStop,
    ConfidenceWeighted,
    DeepConfFilter,
    PriceStop,
    SelectionRule,
    SelfCertaintyBorda,
    StoppingRule,
    WeightedConsensus,
)
from ponder.errors import UsageError
from ponder.signals import SIGNALS, SignalName

TOLERANCE = 0.01  # accuracy a setting may give up against majority@n on the train pool
ORDERS = 16  # replays per problem while tuning (the stored order and 15 permutations)


@dataclass(frozen=True)
class Setting:
    """One stopping rule with its settings and wave, a plain vote over `fixed` samples, or
    DeepConf online (neither `rule` nor `fixed`)."""

    family: str
    label: str
    wave: int
    rule: StoppingRule | None = None
    percentile: float = 10.0
    consensus: float = 0.95
    fixed: int | None = None

    def replay(self, pool: PoolSignals, n: int, orders: int) -> Replayed:
        if self.fixed is not None:
            return replay_fixed(pool, self.fixed)
        if self.rule is None:
            return replay_online(
                pool,
                self.label,
                n=n,
                wave=self.wave,
                orders=orders,
                percentile=self.percentile,
                consensus=self.consensus,
            )
        return replay_rule(pool, self.label, self.rule, n=n, wave=self.wave, orders=orders)


def fixed_votes(n: int) -> list[Setting]:
    """A plain vote over each number of samples up to `n`: what a stopping rule must beat
    (a rule is worth its bookkeeping only if it writes fewer tokens than the smaller fixed
    vote of the same accuracy)."""
    return [Setting("fixed vote", f"vote@{k}", k, fixed=k) for k in range(1, n + 1)]


# PriceStop's prices tried (accuracy per generated token): from stopping after one sample on
# most problems to drawing nearly the whole budget, for answers of a few hundred tokens
PRICES = (2e-3, 1e-3, 7e-4, 5e-4, 3e-4, 2e-4, 1.5e-4, 1e-4, 5e-5)


def grid(
    waves: Sequence[int] = (2, 4), give_ups: Sequence[int | None] = (None, 4, 6)
) -> list[Setting]:
    """The settings tried: each rule's threshold over a range that reaches far below its
    default, each minimum of samples a rule may stop after, each wave; each again giving up
    after `give_ups` samples with no two answers alike (a family of its own, "beta+give-up")."""
    out: list[Setting] = []
    for wave in waves:
        for give_up in give_ups:
            out += _rules(wave, give_up)
        for pct in (10.0, 50.0, 90.0):
            for c in (0.5, 0.6, 0.75, 0.9, 0.95):
                label = f"deepconf(percentile={pct:g}, consensus={c}, wave={wave})"
                out.append(Setting("deepconf", label, wave, None, pct, c))
    # the price rule's point is to stop after one sample where that suffices: also in waves of 1
    for wave in sorted({1, *waves}):
        for price in PRICES:
            label = f"price(price={price:g}, wave={wave})"
            out.append(Setting("price", label, wave, PriceStop(price=price)))
    return out


def _rules(wave: int, give_up: int | None) -> list[Setting]:
    out: list[Setting] = []
    suffix = "" if give_up is None else "+give-up"
    extra = "" if give_up is None else f", give up after {give_up}"

    def add(family: str, rule: StoppingRule, label: str) -> None:
        out.append(Setting(family + suffix, f"{family}({label}{extra}, wave={wave})", wave, rule))

    for window in (2, 3, 4):
        add("esc", ESC(window=window, give_up_after=give_up), f"window={window}")
    for m in (2, 3, 4):
        for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
            add(
                "beta",
                BetaStop(threshold=t, min_samples=m, give_up_after=give_up),
                f"threshold={t}, min={m}",
            )
        for share in (0.5, 0.6, 0.75, 0.9):
            add(
                "agreement",
                Agreement(share=share, min_samples=m, give_up_after=give_up),
                f"share={share}, min={m}",
            )
        for t in (0.5, 0.6, 0.75, 0.9, 0.95):
            add(
                "weighted",
                WeightedConsensus(threshold=t, min_samples=m, give_up_after=give_up),
                f"threshold={t}, min={m}",
            )
    return out


@dataclass
class Baseline:
    """Majority vote over the whole pool of n on one pool's problems."""

    point: Point
    generated: float  # completion tokens per problem
    tokens: float  # tokens computed per problem (prompt not cached + completion)


@dataclass
class Choice:
    setting: Setting
    train: Replayed
    test: Replayed
    kept: int  # the family's settings within tolerance on train

    def difference(self, test_vote: Baseline) -> tuple[float, float, float]:
        """Test accuracy minus majority@n's, with its 95% paired bootstrap interval."""
        return paired(self.test.point, test_vote.point)


@dataclass
class Tuning:
    n: int  # the settings' budget of samples
    tolerance: float
    train_vote: Baseline
    test_vote: Baseline
    tried: list[tuple[Setting, Replayed]]  # every setting on the train pool
    chosen: list[Choice]  # one per family
    vote_n: int  # the samples of the majority vote a setting must match
    reference: str | None = None  # that vote's pool, when not the settings' own


@dataclass(frozen=True)
class Reference:
    """Majority vote over another pool of the same problems (chain-of-thought samples, say,
    while the rules run on tool-integrated ones): the vote the settings must match, on the
    train problems, and are judged against on the test ones. Both pools of a pair come from
    one store, so their problems pair up."""

    train: PoolSignals
    test: PoolSignals
    n: int | None = None  # the vote's samples [the smaller of the two pools' largest]


def baseline(pool: PoolSignals, n: int) -> Baseline:
    """Majority@n on the problems of `pool` that have n samples."""
    g = pool.group
    vote = next((p for p in points(g) if p.method == "vote" and p.k == n), None)
    if vote is None:
        raise UsageError(f"the pool {g.label} has no majority vote at {n} samples")
    rows = np.flatnonzero(g.sizes >= n)
    generated = pool.completion[rows, :n].sum(axis=1)
    spent = pool.spent[rows, :n].sum(axis=1)
    return Baseline(vote, float(generated.mean()), float(spent.mean()))


def _largest(a: PoolSignals, b: PoolSignals) -> int:
    return min(int(a.group.sizes.max()), int(b.group.sizes.max()))


def tune_stopping(
    train: PoolSignals,
    test: PoolSignals,
    *,
    n: int | None = None,
    tolerance: float = TOLERANCE,
    orders: int = ORDERS,
    settings: Sequence[Setting] | None = None,
    reference: Reference | None = None,
) -> Tuning:
    """Each family's setting chosen on `train` (see the module docstring), judged on `test`,
    against majority@n of the same pools or, given a `reference`, majority vote over its pools.
    Every number is on the problems where each pool involved is full (n samples, or the
    reference's n), row for row. The default settings are `fixed_votes(n)` and `grid()`."""
    if not 0.0 <= tolerance < 1.0:
        raise UsageError(f"tolerance must be in [0, 1) (got {tolerance})")
    n = n or _largest(train, test)
    if train is test:
        raise UsageError("train and test are the same pool: tune on train problems")
    if not (train.group.sizes >= n).any() or not (test.group.sizes >= n).any():
        raise UsageError(f"both pools need problems with {n} samples")
    if reference is None:
        vote_n = n
        train = train.take(np.flatnonzero(train.group.sizes >= n))
        test = test.take(np.flatnonzero(test.group.sizes >= n))
        train_ref, test_ref = train, test
    else:
        if reference.train is reference.test:
            raise UsageError("the reference's train and test are the same pool")
        vote_n = reference.n or _largest(reference.train, reference.test)
        train, train_ref = aligned(train, n, reference.train, vote_n)
        test, test_ref = aligned(test, n, reference.test, vote_n)
    online = online_replayable(train, n) and online_replayable(test, n) and n > DEEPCONF_WARMUP
    tried = [
        (s, s.replay(train, n, orders))
        for s in (settings if settings is not None else [*fixed_votes(n), *grid()])
        if s.rule is not None or s.fixed is not None or online
    ]
    train_vote, test_vote = baseline(train_ref, vote_n), baseline(test_ref, vote_n)
    chosen = []
    for family in dict.fromkeys(s.family for s, _ in tried):
        mine = [(s, r) for s, r in tried if s.family == family]
        kept = [
            (s, r) for s, r in mine if r.point.accuracy >= train_vote.point.accuracy - tolerance
        ]
        if kept:
            best = min(kept, key=lambda sr: (float(sr[1].generated.mean()), -sr[1].point.accuracy))
        else:
            best = max(mine, key=lambda sr: (sr[1].point.accuracy, -float(sr[1].generated.mean())))
        setting, on_train = best
        chosen.append(Choice(setting, on_train, setting.replay(test, n, orders), len(kept)))
    label = None if reference is None else train_ref.group.label
    return Tuning(n, tolerance, train_vote, test_vote, tried, chosen, vote_n, label)


# -- selection rules --------------------------------------------------------------------------
# Signals a DeepConf filter may weigh a vote by: positive confidences (the others are negative
# scores: log-probability, negative entropy, negative length)
POSITIVE: tuple[SignalName, ...] = ("mean", "lowest_group", "bottom10", "tail", "self_certainty")


@dataclass(frozen=True)
class Selector:
    family: str
    label: str
    rule: SelectionRule
    signal: SignalName

    def at(self, pool: PoolSignals, k: int, resamples: int = 2000) -> Point:
        per = selected_at(pool.group, pool.signals[self.signal], k, weigher(self.rule))
        return point_of(pool.group, self.label, k, per, float(k), resamples)


def selection_grid() -> list[Selector]:
    """Each selection rule over its parameter and every signal it can read."""
    out: list[Selector] = []
    for signal in SIGNALS:
        for t in (0.1, 0.3, 1.0, 3.0):
            label = f"cisc(temperature={t}) · {signal}"
            out.append(Selector("cisc", label, ConfidenceWeighted(temperature=t), signal))
        for p in (0.5, 1.0, 2.0):
            label = f"borda(p={p}) · {signal}"
            out.append(Selector("borda", label, SelfCertaintyBorda(p=p), signal))
    for positive in POSITIVE:
        for keep in (0.1, 0.3, 0.5, 0.7, 0.9):
            label = f"deepconf(keep={keep}) · {positive}"
            out.append(Selector("deepconf", label, DeepConfFilter(keep=keep), positive))
    return out


@dataclass
class Selected:
    k: int
    selector: Selector
    train: Point
    test: Point
    train_vote: Point
    test_vote: Point

    def difference(self) -> tuple[float, float, float]:
        """Test accuracy minus majority@k's, with its 95% paired bootstrap interval."""
        return paired(self.test, self.test_vote)


def tune_selection(
    train: PoolSignals,
    test: PoolSignals,
    *,
    ks: Sequence[int] = (8, 16),
    selectors: Sequence[Selector] | None = None,
) -> list[Selected]:
    """Per k and per family, the selector most accurate on `train`, judged on `test`."""
    if train is test:
        raise UsageError("train and test are the same pool: tune on train problems")
    if not (train.has_signals and test.has_signals):
        raise UsageError("both pools need confidence signals (samples stored with logprobs)")
    votes = {
        name: {p.k: p for p in points(pool.group) if p.method == "vote"}
        for name, pool in (("train", train), ("test", test))
    }
    out = []
    for k in ks:
        if k not in votes["train"] or k not in votes["test"]:
            raise UsageError(f"both pools need majority vote at k = {k} (a pool of at least {k})")
        on_train = [(s, s.at(train, k)) for s in (selectors or selection_grid())]
        for family in dict.fromkeys(s.family for s, _ in on_train):
            mine = [(s, p) for s, p in on_train if s.family == family]
            best, point = max(mine, key=lambda sp: sp[1].accuracy)  # first of equals: the grid's
            out.append(
                Selected(k, best, point, best.at(test, k), votes["train"][k], votes["test"][k])
            )
    return out
