"""Confidence signals from a generation's own token log-probabilities.

Per token (from the top-k alternatives the backend returned with it):
- confidence C = −(1/k) Σⱼ log pⱼ over the top-k (DeepConf, arXiv 2508.15260): high when the
  model put its mass on one token, so the alternatives are improbable;
- entropy H = −Σⱼ p̃ⱼ log p̃ⱼ of the top-k renormalised;
- self-certainty S = KL(U ‖ p̃) = −log k − (1/k) Σⱼ log p̃ⱼ (Kang et al., 2025), over the same
  renormalised top-k;
- the chosen token's log-probability.

Per trace: the mean confidence, the lowest *group* confidence (the mean over a sliding window
of tokens), the mean of the bottom 10% of groups, the tail (the last window's mean), mean
self-certainty, negative mean entropy, the mean chosen log-probability and the length. Every
score is "higher = more confident", so every rule reads them the same way.

A trace without log-probabilities has no signals, and says why; a rule that needs them falls
back (and says so) instead of failing.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ponder.types import Signals, TokenLogprob, TokenStats

# Each trace score, higher = more confident. "length" is the negative token count (shorter
# answers are right more often on these models: AUROC 0.61 on a GSM8K pool of 590 samples).
SignalName = Literal[
    "mean",
    "lowest_group",
    "bottom10",
    "tail",
    "self_certainty",
    "neg_entropy",
    "logprob",
    "length",
]
SIGNALS: tuple[SignalName, ...] = get_args(SignalName)
# A logprob list covering less than this share of the completion's tokens is a truncated list:
# its scores would describe a different (shorter) trace.
MIN_COVERAGE = 0.5


class SignalSettings(BaseModel):
    """How trace scores are read from token statistics (plain data, in a strategy's config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    k: int = Field(default=20, ge=1, le=20, description="top-k log-probabilities per token")
    window: int = Field(
        default=32,
        ge=1,
        description="tokens per group for group confidence (DeepConf uses 2,048 for traces "
        "of ~10k tokens; these models write ~300)",
    )
    tail: int = Field(default=32, ge=1, description="tokens at the end for the tail score")
    bottom: float = Field(
        default=0.1, gt=0.0, le=1.0, description="share of lowest groups for the bottom score"
    )


def token_confidence(token: TokenLogprob, k: int = 20) -> float:
    """One token's DeepConf confidence, −(1/k) Σ log p over its top-k alternatives (the
    chosen token alone when the backend gave none): what an online check reads per token."""
    top = heapq.nlargest(k, token.top.values()) if token.top else [token.logprob]
    return -sum(max(lp, -100.0) for lp in top) / len(top)


def token_stats(logprobs: Sequence[TokenLogprob], k: int = 20) -> TokenStats:
    """Each token's confidence, entropy, self-certainty and chosen log-probability from its
    top-k alternatives (the chosen token stands alone when the backend gave none)."""
    n = len(logprobs)
    conf = np.empty(n, np.float32)
    ent = np.empty(n, np.float32)
    cert = np.empty(n, np.float32)
    chosen = np.empty(n, np.float32)
    most = 1
    for i, t in enumerate(logprobs):
        top = sorted(t.top.values(), reverse=True)[:k] if t.top else [t.logprob]
        lps = np.maximum(np.asarray(top, np.float64), -100.0)  # -inf from some servers
        kk = lps.shape[0]
        most = max(most, kk)
        conf[i] = -lps.mean()
        # renormalised over the top-k: a distribution, whatever mass lies outside it
        shifted = lps - lps.max()
        log_z = math.log(float(np.exp(shifted).sum()))
        log_p = shifted - log_z
        ent[i] = -float((np.exp(log_p) * log_p).sum())
        cert[i] = -math.log(kk) - float(log_p.mean())
        chosen[i] = max(t.logprob, -100.0)
    return TokenStats(conf, ent, cert, chosen, most)


def group_confidence(confidence: np.ndarray, window: int) -> np.ndarray:
    """The mean confidence of every window of `window` consecutive tokens (one group, the whole
    trace, when it is shorter than a window)."""
    n = confidence.shape[0]
    if n == 0:
        return np.zeros(0, np.float32)
    if n <= window:
        return np.asarray([confidence.mean()], np.float32)
    sums = np.cumsum(np.concatenate([[0.0], confidence.astype(np.float64)]))
    groups: np.ndarray = ((sums[window:] - sums[:-window]) / window).astype(np.float32)
    return groups


def trace_signals(stats: TokenStats, settings: SignalSettings | None = None) -> dict[str, float]:
    """Every trace score of `stats` (see SIGNALS)."""
    s = settings or SignalSettings()
    n = len(stats)
    if n == 0:
        return {}
    groups = group_confidence(stats.confidence, s.window)
    lowest = np.sort(groups)
    bottom = lowest[: max(1, math.ceil(s.bottom * lowest.shape[0]))]
    return {
        "mean": float(stats.confidence.mean()),
        "lowest_group": float(lowest[0]),
        "bottom10": float(bottom.mean()),
        "tail": float(stats.confidence[-s.tail :].mean()),
        "self_certainty": float(stats.certainty.mean()),
        "neg_entropy": -float(stats.entropy.mean()),
        "logprob": float(stats.logprob.mean()),
        "length": -float(n),
    }


def signals_of(
    logprobs: Sequence[TokenLogprob] | None,
    completion_tokens: int,
    settings: SignalSettings | None = None,
) -> tuple[Signals, TokenStats | None]:
    """A completion's signals and token statistics; none (with the reason) when its
    log-probabilities are missing or cover too little of it."""
    s = settings or SignalSettings()
    if not logprobs:
        return Signals(note="no log-probabilities from the backend: no confidence signal"), None
    if len(logprobs) < MIN_COVERAGE * completion_tokens:
        return (
            Signals(
                note=f"log-probabilities for {len(logprobs)} of {completion_tokens} tokens: "
                "too few for a confidence signal"
            ),
            None,
        )
    stats = token_stats(logprobs, s.k)
    note = None
    if stats.k < s.k:
        note = f"top-{stats.k} log-probabilities (asked for {s.k})"
    return Signals(scores=trace_signals(stats, s), note=note), stats
