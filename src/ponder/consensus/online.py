"""DeepConf online (Fu et al., 2025, Algorithm 2), as state the live strategy and the offline
replay share: warm-up traces set a confidence threshold; every later trace is watched as it is
written and stopped the moment its group confidence falls below it; traces that finish vote,
weighted by their lowest group confidence, until the leader holds `consensus` of the vote.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ponder.consensus.observations import EPSILON, Observation, leader, totals
from ponder.errors import UsageError


class OnlineFilter:
    """DeepConf's online check of one trace: stop it the moment its group confidence (the mean
    confidence of its last `window` tokens, once it has that many) falls below `threshold`.
    O(1) per token: a running sum over a ring of the last `window` confidences."""

    __slots__ = ("_ring", "_sum", "threshold", "window")

    def __init__(self, threshold: float, window: int) -> None:
        if window < 1:
            raise UsageError(f"window must be at least 1 token (got {window})")
        self.threshold = threshold
        self.window = window
        self._ring: deque[float] = deque(maxlen=window)
        self._sum = 0.0

    def update(self, token_confidence: float) -> bool:
        """Take the next token's confidence; True: stop the trace now (this token included)."""
        if len(self._ring) == self.window:
            self._sum -= self._ring[0]
        self._ring.append(token_confidence)
        self._sum += token_confidence
        return len(self._ring) == self.window and self._sum / self.window < self.threshold


def lowest_group(confidence: np.ndarray, window: int) -> float:
    """A trace's lowest group confidence (its mean when shorter than a window), in float64 as
    OnlineFilter sums it (`ponder.signals.group_confidence` rounds to float32)."""
    c = confidence.astype(np.float64)
    if c.shape[0] == 0:
        return 0.0
    if c.shape[0] <= window:
        return float(c.mean())
    sums = np.cumsum(np.concatenate([[0.0], c]))
    return float(((sums[window:] - sums[:-window]) / window).min())


def cut_point(confidence: np.ndarray, threshold: float, window: int) -> int | None:
    """Where OnlineFilter stops a trace with these token confidences: the index of the token it
    stops at, or None when the trace passes whole."""
    check = OnlineFilter(threshold, window)
    return next((i for i, c in enumerate(confidence.tolist()) if check.update(c)), None)


def check_settings(
    warmup: int, budget: int, percentile: float, window: int, consensus: float
) -> None:
    if not 1 <= warmup <= budget or not 0.0 <= percentile <= 100.0 or window < 1:
        raise UsageError(
            f"DeepConf online needs 1 ≤ warmup ≤ n, a percentile in [0, 100] and a window "
            f"≥ 1 (warmup={warmup}, n={budget}, percentile={percentile}, window={window})"
        )
    if not 0.0 < consensus <= 1.0:
        raise UsageError(f"consensus must be in (0, 1] (got {consensus})")


@dataclass
class DeepConfVote:
    """The vote of one problem's traces. `percentile` 10 keeps about 90% of traces
    ("DeepConf-high"), 90 about 10% ("DeepConf-low")."""

    window: int = 32
    percentile: float = 10.0
    consensus: float = 0.95
    threshold: float | None = None
    voters: list[Observation] = field(default_factory=list)

    def calibrate(self, lowest: Sequence[float]) -> float:
        """Set the threshold from the warm-up traces' lowest group confidences."""
        if not lowest:
            raise UsageError("DeepConf online needs warm-up traces with token confidences")
        self.threshold = float(np.percentile(np.asarray(lowest, np.float64), self.percentile))
        return self.threshold

    def offer(self, answer: int | None, tokens: int, confidence: np.ndarray) -> bool:
        """A finished (not stopped) trace: it votes, with weight its lowest group confidence,
        when it has an answer and that lowest group is not below the threshold (a trace
        shorter than a window, which the online check never saw whole, must pass this)."""
        low = lowest_group(confidence, self.window)
        if answer is None or self.threshold is None or low < self.threshold:
            return False
        self.voters.append(Observation(answer, tokens, low))
        return True

    def votes(self) -> dict[int, float]:
        return totals(self.voters, [max(o.confidence or 0.0, EPSILON) for o in self.voters])

    def share(self) -> float:
        votes = self.votes()
        return max(votes.values()) / sum(votes.values()) if votes else 0.0

    def settled(self) -> bool:
        return self.share() >= self.consensus

    def answer(self) -> int | None:
        return leader(self.votes())[0]
