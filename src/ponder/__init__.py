"""ponder: inference-time compute scaling for language-model reasoning."""

from ponder.api import asolve, solve
from ponder.budget import Budget, Ledger
from ponder.engine import Engine
from ponder.types import Candidate, Problem, Result, Usage

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "Candidate",
    "Engine",
    "Ledger",
    "Problem",
    "Result",
    "Usage",
    "asolve",
    "solve",
]
