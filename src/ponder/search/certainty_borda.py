"""Self-certainty Borda voting (Kang et al., 2025, "Scalable Best-of-N Selection via
Self-Certainty"): rank n samples by self-certainty (the KL divergence of each token's
distribution from uniform, averaged); the sample ranked r votes with (n − r + 1)^p."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ponder.consensus import SelectionRule, SelfCertaintyBorda
from ponder.runtime.strategy import strategy
from ponder.search.sample import SelectedSample
from ponder.signals import SignalName


@strategy
class CertaintyBorda(SelectedSample):
    """Borda voting ranked by self-certainty: confident samples' votes count more."""

    name: ClassVar[str] = "certainty_borda"
    signal: SignalName = Field(
        default="self_certainty", description="the trace confidence the ranks follow"
    )
    p: float = Field(default=0.5, ge=0.0, description="Borda exponent: 0 is a plain vote")

    def rule(self) -> SelectionRule:
        return SelfCertaintyBorda(p=self.p)
