"""Estimators from one pool: closed forms, brute-force enumeration, interval coverage."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estimator_reference import Rule, at_k, best_of, majority, pass_at_k, weighted
from ponder.bench.estimators import (
    Pools,
    _subsets,
    best_of_at,
    bootstrap_mean_ci,
    majority_at,
    pass_at,
    weighted_at,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "want"),
    [
        (10, 0, 1, 0.0),
        (10, 10, 3, 1.0),
        (10, 1, 1, 0.1),
        (10, 1, 5, 0.5),  # the right sample is among 5 of 10 half the time
        (4, 2, 2, 1 - 1 / 6),  # C(2,2)/C(4,2) of the pairs miss both
        (8, 3, 6, 1.0),  # fewer wrong samples than draws
    ],
)
def test_pass_at_k_known_cases(n: int, c: int, k: int, want: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(want)


@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))
    )
)
def test_pass_at_k_equals_enumerating_every_subset(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    flags = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(flags, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="need 0 <= c <= n"):
        pass_at_k(3, 4, 1)


POOLS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", None]),
        st.one_of(st.none(), st.floats(0, 1)),
        st.booleans(),
    ),
    min_size=1,
    max_size=7,
).map(lambda xs: [(key, s, key == "a") for key, s, _ in xs])  # "a" is the right answer


@settings(max_examples=40, deadline=None)
@given(POOLS, st.integers(1, 7))
def test_majority_weighted_and_best_of_k_match_brute_force(pool: list, k: int) -> None:  # type: ignore[type-arg]
    k = min(k, len(pool))
    for rule in (majority, weighted, best_of):
        subsets = list(itertools.combinations(pool, k))
        brute = sum(rule(list(s)) for s in subsets) / len(subsets)
        assert at_k(pool, k, rule) == pytest.approx(brute)  # the exact path
        # the subsampling path (used when subsets are too many to list) agrees within 5 sigma
        sampled = at_k(pool, k, rule, exact_limit=0, draws=2000, seed=k)
        assert abs(sampled - brute) <= 0.06


def test_sampled_estimate_is_close_to_the_exact_one() -> None:
    rng = random.Random(3)
    pool = [(rng.choice("abcd"), rng.random(), False) for _ in range(16)]
    pool = [(key, s, key == "a") for key, s, _ in pool]
    exact = at_k(pool, 8, majority, exact_limit=10**6)
    sampled = at_k(pool, 8, majority, exact_limit=0, draws=4000, seed=1)
    assert math.comb(16, 8) > 5000 and sampled == pytest.approx(exact, abs=0.03)


def test_majority_at_k_from_the_pool_is_not_pass_at_k() -> None:
    pool = [("b", None, False)] * 5 + [("a", None, True)] * 3
    assert at_k(pool, 1, majority) == pytest.approx(3 / 8)
    assert at_k(pool, 8, majority) == 0.0  # 5 b's outvote 3 a's
    assert pass_at_k(8, 3, 8) == 1.0


@settings(max_examples=60, deadline=None)
@given(POOLS)
def test_rules_pick_what_the_strategies_pick(pool: list) -> None:  # type: ignore[type-arg]
    from ponder.search import tally
    from ponder.types import Candidate

    cands = [Candidate(text="", answer=key, score=s) for key, s, _ in pool]
    voted, _, _ = tally(cands, [1.0] * len(cands), "math")
    assert majority(pool) == (voted == "a")
    w = [c.score or 0.0 for c in cands]
    if any(w):
        heaviest, _, _ = tally(cands, w, "math")
        assert weighted(pool) == (heaviest == "a")
    else:  # weighted_vote falls back to a plain vote, and so does the rule
        assert weighted(pool) == (voted == "a")


def test_rule_tie_breaks() -> None:
    assert majority([("b", None, False), ("a", None, True)]) is False  # first seen wins a tie
    assert weighted([("b", 0.4, False), ("a", 0.3, True), ("a", 0.2, True)]) is True
    assert best_of([("b", 0.5, False), ("a", 0.5, True)]) is False  # earliest of the top
    assert best_of([("b", None, False), ("a", 0.1, True)]) is True  # unscored rank last
    # nothing scored: the first sample with an answer, as best_of_n falls back
    assert best_of([(None, None, False), ("a", None, True), ("b", None, False)]) is True
    assert majority([(None, None, False)]) is False
    # nothing weighs anything: a plain vote (2 a's beat 1 b), not a tie of zero sums
    assert weighted([("b", 0.0, False), ("a", None, True), ("a", None, True)]) is True
    assert weighted([("b", None, False), ("a", 0.0, True)]) is False  # plain tie: first seen
    # an unanswered sample's weight counts for the fallback: all sums are 0, first seen wins
    assert weighted([("b", 0.0, False), ("a", None, True), (None, 0.5, False)]) is False


# Vectorized estimators over many problems: each must equal the scalar rules above, applied to
# every k-subset (exact) or to the same subsets (sampled).

SCORES = st.one_of(
    st.none(),
    st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 1 / 3, 1.0]),  # ties, and sums like 0.1 + 0.2
    st.floats(-1, 1),  # negative weights take the general path
)
SAMPLES = st.tuples(
    st.sampled_from(["a", "b", "c", None]), SCORES, st.sampled_from([False] * 9 + [True])
).map(lambda t: (t[0], t[1], (t[0] == "a") != t[2]))  # now and then a flag disagrees
MANY_POOLS = st.lists(st.lists(SAMPLES, min_size=1, max_size=7), min_size=1, max_size=5)
RULES = [(majority_at, majority), (weighted_at, weighted), (best_of_at, best_of)]


def _exact(pool: list, k: int, rule: Rule) -> float:  # type: ignore[type-arg]
    return at_k(pool, k, rule, exact_limit=10**9) if len(pool) >= k else math.nan


@settings(max_examples=150, deadline=None)
@given(MANY_POOLS, st.integers(1, 7))
def test_vectorized_estimators_equal_the_scalar_rules_on_every_subset(
    pools: list,  # type: ignore[type-arg]
    k: int,
) -> None:
    arrays = Pools.from_lists(pools)
    for vectorized, rule in RULES:
        got = vectorized(arrays, k)
        want = [_exact(pool, k, rule) for pool in pools]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=rule.__name__)
    want = [
        pass_at_k(len(pool), sum(c for *_, c in pool), k) if len(pool) >= k else math.nan
        for pool in pools
    ]
    np.testing.assert_allclose(pass_at(arrays, k), want, rtol=0, atol=1e-12)


def _pool(rng: random.Random, n: int, classes: str = "abcd") -> list:  # type: ignore[type-arg]
    pool = []
    for _ in range(n):
        key = rng.choice([*classes, None])
        score = rng.choice([None, 0.5, rng.random(), rng.random()])
        pool.append((key, score, key == "a"))
    return pool


def test_unequal_pool_sizes_and_pools_smaller_than_k() -> None:
    rng = random.Random(5)
    pools = [_pool(rng, n) for n in (3, 9, 5, 9, 12, 4)]
    arrays = Pools.from_lists(pools)
    assert arrays.keys.shape == (6, 12) and list(arrays.sizes) == [3, 9, 5, 9, 12, 4]
    assert (arrays.keys[0, 3:] == -2).all() and np.isnan(arrays.scores[0, 3:]).all()
    for k in (1, 2, 4, 5):
        for vectorized, rule in RULES:
            want = [_exact(pool, k, rule) for pool in pools]
            np.testing.assert_allclose(vectorized(arrays, k), want, rtol=0, atol=1e-9)
        assert np.isnan(pass_at(arrays, k)).tolist() == [len(p) < k for p in pools]


def test_pools_too_large_for_bitmasks_are_voted_sample_by_sample() -> None:
    rng = random.Random(8)
    pools = [_pool(rng, 54, "ab"), _pool(rng, 54, "abcdefgh")]
    arrays = Pools.from_lists(pools)
    for vectorized, rule in RULES:
        want = [_exact(pool, 3, rule) for pool in pools]
        np.testing.assert_allclose(vectorized(arrays, 3), want, rtol=0, atol=1e-9)


def test_class_ids_need_not_be_dense() -> None:
    pools = [[("x", 0.2, False), ("y", 0.9, True), (None, 0.5, False), ("y", 0.1, True)]]
    dense = Pools.from_lists(pools)
    sparse = Pools(
        keys=np.array([[700, 12, -1, 12]], dtype=np.int32),
        scores=dense.scores,
        correct=dense.correct,
        sizes=dense.sizes,
    )
    for k in (1, 2, 3, 4):
        assert majority_at(sparse, k) == pytest.approx(majority_at(dense, k))
        assert weighted_at(sparse, k) == pytest.approx(weighted_at(dense, k))


def test_sampled_votes_are_close_to_the_exact_ones() -> None:
    rng = random.Random(11)
    # contested pools (right and wrong answers both present), which are the ones sampled
    pools = [[("a", 0.4, True), ("b", 0.6, False), *_pool(rng, 14)] for _ in range(3)]
    arrays = Pools.from_lists(pools)
    k = 6
    for vectorized, rule in RULES[:2]:
        exact = vectorized(arrays, k)  # C(16, 6) * 6 * 3 problems is well under max_work
        np.testing.assert_allclose(exact, [_exact(p, k, rule) for p in pools], atol=1e-9)
        for max_work, draws in ((1.0, 64), (3 * k * 2000, 2000)):
            sampled = vectorized(arrays, k, max_work=max_work, rng_seed=4)
            sigma = np.sqrt(np.maximum(exact * (1 - exact), 0.01) / draws)
            assert (abs(sampled - exact) <= 4 * sigma).all(), (rule.__name__, draws)
            # the same shared subsets, voted one by one with the scalar rule
            subsets = _subsets(16, k, 3, max_work, 4)
            assert len(subsets) == draws
            by_hand = [np.mean([rule([p[i] for i in s]) for s in subsets]) for p in pools]
            np.testing.assert_allclose(sampled, by_hand, rtol=0, atol=1e-12)
    assert majority_at(arrays, k, max_work=1.0, rng_seed=4) == pytest.approx(
        majority_at(arrays, k, max_work=1.0, rng_seed=4)
    )


def test_estimators_reject_k_below_one() -> None:
    arrays = Pools.from_lists([[("a", 0.5, True)]])
    for estimator in (pass_at, best_of_at, majority_at, weighted_at):
        with pytest.raises(ValueError, match="k >= 1"):
            estimator(arrays, 0)


def test_bootstrap_mean_ci_ignores_nan_and_covers_the_truth() -> None:
    assert bootstrap_mean_ci(np.array([0.0, np.nan, 1.0, 1.0, np.nan]))[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_mean_ci(np.array([np.nan]))
    rng = np.random.default_rng(0)
    # few distinct values (drawn as multinomial counts) and continuous ones (resampled)
    for distinct, truth in ((True, 0.3), (False, 2 / 7)):
        covered = 0
        for t in range(150):
            values = rng.binomial(8, 0.3, 400) / 8 if distinct else rng.beta(2, 5, 400)
            _, lo, hi = bootstrap_mean_ci(values, resamples=1000, seed=t)
            covered += lo <= truth <= hi
        assert 0.88 <= covered / 150 <= 0.99


def test_bootstrap_of_many_distinct_values_matches_plain_resampling() -> None:
    # tens of thousands of distinct values take the gridded multinomial path
    rng = np.random.default_rng(3)
    x = rng.beta(2, 5, 20_000)
    mean, lo, hi = bootstrap_mean_ci(x, resamples=2000, seed=1)
    r = np.random.default_rng(2)
    plain = np.array([x[r.integers(0, len(x), len(x))].mean() for _ in range(2000)])
    want_lo, want_hi = np.quantile(plain, [0.025, 0.975])
    width = want_hi - want_lo
    assert mean == pytest.approx(x.mean())
    assert abs(lo - want_lo) < 0.1 * width and abs(hi - want_hi) < 0.1 * width
