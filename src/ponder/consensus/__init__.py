"""Consensus over samples: when to stop sampling (stopping rules), which answer a pool gives
(selection rules), and what a rule costs on a stored pool (replay). Pure functions and plain
data: no I/O, no model calls, so every rule runs the same live and offline."""

from ponder.consensus.observations import Observation, Trace, observations, traces
from ponder.consensus.online import DeepConfVote, OnlineFilter, cut_point, lowest_group
from ponder.consensus.replay import (
    ExpectedOutcome,
    OnlineOutcome,
    ReplayOutcome,
    deepconf_online,
    expected,
    replay,
)
from ponder.consensus.selection import (
    SELECTION_RULES,
    ConfidenceWeighted,
    DeepConfFilter,
    Majority,
    Selection,
    SelectionRule,
    SelfCertaintyBorda,
)
from ponder.consensus.stopping import (
    ESC,
    STOPPING_RULES,
    Agreement,
    BetaStop,
    CrossCheck,
    Decision,
    PriceStop,
    StoppingRule,
    WeightedConsensus,
    unsettled_per_token,
)

__all__ = [
    "ESC",
    "SELECTION_RULES",
    "STOPPING_RULES",
    "Agreement",
    "BetaStop",
    "ConfidenceWeighted",
    "CrossCheck",
    "Decision",
    "DeepConfFilter",
    "DeepConfVote",
    "ExpectedOutcome",
    "Majority",
    "Observation",
    "OnlineFilter",
    "OnlineOutcome",
    "PriceStop",
    "ReplayOutcome",
    "Selection",
    "SelectionRule",
    "SelfCertaintyBorda",
    "StoppingRule",
    "Trace",
    "WeightedConsensus",
    "cut_point",
    "deepconf_online",
    "expected",
    "lowest_group",
    "observations",
    "replay",
    "traces",
    "unsettled_per_token",
]
