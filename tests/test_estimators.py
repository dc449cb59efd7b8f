"""Estimators from one pool: closed forms, brute-force enumeration, interval coverage."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.bench.estimators import at_k, best_of, bootstrap_ci, majority, pass_at_k, weighted


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


def test_bootstrap_intervals_cover_the_truth_at_about_the_nominal_rate() -> None:
    rng = random.Random(0)
    p, covered, trials = 0.3, 0, 300
    for t in range(trials):
        values = [float(rng.random() < p) for _ in range(100)]
        _, lo, hi = bootstrap_ci(values, resamples=1000, seed=t)
        covered += lo <= p <= hi
    assert 0.90 <= covered / trials <= 0.99


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


def test_rule_tie_breaks() -> None:
    assert majority([("b", None, False), ("a", None, True)]) is False  # first seen wins a tie
    assert weighted([("b", 0.4, False), ("a", 0.3, True), ("a", 0.2, True)]) is True
    assert best_of([("b", 0.5, False), ("a", 0.5, True)]) is False  # earliest of the top
    assert best_of([("b", None, False), ("a", 0.1, True)]) is True  # unscored rank last
    # nothing scored: the first sample with an answer, as best_of_n falls back
    assert best_of([(None, None, False), ("a", None, True), ("b", None, False)]) is True
    assert majority([(None, None, False)]) is False
