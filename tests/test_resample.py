from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.search.resample import (
    effective_sample_size,
    should_resample,
    softmax_weights,
    systematic_resample,
)

WEIGHTS = st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=40).filter(
    lambda ws: sum(ws) > 1e-6
)


@settings(max_examples=200, deadline=None)
@given(WEIGHTS, st.integers(0, 2**31))
def test_each_count_is_the_floor_or_ceiling_of_n_times_its_weight(
    ws: list[float], seed: int
) -> None:
    n = len(ws)
    picks = systematic_resample(ws, random.Random(seed))
    assert len(picks) == n and picks == sorted(picks)
    total = sum(ws)
    for i, w in enumerate(ws):
        expected = n * w / total
        assert math.floor(expected - 1e-9) <= picks.count(i) <= math.ceil(expected + 1e-9)


def test_expected_counts_are_proportional_to_the_weights() -> None:
    rng = random.Random(0)
    ws = [0.05, 0.4, 0.15, 0.3, 0.1]
    trials = 4000
    counts = [0] * len(ws)
    for _ in range(trials):
        for i in systematic_resample(ws, rng):
            counts[i] += 1
    for i, w in enumerate(ws):
        mean = counts[i] / trials
        # each count is floor or ceil of 5w: its variance is at most 1/4, so the mean over
        # 4000 trials is within 4 standard errors (4 × 0.5 / sqrt(4000) ≈ 0.032)
        assert mean == pytest.approx(len(ws) * w, abs=0.032)


@given(WEIGHTS)
def test_effective_sample_size_lies_between_one_and_n(ws: list[float]) -> None:
    ess = effective_sample_size(ws)
    assert 1 - 1e-9 <= ess <= len(ws) + 1e-9


def test_effective_sample_size_extremes() -> None:
    assert effective_sample_size([1, 1, 1, 1]) == pytest.approx(4)
    assert effective_sample_size([0, 0, 3, 0]) == pytest.approx(1)


@given(WEIGHTS)
def test_threshold_zero_never_resamples(ws: list[float]) -> None:
    assert not should_resample(ws, 0.0)


def test_threshold_one_resamples_unequal_weights_only() -> None:
    assert should_resample([0.1, 0.9], 1.0)
    assert not should_resample([0.5, 0.5], 1.0)
    assert should_resample([0.01, 0.99], 0.6) and not should_resample([0.4, 0.6], 0.6)


def test_softmax_temperature() -> None:
    assert softmax_weights([0.2, 0.9, 0.9], 0.0) == [0.0, 0.5, 0.5]
    cool = softmax_weights([0.0, 1.0], 0.1)
    warm = softmax_weights([0.0, 1.0], 10.0)
    assert cool[1] > 0.99 and abs(warm[1] - 0.5) < 0.03
    assert sum(softmax_weights([1e6, 0.0], 1.0)) == pytest.approx(1.0)  # no overflow
    with pytest.raises(ValueError):
        systematic_resample([0.0, 0.0], random.Random(0))
