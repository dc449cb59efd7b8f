"""ponder's own strategies, one file each. Importing this package registers them all (the
strategy registry imports it the first time it is asked; see ponder.runtime.strategy)."""

from __future__ import annotations

from ponder.search.adaptive import Adaptive
from ponder.search.auto import Auto
from ponder.search.beam import Beam
from ponder.search.best_of_n import BestOfN
from ponder.search.certainty_borda import CertaintyBorda
from ponder.search.confidence_vote import ConfidenceVote
from ponder.search.deepconf import DeepConf
from ponder.search.deepconf_filter import DeepConfFilter
from ponder.search.dvts import DVTS
from ponder.search.greedy import Greedy
from ponder.search.lookahead import Lookahead
from ponder.search.mcts import MCTS
from ponder.search.particle_gibbs import ParticleGibbs
from ponder.search.particles import Particles
from ponder.search.refine import Refine
from ponder.search.sample import Sample
from ponder.search.step_bon import StepBoN
from ponder.search.vote import Vote, plurality, tally
from ponder.search.weighted_vote import WeightedVote

__all__ = [
    "DVTS",
    "MCTS",
    "Adaptive",
    "Auto",
    "Beam",
    "BestOfN",
    "CertaintyBorda",
    "ConfidenceVote",
    "DeepConf",
    "DeepConfFilter",
    "Greedy",
    "Lookahead",
    "ParticleGibbs",
    "Particles",
    "Refine",
    "Sample",
    "StepBoN",
    "Vote",
    "WeightedVote",
    "plurality",
    "tally",
]
