"""Strategies, one file each, and the registry that names them."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ponder.errors import UsageError
from ponder.search.base import Context, Prompting, Strategy
from ponder.search.beam import Beam
from ponder.search.best_of_n import BestOfN
from ponder.search.dvts import DVTS
from ponder.search.greedy import Greedy
from ponder.search.lookahead import Lookahead
from ponder.search.mcts import MCTS
from ponder.search.particle_gibbs import ParticleGibbs
from ponder.search.particles import Particles
from ponder.search.sample import Sample
from ponder.search.step_bon import StepBoN
from ponder.search.vote import Vote, plurality, tally
from ponder.search.weighted_vote import WeightedVote

STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s
    for s in (
        Greedy,
        Sample,
        Vote,
        BestOfN,
        WeightedVote,
        Beam,
        DVTS,
        Lookahead,
        StepBoN,
        Particles,
        ParticleGibbs,
        MCTS,
    )
}


def make_strategy(name: str, *, shared: bool = False, **options: Any) -> Strategy:
    """A strategy by name with its options (None means the default). Options it does not take
    are an error, unless `shared` (options meant for several strategies at once)."""
    if name not in STRATEGIES:
        raise UsageError(f"unknown strategy '{name}' (choose from: {', '.join(STRATEGIES)})")
    cls = STRATEGIES[name]
    known = {
        k: v for k, v in options.items() if v is not None and (not shared or k in cls.model_fields)
    }
    try:
        return cls(**known)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise UsageError(f"bad options for strategy '{name}': {problems}") from None


__all__ = ["STRATEGIES", "Context", "Prompting", "Strategy", "make_strategy", "plurality", "tally"]
