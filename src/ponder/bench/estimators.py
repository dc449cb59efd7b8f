"""Estimators over one pool of samples per problem (generate once at the largest n, evaluate
every smaller k), for many problems at once (per-problem arrays, NaN where the pool is smaller
than k), and bootstrap intervals over problems.

- pass@k: the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k).
- majority@k, weighted@k: the expected accuracy of the rule on k samples drawn without
  replacement from the pool, in pool order; exact (every k-subset) when affordable, else over
  shared random subsets.
- best-of-k: exact.

tests/estimator_reference.py keeps the one-pool scalar versions these are tested against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# Vectorized: many problems at once.

Sample = tuple[str | None, float | None, bool]


@dataclass(frozen=True, eq=False)
class Pools:
    """One row per problem, padded to the largest pool.

    keys: int32 (P, n), the answer-class id of each sample within its problem (-1: no answer,
    -2: padding); scores: float64 (P, n), NaN when unscored (and for padding); correct: bool
    (P, n); sizes: int64 (P,), the real pool size of each problem (its samples come first)."""

    keys: np.ndarray
    scores: np.ndarray
    correct: np.ndarray
    sizes: np.ndarray

    def __post_init__(self) -> None:
        shape = self.keys.shape
        if len(shape) != 2 or self.scores.shape != shape or self.correct.shape != shape:
            raise ValueError("keys, scores and correct must share one (problems, n) shape")
        if self.sizes.shape != shape[:1]:
            raise ValueError(f"sizes must have shape ({shape[0]},), got {self.sizes.shape}")
        if self.sizes.size and not 0 <= self.sizes.min() <= self.sizes.max() <= shape[1]:
            raise ValueError(f"pool sizes must lie in 0..{shape[1]}")

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @classmethod
    def from_lists(cls, pools: Sequence[Sequence[Sample]]) -> Pools:
        """From (answer key, score, correct) tuples as the scalar rules take; class ids are
        given per problem in order of first appearance."""
        p = len(pools)
        n = max((len(pool) for pool in pools), default=0)
        keys = np.full((p, n), -2, dtype=np.int32)
        scores = np.full((p, n), np.nan)
        correct = np.zeros((p, n), dtype=bool)
        for row, pool in enumerate(pools):
            ids: dict[str, int] = {}
            keys[row, : len(pool)] = [
                -1 if key is None else ids.setdefault(key, len(ids)) for key, _, _ in pool
            ]
            scores[row, : len(pool)] = [np.nan if s is None else s for _, s, _ in pool]
            correct[row, : len(pool)] = [c for _, _, c in pool]
        sizes = np.array([len(pool) for pool in pools], dtype=np.int64)
        return cls(keys=keys, scores=scores, correct=correct, sizes=sizes)


def pass_at(pools: Pools, k: int) -> np.ndarray:
    """Unbiased pass@k per problem (NaN where the pool has fewer than k samples):
    1 - C(n-c, k)/C(n, k) = 1 - prod_{j=n-c+1..n} (1 - k/j)."""
    _check_k(k)
    n = pools.sizes
    real = np.arange(pools.keys.shape[1]) < n[:, None]
    c = (pools.correct & real).sum(axis=1)
    j = np.arange(1, pools.keys.shape[1] + 1, dtype=float)
    in_product = (j > (n - c)[:, None]) & (j <= n[:, None])
    miss = np.where(in_product, 1.0 - k / j, 1.0).prod(axis=1)
    out: np.ndarray = np.where(n < k, np.nan, np.where(n - c < k, 1.0, 1.0 - miss))
    return out


def best_of_at(pools: Pools, k: int) -> np.ndarray:
    """Expected correctness of `best_of` over every k-subset of each pool (exact), NaN where
    the pool has fewer than k samples.

    Rank the pool: scored samples by (score desc, index asc), then unscored samples with an
    answer in pool order, then the rest. A subset's pick is its best-ranked member (with
    nothing scored in it, that is its first sample with an answer), so the sample ranked r
    (0-based) is the pick of C(n-1-r, k-1) of the C(n, k) subsets; samples in the last group
    are never a right pick."""
    _check_k(k)
    p, n = pools.keys.shape
    index = np.broadcast_to(np.arange(n), (p, n))
    scored = ~np.isnan(pools.scores)
    group = np.where(scored, 0, np.where(pools.keys >= 0, 1, 2))
    group = np.where(index < pools.sizes[:, None], group, 3)
    order = np.lexsort((index, np.where(scored, -pools.scores, 0.0), group), axis=-1)
    hit = np.take_along_axis(pools.correct & (group <= 1), order, axis=1)
    weight = np.zeros((n + 1, max(n, 1)))  # weight[m, r] for a pool of m samples
    for m in range(k, n + 1):
        total = math.comb(m, k)
        weight[m, : m - k + 1] = [math.comb(m - 1 - r, k - 1) / total for r in range(m - k + 1)]
    out: np.ndarray = np.where(pools.sizes < k, np.nan, (hit * weight[pools.sizes, :n]).sum(1))
    return out


def majority_at(pools: Pools, k: int, *, rng_seed: int = 0, max_work: float = 5e7) -> np.ndarray:
    """Expected correctness of `majority` on k samples drawn without replacement from each
    pool, in pool order; NaN where the pool has fewer than k samples.

    Pools whose answered samples are all right (or all wrong) have a closed form, and so does
    k <= 2. The others ("contested"), grouped by pool size m, are voted on every k-subset when
    problems * C(m, k) * k <= max_work, else on one shared set of D random k-subsets,
    D = max(64, max_work // (problems * k)) capped at 4096 (`rng_seed` picks them)."""
    return _vote_at(pools, k, weighted=False, rng_seed=rng_seed, max_work=max_work)


def weighted_at(pools: Pools, k: int, *, rng_seed: int = 0, max_work: float = 5e7) -> np.ndarray:
    """As `majority_at`, for the `weighted` rule (summed scores per class, a plain vote when
    every sample of the subset weighs 0)."""
    return _vote_at(pools, k, weighted=True, rng_seed=rng_seed, max_work=max_work)


def bootstrap_mean_ci(
    values: np.ndarray, *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of the non-NaN values: the percentile bootstrap over them.

    When the values take few distinct values (as per-problem rates over a fixed set of
    subsets do), each resample's counts of them are drawn as one multinomial: the same
    distribution as resampling indices, in O(distinct x resamples) instead of
    O(values x resamples). Many
    values with many distinct levels (thousands of problems) are bootstrapped on a grid of
    1/256 of their range, and the resample means shifted by what the rounding moved the mean:
    each resample mean moves by about (range/256)/sqrt(12 n), far less than the interval's own
    Monte Carlo noise."""
    x = np.asarray(values, dtype=float).ravel()
    x = x[~np.isnan(x)]
    if not x.size:
        raise ValueError("no values to estimate from")
    rng = np.random.default_rng(seed)
    distinct, counts = np.unique(x, return_counts=True)
    if len(distinct) * 12 <= len(x):  # a binomial draw costs about 12 index draws
        means = _means_by_level(distinct, counts, len(x), resamples, rng)
    elif len(x) > 12 * (_GRID + 1):
        low, span = float(x.min()), float(np.ptp(x))
        grid = np.round((x - low) / span * _GRID) * (span / _GRID) + low
        distinct, counts = np.unique(grid, return_counts=True)
        means = _means_by_level(distinct, counts, len(x), resamples, rng)
        means += x.mean() - grid.mean()
    else:
        per = max(1, (1 << 22) // len(x))
        means = np.concatenate(
            [
                x[rng.integers(0, len(x), size=(min(per, resamples - a), len(x)))].mean(axis=1)
                for a in range(0, resamples, per)
            ]
        )
    tail = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


_GRID = 256


def _means_by_level(
    distinct: np.ndarray, counts: np.ndarray, size: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Resample means of `size` draws from values `distinct` seen `counts` times: each
    resample's counts of the values are one multinomial draw."""
    drawn = rng.multinomial(size, counts / size, size=resamples)
    # an elementwise sum, not a matrix product: BLAS threads crawl on a busy 2-core machine
    means: np.ndarray = (drawn * distinct).sum(axis=1) / size
    return means


_MIN_DRAWS = 64
_MAX_DRAWS = 4096
_BLOCK = 1 << 17  # (subsets x classes x problems) elements per block: a few MB per array
_MAX_BITS = 52  # pools up to this size are voted with bitmasks (exact in float64 and uint64)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"need k >= 1 (got k={k})")


def _subsets(m: int, k: int, problems: int, max_work: float, seed: int) -> np.ndarray:
    """(D, k) sorted sample indices shared by all `problems` pools of size m: every k-subset
    if that is within `max_work`, else D random ones."""
    total = math.comb(m, k)
    draws = min(_MAX_DRAWS, max(_MIN_DRAWS, int(max_work // (problems * k))))
    index = np.int16 if m < 2**15 else np.intp  # every subset can be many
    if problems * total * k <= max_work or total <= draws:
        flat = itertools.chain.from_iterable(itertools.combinations(range(m), k))
        return np.fromiter(flat, dtype=index, count=total * k).reshape(total, k)
    rng = np.random.default_rng([seed, m, k])
    return np.sort(rng.random((draws, m)).argsort(axis=1)[:, :k], axis=1).astype(index)


def _vote_at(pools: Pools, k: int, *, weighted: bool, rng_seed: int, max_work: float) -> np.ndarray:
    _check_k(k)
    out = np.full(len(pools), np.nan)
    for size in np.unique(pools.sizes):
        m = int(size)
        if m < k:
            continue
        rows = np.flatnonzero(pools.sizes == size)
        keys = pools.keys[rows, :m]
        correct = pools.correct[rows, :m]
        answered: np.ndarray = keys >= 0
        if k == 1:  # one sample: the vote is that sample's answer, if it has one
            out[rows] = (correct & answered).mean(axis=1)
            continue
        # Where every answered sample is right (or every one wrong), any vote is right (wrong)
        # whenever the subset holds an answer, and C(m - answered, k) of the C(m, k) subsets
        # hold none: only contested pools need voting.
        right: np.ndarray = (correct & answered).any(axis=1)
        settled: np.ndarray = ~(answered & (correct != right[:, None])).any(axis=1)
        empty = np.array([math.comb(u, k) for u in range(m + 1)]) / math.comb(m, k)
        unanswered = m - answered[settled].sum(axis=1)
        out[rows[settled]] = right[settled] * (1.0 - empty[unanswered])
        contested = np.flatnonzero(~settled)
        if not contested.size:
            continue
        scores = pools.scores[rows[contested], :m]
        weights = np.nan_to_num(scores, nan=0.0) if weighted else None
        keys, correct = keys[contested], correct[contested]
        if k == 2:
            out[rows[contested]] = _vote_pairs(keys, weights, correct)
            continue
        keys = _dense_keys(keys)
        subsets = _subsets(m, k, contested.size, max_work, rng_seed)
        if weights is not None:
            hits = _weighted_split(keys, weights, correct, subsets)
        elif m <= _MAX_BITS:
            hits = _plurality_bits(keys, correct, subsets)
        else:
            hits = _vote_elements(keys, None, correct, subsets)
        out[rows[contested]] = hits
    return out


def _vote_pairs(keys: np.ndarray, weights: np.ndarray | None, correct: np.ndarray) -> np.ndarray:
    """The vote's mean hit rate over every pair i < j of each pool. The first sample wins
    unless it has no answer, or (weighted) the second has another answer and weighs more;
    with equal weights (both 0 included: a plain vote) the first seen wins."""
    p, m = keys.shape
    first, second = np.triu_indices(m, 1)
    hits = np.zeros(p)
    step = max(1, (1 << 20) // len(first))
    for a in range(0, p, step):
        rows = slice(a, a + step)
        key_i, key_j = keys[rows][:, first], keys[rows][:, second]
        takes_i = key_i >= 0
        if weights is not None:
            w = weights[rows]
            takes_i &= (key_j < 0) | (key_i == key_j) | (w[:, first] >= w[:, second])
        right_j = (key_j >= 0) & correct[rows][:, second]
        hits[rows] = np.where(takes_i, correct[rows][:, first], right_j).mean(axis=1)
    return hits


def _dense_keys(keys: np.ndarray) -> np.ndarray:
    """Class ids below m, as the bitmask and per-row counting code needs (-1 for no answer):
    as they are if already so, else each class named by the index of its first sample."""
    answered = keys >= 0
    p, m = keys.shape
    if not answered.any() or keys.max() < m:
        return np.where(answered, keys, -1)
    first = np.empty(keys.shape, dtype=np.intp)
    step = max(1, (1 << 22) // (m * m))
    for a in range(0, p, step):
        block = keys[a : a + step]
        first[a : a + step] = (block[:, :, None] == block[:, None, :]).argmax(axis=2)
    return np.where(answered, first, -1)


def _plurality_bits(keys: np.ndarray, correct: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """Mean hit rate of the plain vote over `subsets` (k >= 2) for pools of one size
    m <= _MAX_BITS (keys dense, -1 for no answer).

    Sample i is bit m-1-i, so a class's members in a subset form x = class mask & subset
    mask, and between two classes the larger x holds the earlier first sample. The plurality
    with the first-seen tie-break is then the max of (popcount(x), x) packed in one integer,
    and the winner is right iff x's top bit is a right sample's: iff (x & right) > (x & wrong).
    """
    p, m = keys.shape
    d, k = subsets.shape
    hits = np.zeros(p)
    unit = np.uint32 if k.bit_length() + m <= 32 else np.uint64
    bit = 2.0 ** (m - 1 - np.arange(m))  # exact powers of two; their sums too (m <= 52)
    subset_mask = sum(bit[subsets[:, j]] for j in range(k)).astype(unit)
    right = (correct * bit).sum(axis=1).astype(unit)
    keys, columns, merged = _columns(keys)
    kind = 2 * columns + merged
    for value in np.unique(kind):
        c = int(value) // 2
        group = np.flatnonzero(kind == value)
        for rows, block in _blocks(group, d, c):
            sample, problem = np.nonzero(keys[rows].T >= 0)
            flat = keys[rows].T[sample, problem] * len(rows) + problem  # (column, problem)
            masks = np.bincount(flat, weights=bit[sample], minlength=c * len(rows))
            x = masks.astype(unit).reshape(c, len(rows)) & subset_mask[block, None, None]
            votes = np.left_shift(np.bitwise_count(x), unit(m), dtype=unit)
            if value % 2:  # the merged singletons count 1 when present
                votes[:, -1, :] = np.left_shift(x[:, -1, :] != 0, unit(m), dtype=unit)
            votes |= x
            lead = votes.max(axis=1) & unit((1 << m) - 1)
            hits[rows] += ((lead & right[rows]) > (lead & ~right[rows])).sum(axis=0)
    hits /= d
    return hits


def _columns(keys: np.ndarray) -> tuple[np.ndarray, ...]:
    """(column of each sample, columns per problem, whether the last column holds merged
    singletons): the classes of two or more samples renumbered 0.., and the classes of one
    sample all in one last column. Such a class counts 1 wherever it is present, so only the
    earliest present one can win: the max over (count capped at 1, mask) of that column."""
    p, m = keys.shape
    answered = keys >= 0
    slot = (np.where(answered, keys, m) + (m + 1) * np.arange(p)[:, None]).ravel()
    count = np.bincount(slot, minlength=p * (m + 1)).reshape(p, m + 1)
    count[:, m] = 0  # the no-answer slot
    keep = count >= 2
    kept = keep.sum(axis=1)
    single = (count == 1).any(axis=1)
    before = np.cumsum(keep.ravel(), dtype=np.int32).reshape(p, m + 1)
    first = before[:, m] - kept  # kept classes in earlier rows
    column = np.where(keep, before - 1 - first[:, None], kept[:, None]).ravel()[slot]
    return np.where(answered.ravel(), column, -1).reshape(p, m), kept + single, single


def _weighted_split(
    keys: np.ndarray, weights: np.ndarray, correct: np.ndarray, subsets: np.ndarray
) -> np.ndarray:
    """Mean hit rate of the weighted vote over `subsets` for pools of one size (keys dense,
    -1 for no answer).

    With weights >= 0 and each class all right or all wrong, the winner is right iff the top
    sum of a right class beats the top sum of a wrong one (absent classes sum to 0, which no
    present class undercuts); equal tops (including 0 = 0: nothing weighs anything, or no
    answer) are voted exactly by `_vote_rows`. Class sums are added subset by subset in
    subset order (with exact zeros for non-members), so they equal the scalar rule's sums bit
    for bit; a class of one sample sums to its weight, so those need only the heaviest
    present on each side. Other pools go to `_vote_elements`."""
    p, m = keys.shape
    d, k = subsets.shape
    hits = np.zeros(p)
    answered = keys >= 0
    slot = (np.where(answered, keys, m) + (m + 1) * np.arange(p)[:, None]).ravel()
    size = np.bincount(slot, minlength=p * (m + 1)).reshape(p, m + 1)[:, :m]
    rights = np.bincount(slot, weights=correct.ravel(), minlength=p * (m + 1))
    rights = rights.reshape(p, m + 1)[:, :m]
    nice = ((rights == 0) | (rights == size)).all(axis=1) & (weights >= 0).all(axis=1)
    right_multi = (size >= 2) & (rights > 0)
    wrong_multi = (size >= 2) & (rights == 0)
    n_right, n_wrong = right_multi.sum(axis=1), wrong_multi.sum(axis=1)
    column = np.where(
        right_multi,
        np.cumsum(right_multi, axis=1) - 1,
        np.where(wrong_multi, n_right[:, None] + np.cumsum(wrong_multi, axis=1) - 1, -1),
    )
    key = np.where(answered, keys, 0)
    col = np.where(answered, np.take_along_axis(column, key, axis=1), -1)
    lone = answered & (np.take_along_axis(size, key, axis=1) == 1)
    lone_right = np.where(lone & correct, weights, 0.0)
    lone_wrong = np.where(lone & ~correct, weights, 0.0)
    kind = n_right * (m + 1) + n_wrong
    for value in np.unique(kind[nice]):
        nr, nw = divmod(int(value), m + 1)
        group = np.flatnonzero(nice & (kind == value))
        for rows, block in _blocks(group, d, nr + nw + 2):
            sample, problem = np.nonzero(col[rows].T >= 0)
            heft = np.zeros((m, nr + nw, len(rows)))
            heft[sample, col[rows].T[sample, problem], problem] = weights[rows].T[sample, problem]
            chosen = subsets[block]
            best_right = np.zeros((len(chosen), len(rows)))
            best_wrong = np.zeros((len(chosen), len(rows)))
            if nr + nw:
                sums = heft[chosen[:, 0]] + heft[chosen[:, 1]]
                for j in range(2, k):
                    sums += heft[chosen[:, j]]
                if nr:
                    best_right = sums[:, :nr].max(axis=1)
                if nw:
                    best_wrong = sums[:, nr:].max(axis=1)
            for best, lone_w in ((best_right, lone_right[rows]), (best_wrong, lone_wrong[rows])):
                if (lone_w > 0).any():
                    lone_w = lone_w.T  # (sample, problem)
                    for j in range(k):
                        np.maximum(best, lone_w[chosen[:, j]], out=best)
            won = best_right > best_wrong
            tie = np.nonzero(best_right == best_wrong)
            if tie[0].size:
                pick = (rows[tie[1]][:, None], chosen[tie[0]])
                won[tie] = _vote_rows(keys[pick], weights[pick], correct[pick])
            hits[rows] += won.sum(axis=0)
    hits /= d
    odd = np.flatnonzero(~nice)
    if odd.size:
        hits[odd] = _vote_elements(keys[odd], weights[odd], correct[odd], subsets)
    return hits


def _blocks(rows: np.ndarray, d: int, width: int) -> Iterator[tuple[np.ndarray, slice]]:
    """(problems, subsets) chunks of about _BLOCK (problem, subset, column) elements."""
    step_d = min(d, max(1, _BLOCK // max(1, width)))
    step_p = max(1, _BLOCK // (max(1, width) * step_d))
    for a in range(0, len(rows), step_p):
        for b in range(0, d, step_d):
            yield rows[a : a + step_p], slice(b, b + step_d)


def _vote_elements(
    keys: np.ndarray, weights: np.ndarray | None, correct: np.ndarray, subsets: np.ndarray
) -> np.ndarray:
    """The vote's mean hit rate over `subsets`, sample by sample: for pools too large for
    bitmasks, and weighted pools with negative weights or classes of mixed correctness."""
    p, _ = keys.shape
    d, k = subsets.shape
    hits = np.zeros(p)
    step_d = min(d, max(1, _BLOCK // (k * k)))
    step_p = max(1, _BLOCK // (k * k * step_d))
    for a in range(0, p, step_p):
        rows = np.arange(a, min(p, a + step_p))
        for b in range(0, d, step_d):
            picked = (rows[:, None, None], subsets[None, b : b + step_d])
            w = None if weights is None else weights[picked].reshape(-1, k)
            won = _vote_rows(keys[picked].reshape(-1, k), w, correct[picked].reshape(-1, k))
            hits[rows] += won.reshape(len(rows), -1).sum(axis=1)
    hits /= d
    return hits


def _vote_rows(keys: np.ndarray, weights: np.ndarray | None, correct: np.ndarray) -> np.ndarray:
    """The vote on each row of (rows, k) samples in subset order, summing each class in that
    order exactly as the scalar rules do (adding exact zeros for the other classes)."""
    rows, k = keys.shape
    if weights is None:
        w = np.ones((rows, k))
    else:
        w = np.where((weights != 0).any(axis=1)[:, None], weights, 1.0)
    totals = np.zeros((rows, k))
    for j in range(k):
        totals += np.where(keys == keys[:, j : j + 1], w[:, j : j + 1], 0.0)
    answered = keys >= 0
    totals[~answered] = -np.inf
    won: np.ndarray = correct[np.arange(rows), totals.argmax(axis=1)] & answered.any(axis=1)
    return won
