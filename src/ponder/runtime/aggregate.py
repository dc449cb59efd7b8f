"""Turning step scores into one score, and score transforms (Lightman et al. use the min or
product of step scores; "last" trusts the final step; deltas reward progress)."""

from __future__ import annotations

import math
from collections.abc import Sequence

AGGREGATES = ("min", "last", "prod", "mean")


def check_aggregate(how: str, what: str = "aggregate") -> str:
    """`how` if it names an aggregate, else a ValueError listing them."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown {what} '{how}' (choose from: {', '.join(AGGREGATES)})")
    return how


def aggregate(scores: Sequence[float | None], how: str = "min") -> float | None:
    """One score from step scores; unscored steps are left out; None if none is scored."""
    check_aggregate(how)
    xs = [s for s in scores if s is not None]
    if not xs:
        return None
    if how == "min":
        return min(xs)
    if how == "last":
        return xs[-1]
    if how == "prod":
        return math.prod(xs)
    return sum(xs) / len(xs)


def clip(scores: Sequence[float | None], lo: float, hi: float) -> list[float | None]:
    """Reward clipping: scores bounded to [lo, hi] (tames a PRM's over-confident outliers)."""
    if lo > hi:
        raise ValueError(f"clip range is empty: lo={lo} > hi={hi}")
    return [None if s is None else min(hi, max(lo, s)) for s in scores]


def deltas(scores: Sequence[float | None]) -> list[float | None]:
    """Delta transform: each step's score minus the previous scored step's (the first step is
    measured from 0), so a step is credited only for what it adds."""
    out: list[float | None] = []
    prev = 0.0
    for s in scores:
        if s is None:
            out.append(None)
            continue
        out.append(s - prev)
        prev = s
    return out


def rank_calibrated(scores: Sequence[float | None]) -> list[float | None]:
    """Scores replaced by their rank percentile in (0, 1] among the scored ones (ties share
    their mean rank), so verifiers on different scales can be mixed or compared."""
    scored = sorted((s, i) for i, s in enumerate(scores) if s is not None)
    out: list[float | None] = [None] * len(scores)
    n = len(scored)
    j = 0
    while j < n:
        k = j
        while k + 1 < n and scored[k + 1][0] == scored[j][0]:
            k += 1
        rank = (j + k) / 2 + 1  # mean 1-based rank of the tie group
        for t in range(j, k + 1):
            out[scored[t][1]] = rank / n
        j = k + 1
    return out
