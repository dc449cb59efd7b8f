"""What a router reads about a problem before deciding how much to spend on it: features of
the question (its length, its numbers) and of a cheap *probe*, the first few samples (how much
they agree, how confident and how long they are).

A probe is plain data (answer classes, lengths, confidence scores), so the same features are
computed live from the samples a strategy just drew and offline from a stored pool.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ponder.consensus.stopping import leader_stays
from ponder.signals import SIGNALS

# The trace scores a probe's confidence features average (ponder.signals; "length" is a
# feature of its own).
PROBE_SIGNALS = tuple(s for s in SIGNALS if s != "length")

QUESTION_FEATURES = (
    "q_log_chars",  # log(1 + characters)
    "q_numbers",  # numbers written in the question
    "q_distinct_numbers",
    "q_log_max_number",  # log10(1 + the largest number's magnitude)
    "q_decimals",  # numbers with a decimal point
    "q_percent",  # '%' or 'percent'
    "q_fractions",  # a/b, half, third, quarter
    "q_sentences",
)
PROBE_FEATURES = (
    "p_leader_share",  # the leading answer's votes / probe samples
    "p_answered",  # samples with an answer / probe samples
    "p_distinct",  # distinct answers / probe samples
    "p_leader_stays",  # P(the leader stays ahead of the runner-up): Beta stopping's statistic
    "p_log_length",  # mean log(1 + completion tokens)
    "p_length_spread",  # std / mean of the completion tokens
    *(f"s_{name}" for name in PROBE_SIGNALS),  # mean confidence score over the probe
    "s_tail_leader_gap",  # mean tail confidence of the leader's samples minus the others'
)
FEATURES = QUESTION_FEATURES + PROBE_FEATURES

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_FRACTION = re.compile(r"\d\s*/\s*\d|\bhalf\b|\bthirds?\b|\bquarters?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Probe:
    """The first samples of a problem as the router reads them: each one's answer class
    (None: no answer), completion tokens, and confidence scores (None: the backend gave no
    log-probabilities)."""

    classes: Sequence[int | None]
    tokens: Sequence[int]
    signals: Sequence[dict[str, float] | None]

    def __len__(self) -> int:
        return len(self.classes)


def question_features(question: str) -> dict[str, float]:
    numbers = [m.group(0).replace(",", "") for m in _NUMBER.finditer(question)]
    values = []
    for text in numbers:
        try:
            values.append(abs(float(text)))
        except ValueError:
            continue
    return {
        "q_log_chars": math.log1p(len(question)),
        "q_numbers": float(len(values)),
        "q_distinct_numbers": float(len(set(values))),
        "q_log_max_number": math.log10(1.0 + max(values, default=0.0)),
        "q_decimals": float(sum("." in t for t in numbers)),
        "q_percent": float(question.count("%") + question.lower().count("percent")),
        "q_fractions": float(len(_FRACTION.findall(question))),
        "q_sentences": float(max(1, len(re.findall(r"[.?!](?:\s|$)", question)))),
    }


def probe_features(probe: Probe) -> dict[str, float]:
    """The probe's features; a confidence feature is NaN when no probe sample has that score
    (the model fills it with its training mean)."""
    m = len(probe)
    if m == 0:
        raise ValueError("a probe needs at least one sample")
    votes: dict[int, int] = {}
    for c in probe.classes:
        if c is not None:
            votes[c] = votes.get(c, 0) + 1
    ranked = [*sorted(votes.values(), reverse=True), 0, 0]
    lead = max(votes, key=lambda c: votes[c]) if votes else None
    tokens = np.asarray(probe.tokens, dtype=float)
    out = {
        "p_leader_share": ranked[0] / m,
        "p_answered": sum(votes.values()) / m,
        "p_distinct": len(votes) / m,
        "p_leader_stays": leader_stays(ranked[0], ranked[1]) if votes else 0.0,
        "p_log_length": float(np.log1p(tokens).mean()),
        "p_length_spread": float(tokens.std() / tokens.mean()) if tokens.mean() > 0 else 0.0,
    }
    for name in PROBE_SIGNALS:
        values = [s[name] for s in probe.signals if s is not None and name in s]
        out[f"s_{name}"] = float(np.mean(values)) if values else math.nan
    mine = [
        s["tail"]
        for s, c in zip(probe.signals, probe.classes, strict=True)
        if s is not None and "tail" in s and c is not None and c == lead
    ]
    others = [
        s["tail"]
        for s, c in zip(probe.signals, probe.classes, strict=True)
        if s is not None and "tail" in s and (c is None or c != lead)
    ]
    if mine and others:
        out["s_tail_leader_gap"] = float(np.mean(mine) - np.mean(others))
    elif mine:
        out["s_tail_leader_gap"] = 0.0
    else:
        out["s_tail_leader_gap"] = math.nan
    return out


def features(question: str, probe: Probe, names: Sequence[str] = FEATURES) -> np.ndarray:
    """The named features of a question and its probe, in order (NaN: unknown)."""
    values = question_features(question) | probe_features(probe)
    return np.array([values[n] for n in names], dtype=float)
