"""DeepConf offline (Fu et al., 2025): sample n traces, keep the most confident η of them by a
chosen trace confidence (lowest group, bottom 10%, tail...), and take a confidence-weighted
vote among those kept."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ponder.consensus import DeepConfFilter as Filter
from ponder.consensus import SelectionRule
from ponder.runtime.strategy import strategy
from ponder.search.sample import SelectedSample


@strategy
class DeepConfFilter(SelectedSample):
    """DeepConf offline: keep the most confident share of the samples, then a weighted vote."""

    name: ClassVar[str] = "deepconf_filter"
    keep: float = Field(
        default=0.9, gt=0.0, le=1.0, description="share kept (0.9: DeepConf-high; 0.1: -low)"
    )

    def rule(self) -> SelectionRule:
        return Filter(keep=self.keep)
