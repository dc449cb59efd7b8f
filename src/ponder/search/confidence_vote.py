"""Confidence-weighted self-consistency (CISC, Taubenfeld et al., 2025): sample n answers; each
votes with softmax(confidence / T) over the samples, so a confident sample outweighs an unsure
one. The confidence is the trace's own, read from its token log-probabilities."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ponder.consensus import ConfidenceWeighted, SelectionRule
from ponder.runtime.strategy import strategy
from ponder.search.sample import SelectedSample


@strategy
class ConfidenceVote(SelectedSample):
    """Self-consistency with votes weighted by each sample's confidence (CISC)."""

    name: ClassVar[str] = "confidence_vote"
    softmax_temperature: float = Field(
        default=1.0, gt=0.0, description="T in softmax(confidence / T): lower trusts it more"
    )

    def rule(self) -> SelectionRule:
        return ConfidenceWeighted(temperature=self.softmax_temperature)
