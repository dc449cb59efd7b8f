"""ponder's own strategies, one file each. Importing this package registers them all (the
strategy registry imports it the first time it is asked; see ponder.runtime.strategy)."""

from __future__ import annotations

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

__all__ = [
    "DVTS",
    "MCTS",
    "Beam",
    "BestOfN",
    "Greedy",
    "Lookahead",
    "ParticleGibbs",
    "Particles",
    "Sample",
    "StepBoN",
    "Vote",
    "WeightedVote",
    "plurality",
    "tally",
]
