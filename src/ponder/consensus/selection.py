"""Selection rules: which answer a finished pool of samples gives.

Each rule reads one confidence per observation; which trace signal that is stays the caller's
choice (`observations(..., signal=...)`). DeepConf's offline filter is meant with a local one
("lowest_group", "bottom10", "tail"), self-certainty Borda with "self_certainty", CISC with any
of them. Only samples with an answer vote. A rule that reads confidence falls back to a plain
majority vote, and says so, when no voter has one; a voter without one (others having one)
weighs the mean confidence, and the note says how many did. Ties go to the answer seen first.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ponder.consensus.observations import (
    EPSILON,
    Observation,
    answered,
    confidences,
    leader,
    totals,
)

NO_CONFIDENCE = "no confidence signal: majority vote"


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen answer class, the vote per class, a note on any fallback, whether it tied."""

    answer: int | None
    weights: dict[int, float]
    note: str | None = None
    tie: bool = False


def vote(voters: Sequence[Observation], weights: Sequence[float], note: str | None) -> Selection:
    """The weighted vote of `voters` (ties to the class seen first)."""
    votes = totals(voters, weights)
    answer, tie = leader(votes)
    return Selection(answer, votes, note, tie)


def by_confidence(confidence: Sequence[float]) -> list[int]:
    """Indices from the most to the least confident; equal confidences keep pool order."""
    return sorted(range(len(confidence)), key=lambda i: -confidence[i])


class SelectionRule(BaseModel):
    """A rule choosing the answer of a finished pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]

    def select(self, observations: Sequence[Observation]) -> Selection:
        voters = answered(observations)
        confidence, note = confidences(voters)
        if confidence is None:
            return vote(voters, [1.0] * len(voters), NO_CONFIDENCE if voters else None)
        return self.weigh(voters, confidence, note)

    @abstractmethod
    def weigh(
        self, voters: Sequence[Observation], confidence: list[float], note: str | None
    ) -> Selection:
        """The rule's own vote, given every voter's confidence."""


class Majority(SelectionRule):
    """Self-consistency (Wang et al., 2023): one sample, one vote."""

    name: ClassVar[str] = "majority"

    def select(self, observations: Sequence[Observation]) -> Selection:
        voters = answered(observations)
        return vote(voters, [1.0] * len(voters), None)

    def weigh(
        self, voters: Sequence[Observation], confidence: list[float], note: str | None
    ) -> Selection:
        return vote(voters, [1.0] * len(voters), note)


class ConfidenceWeighted(SelectionRule):
    """CISC (Taubenfeld et al., 2025): each sample votes with softmax(confidence / temperature)
    over the voters, so a confident sample outweighs an unsure one."""

    name: ClassVar[str] = "cisc"
    temperature: float = Field(default=1.0, gt=0.0, description="softmax temperature")

    def weigh(
        self, voters: Sequence[Observation], confidence: list[float], note: str | None
    ) -> Selection:
        z = np.asarray(confidence, np.float64) / self.temperature
        w = np.exp(z - z.max())
        return vote(voters, [float(x) for x in w / w.sum()], note)


class DeepConfFilter(SelectionRule):
    """DeepConf offline (Fu et al., 2025): keep the most confident `keep` share of the voters,
    then vote weighted by confidence among them. The number kept is ⌈keep · N⌉ (at least the
    share asked for, and at least one); at equal confidence the earlier sample is kept."""

    name: ClassVar[str] = "deepconf"
    keep: float = Field(
        default=0.9, gt=0.0, le=1.0, description="share of the most confident traces kept"
    )

    def kept(self, n: int) -> int:
        """How many of `n` voters are kept (rounded first: 0.9 · 10 is 9, not 9.000…01)."""
        return max(1, math.ceil(round(self.keep * n, 9)))

    def weigh(
        self, voters: Sequence[Observation], confidence: list[float], note: str | None
    ) -> Selection:
        top = sorted(by_confidence(confidence)[: self.kept(len(voters))])  # back in pool order
        return vote([voters[i] for i in top], [max(confidence[i], EPSILON) for i in top], note)


class SelfCertaintyBorda(SelectionRule):
    """Borda voting by self-certainty (Kang et al., 2025): the sample ranked r of N by
    confidence (r = 1 the most confident) votes with (N − r + 1)^p; p = 0 is a plain vote,
    a large p approaches picking the single most confident sample."""

    name: ClassVar[str] = "borda"
    p: float = Field(default=0.5, ge=0.0, description="exponent of the Borda weight")

    def weigh(
        self, voters: Sequence[Observation], confidence: list[float], note: str | None
    ) -> Selection:
        n = len(voters)
        # ((N − r + 1) / N)^p · N^p, the second factor dropped where it would overflow: the
        # same vote at any p (p = 1000 raised OverflowError after the samples were paid for)
        scale = float(n) ** self.p if self.p * math.log(max(n, 1)) < 700 else 1.0
        weights = [0.0] * n
        for rank, i in enumerate(by_confidence(confidence), start=1):
            weights[i] = ((n - rank + 1) / n) ** self.p * scale
        return vote(voters, weights, note)


SELECTION_RULES: dict[str, type[SelectionRule]] = {
    cls.name: cls for cls in (Majority, ConfidenceWeighted, DeepConfFilter, SelfCertaintyBorda)
}
