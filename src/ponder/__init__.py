"""ponder: inference-time compute scaling for language-model reasoning."""

__version__ = "0.2.0"  # the one place the version is written (pyproject reads it)

from ponder.api import asolve, solve
from ponder.runtime.budget import Budget, Ledger
from ponder.runtime.engine import Engine
from ponder.types import Candidate, Problem, Result, Usage

__all__ = [
    "Budget",
    "Candidate",
    "Engine",
    "Ledger",
    "Problem",
    "Result",
    "Usage",
    "__version__",
    "asolve",
    "solve",
]
