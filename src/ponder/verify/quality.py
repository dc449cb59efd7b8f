"""Verifier quality against gold correctness: AUROC of scores, and what selection by the
verifier gets wrong (Stroebl et al.: an imperfect verifier caps what resampling can gain)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel


def auroc(scores: Sequence[float], correct: Sequence[bool]) -> float | None:
    """P(score of a random correct candidate > that of a random wrong one), ties counting one
    half (Mann-Whitney U / (n_pos n_neg)); None without both classes."""
    pos = [s for s, c in zip(scores, correct, strict=True) if c]
    neg = [s for s, c in zip(scores, correct, strict=True) if not c]
    if not pos or not neg:
        return None
    ranked = sorted(list(scores))
    # mean 1-based rank per distinct value
    rank: dict[float, float] = {}
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1] == ranked[i]:
            j += 1
        rank[ranked[i]] = (i + j) / 2 + 1
        i = j + 1
    u = sum(rank[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def best_index(scores: Sequence[float | None]) -> int | None:
    """Where best-of-n picks: the top score, the earliest on ties; None if nothing is scored."""
    scored = [(s, -i) for i, s in enumerate(scores) if s is not None]
    return -max(scored)[1] if scored else None


class SelectionQuality(BaseModel):
    problems: int
    auroc: float | None
    # Of the wrong candidates, the fraction scoring at or above their problem's selected score:
    # the false-positive rate at the selection point.
    false_positive_rate: float | None
    # Problems where some candidate was right but the top-scored one was wrong.
    missed: int
    coverage: int  # problems with at least one correct scored candidate
    selected_correct: int


def selection_quality(pools: Sequence[Sequence[tuple[float | None, bool]]]) -> SelectionQuality:
    """Quality over problems, each a pool of (score, correct) candidates; unscored candidates
    rank below every scored one, as best-of-n treats them."""
    flat_s: list[float] = []
    flat_c: list[bool] = []
    wrong = above = missed = coverage = chosen_right = 0
    for pool in pools:
        scored = [(s, c) for s, c in pool if s is not None]
        flat_s += [s for s, _ in scored]
        flat_c += [c for _, c in scored]
        best = best_index([s for s, _ in pool])
        if best is None:
            continue
        top, best_is_right = pool[best][0] or 0.0, pool[best][1]
        chosen_right += best_is_right
        covered = any(c for _, c in scored)
        coverage += covered
        missed += covered and not best_is_right
        wrong += sum(not c for _, c in scored)
        above += sum(not c and s >= top for s, c in scored)
    return SelectionQuality(
        problems=len(pools),
        auroc=auroc(flat_s, flat_c),
        false_positive_rate=above / wrong if wrong else None,
        missed=missed,
        coverage=coverage,
        selected_correct=chosen_right,
    )
