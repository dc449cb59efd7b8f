"""Weights and resampling for particle methods (sequential Monte Carlo over partial solutions).

- `softmax_weights`: process scores → normalized weights, with a temperature (lower: greedier).
- `effective_sample_size`: 1 / Σ w², between 1 (one particle holds all the weight) and N.
- `systematic_resample`: N indices drawn with one uniform offset and N evenly spaced pointers
  into the weights' cumulative sum; index i appears ⌊N·w_i⌋ or ⌈N·w_i⌉ times, so the expected
  count is exactly N·w_i with the least variance of the standard schemes (Douc et al., 2005).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def softmax_weights(scores: Sequence[float], temperature: float = 1.0) -> list[float]:
    """Normalized weights ∝ exp(score / temperature). Temperature 0 puts all weight on the top
    score (shared equally on ties)."""
    if not scores:
        raise ValueError("no scores to weigh")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (got {temperature})")
    top = max(scores)
    if temperature == 0:
        winners = [1.0 if s == top else 0.0 for s in scores]
        return [w / sum(winners) for w in winners]
    raw = [math.exp((s - top) / temperature) for s in scores]  # shifted: no overflow
    total = sum(raw)
    return [r / total for r in raw]


def effective_sample_size(weights: Sequence[float]) -> float:
    """1 / Σ w² of normalized weights."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("weights must have a positive sum")
    return 1.0 / sum((w / total) ** 2 for w in weights)


def systematic_resample(
    weights: Sequence[float], rng: random.Random, n: int | None = None
) -> list[int]:
    """`n` (default: len(weights)) ancestor indices, in increasing order."""
    total = sum(weights)
    if not weights or total <= 0 or any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative with a positive sum")
    n = len(weights) if n is None else n
    u = rng.random() / n
    out: list[int] = []
    cumulative = weights[0] / total
    i = 0
    for j in range(n):
        pointer = u + j / n
        while pointer > cumulative and i < len(weights) - 1:
            i += 1
            cumulative += weights[i] / total
        out.append(i)
    return out


def should_resample(weights: Sequence[float], threshold: float) -> bool:
    """Resample when the effective sample size falls below `threshold` × N (0: never; 1:
    whenever the weights are not all equal)."""
    if threshold <= 0:
        return False
    return effective_sample_size(weights) < threshold * len(weights) - 1e-12
