"""Confidence in a stored pool: how well each signal separates right samples from wrong
(AUROC), what each confidence-based selection rule gets at every k, and what each stopping
rule costs and gets when replayed on the pool (ponder.consensus.replay) — all from one pool of
samples per problem, without running the model again.

Selection rules at k are expectations over the same k-subsets as the plain vote's (every
subset when few, else shared random ones), computed with the rules' own definitions
(ponder.consensus.selection) vectorized over subsets. Stopping rules are replayed in the
stored order and `orders − 1` seeded permutations of it, as the live strategies run them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ponder.bench.analysis import Group, Point, auroc, point_of
from ponder.bench.estimators import Pools, _dense_keys, _subsets, bootstrap_mean_ci, majority_at
from ponder.bench.store import Store
from ponder.consensus import (
    ESC,
    Agreement,
    BetaStop,
    ConfidenceWeighted,
    DeepConfFilter,
    Observation,
    SelectionRule,
    SelfCertaintyBorda,
    StoppingRule,
    Trace,
    WeightedConsensus,
    deepconf_online,
    expected,
)
from ponder.consensus.observations import EPSILON
from ponder.errors import UsageError
from ponder.signals import SIGNALS
from ponder.types import TokenStats

# (method, rule, signal): each confidence-based pooled strategy with its default settings
SELECTIONS: tuple[tuple[str, SelectionRule, str], ...] = (
    ("confidence_vote", ConfidenceWeighted(), "tail"),
    ("deepconf_filter", DeepConfFilter(keep=0.9), "tail"),
    ("deepconf_filter(keep=0.1)", DeepConfFilter(keep=0.1), "tail"),
    ("certainty_borda", SelfCertaintyBorda(), "self_certainty"),
)
# (label, rule): the adaptive strategy's stopping rules with their defaults
STOPPING: tuple[tuple[str, StoppingRule], ...] = (
    ("adaptive(rule=esc)", ESC(window=4)),
    ("adaptive(rule=beta)", BetaStop()),
    ("adaptive(rule=agreement)", Agreement()),
    ("adaptive(rule=weighted)", WeightedConsensus()),
)
WAVE = 4  # the adaptive strategies' default wave
ORDERS = 32  # replays per problem (the stored order and 31 permutations)
DEEPCONF_WARMUP = 4  # DeepConf online's warm-up traces (the live strategy's default)


@dataclass
class PoolSignals:
    """One pooled group's samples with what the stopping and selection rules read: per
    problem row, per sample (P × n, NaN / -2 for padding)."""

    group: Group
    completion: np.ndarray  # completion tokens
    spent: np.ndarray  # tokens computed (prompt not cached + completion)
    signals: dict[str, np.ndarray]  # trace score per signal, NaN where missing
    stats: list[list[TokenStats | None]] = field(default_factory=list)

    @property
    def has_signals(self) -> bool:
        return any(np.isfinite(v).any() for v in self.signals.values())

    def take(self, rows: np.ndarray) -> PoolSignals:
        """The same pool on the problem rows `rows` only (in that order)."""
        return PoolSignals(
            self.group.take(rows),
            self.completion[rows],
            self.spent[rows],
            {name: values[rows] for name, values in self.signals.items()},
            [self.stats[r] for r in rows] if self.stats else [],
        )


def aligned(a: PoolSignals, n_a: int, b: PoolSignals, n_b: int) -> tuple[PoolSignals, PoolSignals]:
    """Two pools of the same store cut to the problems where `a` has at least `n_a` samples
    and `b` at least `n_b`, row for row (so a rule on one and a vote on the other are paired
    problem by problem)."""
    full_a = {int(p): r for r, p in enumerate(a.group.pids) if a.group.sizes[r] >= n_a}
    full_b = {int(p): r for r, p in enumerate(b.group.pids) if b.group.sizes[r] >= n_b}
    common = sorted(set(full_a) & set(full_b))
    if not common:
        raise UsageError(
            f"no problem has {n_a} samples in {a.group.label} and {n_b} in {b.group.label}"
        )
    rows_a = np.array([full_a[p] for p in common], dtype=int)
    rows_b = np.array([full_b[p] for p in common], dtype=int)
    return a.take(rows_a), b.take(rows_b)


def load_signals(store: Store, group: Group, *, stats: bool = False) -> PoolSignals:
    """The pooled group's per-sample tokens and confidence signals (and, with `stats`, the
    per-token statistics DeepConf online replays from)."""
    rids = [r.rid for r in group.runs]
    marks = ",".join("?" * len(rids))
    rows = store.db.execute(
        "SELECT u.pid, u.policy_prompt - u.policy_cached + u.verifier_prompt - u.verifier_cached,"
        " c.completion_tokens, c.signals" + (", c.stats" if stats else ", NULL") + " FROM units u"
        " JOIN candidates c ON c.rid = u.rid AND c.pid = u.pid AND c.unit = u.unit AND c.idx = 0"
        f" WHERE u.rid IN ({marks}) ORDER BY u.pid, u.rid, u.unit",
        rids,
    ).fetchall()
    shape = group.classes.shape
    row_of = {int(p): i for i, p in enumerate(group.pids)}
    completion = np.zeros(shape)
    spent = np.zeros(shape)
    signals: dict[str, np.ndarray] = {s: np.full(shape, np.nan) for s in SIGNALS}
    per: list[list[TokenStats | None]] = [[] for _ in group.pids]
    seen = np.zeros(len(group.pids), dtype=int)
    for pid, prompt, tokens, sig, blob in rows:
        r = row_of[int(pid)]
        j = seen[r]
        seen[r] += 1
        completion[r, j] = tokens
        spent[r, j] = prompt + tokens
        for name, value in (json.loads(sig).get("scores", {}) if sig else {}).items():
            if name in signals:
                signals[name][r, j] = value
        per[r].append(TokenStats.from_bytes(blob) if blob else None)
    return PoolSignals(group, completion, spent, signals, per if stats else [])


# -- signal quality -----------------------------------------------------------------------
@dataclass
class SignalQuality:
    signal: str
    samples: int
    auroc: float | None


def signal_quality(pool: PoolSignals) -> list[SignalQuality]:
    """AUROC of each signal against the samples' correctness, over every sample with it."""
    out = []
    real = pool.group.classes >= -1
    for name in SIGNALS:
        values = pool.signals[name]
        ok = real & np.isfinite(values)
        if not ok.any():
            continue
        out.append(SignalQuality(name, int(ok.sum()), auroc(values[ok], pool.group.correct[ok])))
    return out


# -- selection rules at k -------------------------------------------------------------------
Weigh = Callable[[np.ndarray, np.ndarray], np.ndarray]


def weigher(rule: SelectionRule) -> Weigh:
    """The rule's vote weights for subsets at once: (confidence, answered) → weights, each
    (..., k), as ponder.consensus.selection defines them (only answered samples vote; one
    without a confidence weighs the mean of the others'; none with one: a plain vote)."""

    def weigh(conf: np.ndarray, answered: np.ndarray) -> np.ndarray:
        known = answered & np.isfinite(conf)
        count = known.sum(-1, keepdims=True)
        mean = np.where(count > 0, np.where(known, conf, 0.0).sum(-1, keepdims=True), 0.0)
        mean = mean / np.maximum(count, 1)
        c = np.where(known, conf, mean)
        plain = np.where(answered, 1.0, 0.0)
        if isinstance(rule, ConfidenceWeighted):
            z = np.where(answered, c / rule.temperature, -np.inf)
            top = np.max(np.where(answered, z, -np.inf), axis=-1, keepdims=True)
            w = np.where(answered, np.exp(z - np.where(np.isfinite(top), top, 0.0)), 0.0)
        else:
            n = answered.sum(-1, keepdims=True)
            # rank among the answered: most confident first, ties to the earlier sample
            key = np.where(answered, -c, np.inf)
            order = np.argsort(key, axis=-1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(c.shape[-1]), axis=-1)
            if isinstance(rule, DeepConfFilter):
                kept = np.maximum(1, np.ceil(np.round(rule.keep * n, 9)))
                w = np.where(answered & (rank < kept), np.maximum(c, EPSILON), 0.0)
            elif isinstance(rule, SelfCertaintyBorda):
                w = np.where(answered, np.maximum(n - rank, 0).astype(float) ** rule.p, 0.0)
            else:
                w = plain
        return np.where(count > 0, w, plain)

    return weigh


def selected_at(
    group: Group, confidence: np.ndarray, k: int, weigh: Weigh, *, max_work: float = 2e7
) -> np.ndarray:
    """Expected correctness per problem of a weighted vote over k-subsets of each pool (NaN
    where the pool is smaller than k); a tie goes to the class that voted first."""
    out = np.full(len(group.pids), np.nan)
    for size in np.unique(group.sizes):
        m = int(size)
        if m < k:
            continue
        rows = np.flatnonzero(group.sizes == size)
        subsets = _subsets(m, k, len(rows), max_work, 0).astype(np.intp)  # (D, k)
        block = max(1, int(_BLOCK // (subsets.size * m)))
        for a in range(0, len(rows), block):
            mine = rows[a : a + block]
            out[mine] = _vote_block(
                group.classes[mine, :m],
                group.correct[mine, :m],
                confidence[mine, :m],
                subsets,
                weigh,
            )
    return out


_BLOCK = 1 << 22  # elements of the (rows, subsets, k, classes) arrays voted at once


def _vote_block(
    keys: np.ndarray, correct: np.ndarray, conf: np.ndarray, subsets: np.ndarray, weigh: Weigh
) -> np.ndarray:
    k = subsets.shape[1]
    keys = _dense_keys(keys)  # class ids below m
    sk, sc, sf = keys[:, subsets], correct[:, subsets], conf[:, subsets]  # (R, D, k)
    answered = sk >= 0
    w = weigh(sf, answered)
    classes = np.arange(keys.shape[1])  # class ids are first-seen indices below m
    member = sk[..., None] == classes  # (R, D, k, C)
    counted = member & (w[..., None] > 0)
    sums = (w[..., None] * member).sum(-2)  # (R, D, C)
    voted = counted.any(-2)
    first = np.where(counted, np.arange(k)[:, None], k).min(-2)
    lead = voted & (sums == sums.max(-1, keepdims=True))
    winner = np.argmin(np.where(lead, first, k + 1), axis=-1)  # (R, D)
    right = (member & sc[..., None]).any(-2)  # the class is a right one
    hit = np.take_along_axis(right, winner[..., None], -1)[..., 0] & voted.any(-1)
    result: np.ndarray = hit.mean(-1)
    return result


def selection_points(pool: PoolSignals, *, resamples: int = 2000) -> list[Point]:
    """Each confidence-based selection rule at every k of the pool, as report points."""
    g = pool.group
    out = []
    for method, rule, signal in SELECTIONS:
        weigh = weigher(rule)
        for k in g.ks():
            per = selected_at(g, pool.signals[signal], k, weigh)
            out.append(point_of(g, f"{method} · {signal}", k, per, float(k), resamples))
    return out


# -- stopping rules, replayed ---------------------------------------------------------------
@dataclass
class Replayed:
    """A stopping rule replayed on a pool: per problem, expected accuracy, samples launched,
    and tokens computed (prompt not cached + completion), with the point it makes."""

    label: str
    samples: np.ndarray
    tokens: np.ndarray
    point: Point
    generated: np.ndarray  # completion tokens charged (what the model wrote)


def replay_points(
    pool: PoolSignals,
    *,
    budget: int | None = None,
    wave: int = WAVE,
    orders: int = ORDERS,
    resamples: int = 2000,
) -> list[Replayed]:
    """Every stopping rule (and DeepConf online, when the pool has per-token statistics)
    replayed on each problem's pool, up to `budget` samples (default: the whole pool)."""
    n = budget or int(pool.group.sizes.max())
    out = [
        replay_rule(pool, label, rule, n=n, wave=wave, orders=orders, resamples=resamples)
        for label, rule in STOPPING
    ]
    # DeepConf online needs a pool larger than its warm-up (e.g. not `N=2 scripts/demo.sh`)
    if n >= DEEPCONF_WARMUP and online_replayable(pool, n):
        out.append(
            replay_online(
                pool, "deepconf (online)", n=n, wave=wave, orders=orders, resamples=resamples
            )
        )
    return out


def replay_rule(
    pool: PoolSignals,
    label: str,
    rule: StoppingRule,
    *,
    n: int,
    wave: int = WAVE,
    orders: int = ORDERS,
    resamples: int = 2000,
    rolling: bool = False,
) -> Replayed:
    """One stopping rule replayed on every problem with a pool of at least `n` samples (in
    waves, or rolling: ponder.consensus.replay)."""
    g = pool.group

    def one(r: int, right: set[int]) -> tuple[float, float, float]:
        obs = [
            Observation(
                _class(g, r, j), int(pool.completion[r, j]), _finite(pool.signals["tail"][r, j])
            )
            for j in range(int(g.sizes[r]))
        ]
        got = expected(rule, obs, n, wave, orders, seed=int(g.pids[r]), rolling=rolling)
        return got.accuracy(right), got.samples, got.tokens

    return _replay_each(pool, label, n, resamples, one)


def replay_fixed(pool: PoolSignals, k: int, *, resamples: int = 2000) -> Replayed:
    """Plain majority vote over `k` samples, no stopping rule, on every problem with a pool of
    at least `k`: the mean over k-subsets (as the report's vote@k), k samples' tokens."""
    g = pool.group
    per = majority_at(Pools(keys=g.classes, scores=g.scores, correct=g.correct, sizes=g.sizes), k)

    def one(r: int, right: set[int]) -> tuple[float, float, float]:
        size = int(g.sizes[r])
        return float(per[r]), float(k), k * float(pool.completion[r, :size].mean())

    return _replay_each(pool, f"vote@{k}", k, resamples, one)


def online_replayable(pool: PoolSignals, n: int) -> bool:
    """Whether every problem with `n` samples kept the per-token statistics DeepConf online
    replays from."""
    rows = np.flatnonzero(pool.group.sizes >= n)
    return bool(pool.stats) and all(s is not None for r in rows for s in pool.stats[r][:n])


def replay_online(
    pool: PoolSignals,
    label: str,
    *,
    n: int,
    wave: int = WAVE,
    orders: int = ORDERS,
    resamples: int = 2000,
    warmup: int = DEEPCONF_WARMUP,
    percentile: float = 10.0,
    consensus: float = 0.95,
    window: int = 32,
) -> Replayed:
    """DeepConf online replayed on every problem with a pool of at least `n` samples."""
    g = pool.group

    def one(r: int, right: set[int]) -> tuple[float, float, float]:
        traces = [
            Trace(_class(g, r, j), int(pool.completion[r, j]), stats.confidence)
            for j, stats in enumerate(pool.stats[r][: int(g.sizes[r])])
            if stats is not None
        ]
        rng = np.random.default_rng(int(g.pids[r]))
        runs = []
        for o in range(orders):
            order = np.arange(len(traces)) if o == 0 else rng.permutation(len(traces))
            runs.append(
                deepconf_online(
                    [traces[int(x)] for x in order],
                    n,
                    warmup=warmup,
                    percentile=percentile,
                    consensus=consensus,
                    wave=wave,
                    window=window,
                )
            )
        return (
            float(np.mean([run.answer in right for run in runs])),
            float(np.mean([run.samples for run in runs])),
            float(np.mean([run.tokens for run in runs])),
        )

    return _replay_each(pool, label, n, resamples, one)


def _class(g: Group, r: int, j: int) -> int | None:
    c = int(g.classes[r, j])
    return None if c < 0 else c


def _replay_each(
    pool: PoolSignals,
    label: str,
    n: int,
    resamples: int,
    one: Callable[[int, set[int]], tuple[float, float, float]],
) -> Replayed:
    """`one(row, right classes)` → (expected accuracy, samples, generated tokens) for every
    problem with a pool of at least `n` samples, as a Replayed (tokens add the prompt)."""
    g = pool.group
    rows = np.flatnonzero(g.sizes >= n)
    acc, samples, generated, tokens = (np.zeros(len(rows)) for _ in range(4))
    for i, r in enumerate(rows):
        right = {int(c) for c, ok in zip(g.classes[r], g.correct[r], strict=True) if ok}
        acc[i], samples[i], generated[i] = one(int(r), right)
        tokens[i] = generated[i] + samples[i] * _prompt(pool, int(r))
    return _replayed(g, label, rows, acc, samples, generated, tokens, resamples)


def _prompt(pool: PoolSignals, r: int) -> float:
    """Problem row `r`'s mean prompt tokens computed per sample (not served from cache)."""
    size = int(pool.group.sizes[r])
    return float((pool.spent[r] - pool.completion[r])[:size].mean())


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _replayed(
    g: Group,
    label: str,
    rows: np.ndarray,
    acc: np.ndarray,
    samples: np.ndarray,
    generated: np.ndarray,
    tokens: np.ndarray,
    resamples: int,
) -> Replayed:
    mean, low, high = bootstrap_mean_ci(acc, resamples=resamples)
    per_token_seconds = g.cost["seconds"][rows] / np.maximum(g.cost["tokens"][rows], 1e-9)
    per_token_flops = g.cost["flops"][rows] / np.maximum(g.cost["tokens"][rows], 1e-9)
    per_token_dollars = g.cost["dollars"][rows] / np.maximum(g.cost["tokens"][rows], 1e-9)
    point = Point(
        task=g.task,
        model=g.model,
        method=f"{label} (replayed)",
        group=g.label,
        k=round(float(samples.mean())),
        problems=len(rows),
        accuracy=mean,
        low=low,
        high=high,
        tokens=float(tokens.mean()),
        flops=float((tokens * per_token_flops).mean()),
        dollars=float((tokens * per_token_dollars).mean()),
        seconds=float((tokens * per_token_seconds).mean()),
        per_problem=acc,
        pids=g.pids[rows],
    )
    return Replayed(label, samples, tokens, point, generated)


def paired(a: Point, b: Point, *, resamples: int = 2000) -> tuple[float, float, float]:
    """The mean accuracy difference a − b over the problems both have, with a 95% paired
    bootstrap interval."""
    common, ia, ib = np.intersect1d(a.pids, b.pids, return_indices=True)
    if not len(common):
        raise ValueError("no problem in common")
    return bootstrap_mean_ci(a.per_problem[ia] - b.per_problem[ib], resamples=resamples)
