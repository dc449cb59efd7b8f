"""What the consensus rules read from a sample: its answer class, its cost, its confidence.

Rules see only these small records, not candidates, so the same rule runs live (on samples as
they finish) and offline (replayed on a stored pool) and is tested on hand-made numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ponder.answers import cluster
from ponder.errors import UsageError
from ponder.signals import SIGNALS
from ponder.types import Candidate

# Confidence weights are clamped at this, so a vote weight is always positive.
EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Observation:
    """One finished sample as a rule sees it."""

    answer: int | None  # its answer's equivalence class; None: the sample gave no answer
    tokens: int  # completion tokens the sample cost
    confidence: float | None = None  # its trace confidence by the chosen signal, if any


@dataclass(frozen=True, slots=True)
class Trace:
    """One sample with its per-token DeepConf confidences (`TokenStats.confidence`), for the
    rules that watch a trace while it is written (DeepConf online)."""

    answer: int | None
    tokens: int
    confidence: np.ndarray


def _signal_name(signal: str | None) -> None:
    if signal is not None and signal not in SIGNALS:
        raise UsageError(f"unknown confidence signal {signal!r}: one of {', '.join(SIGNALS)}")


def observations(
    candidates: Sequence[Candidate], kind: str | None = None, signal: str | None = None
) -> list[Observation]:
    """An Observation per candidate: equivalent answers share a class id (first-seen order),
    the confidence is the candidate's `signal` score (None without a signal or without it)."""
    _signal_name(signal)
    ids = cluster([c.answer for c in candidates], kind or "math")
    return [
        Observation(
            answer=cid,
            tokens=c.completion_tokens,
            confidence=c.signals.get(signal) if signal and c.signals else None,
        )
        for c, cid in zip(candidates, ids, strict=True)
    ]


def traces(candidates: Sequence[Candidate], kind: str | None = None) -> list[Trace]:
    """A Trace per candidate (an empty confidence array when it has no token statistics)."""
    ids = cluster([c.answer for c in candidates], kind or "math")
    return [
        Trace(
            answer=cid,
            tokens=c.completion_tokens,
            confidence=c.stats.confidence if c.stats is not None else np.zeros(0, np.float32),
        )
        for c, cid in zip(candidates, ids, strict=True)
    ]


def answered(pool: Sequence[Observation]) -> list[Observation]:
    """The observations that vote: those with an answer."""
    return [o for o in pool if o.answer is not None]


def totals(pool: Sequence[Observation], weights: Sequence[float]) -> dict[int, float]:
    """The summed weight per answer class, in first-seen order; no answer votes for nothing."""
    votes: dict[int, float] = {}
    for o, w in zip(pool, weights, strict=True):
        if o.answer is not None:
            votes[o.answer] = votes.get(o.answer, 0.0) + w
    return votes


def leader(votes: dict[int, float]) -> tuple[int | None, bool]:
    """(the class with the most weight, whether others tie with it); a tie goes to the class
    seen first, so the choice is deterministic."""
    if not votes:
        return None, False
    top = max(votes.values())
    leaders = [cid for cid, v in votes.items() if v == top]  # dicts keep first-seen order
    return leaders[0], len(leaders) > 1


def confidences(pool: Sequence[Observation]) -> tuple[list[float] | None, str | None]:
    """Each observation's confidence, those without one given the mean of those with one (and a
    note saying how many); None when none has one (the caller falls back and says so)."""
    known = [o.confidence for o in pool if o.confidence is not None]
    if not known:
        return None, None
    if len(known) == len(pool):
        return known, None
    mean = float(np.mean(known))
    note = f"{len(pool) - len(known)} of {len(pool)} without confidence weigh the mean {mean:.3f}"
    return [mean if o.confidence is None else o.confidence for o in pool], note
