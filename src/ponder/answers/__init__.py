"""The answer layer: extract a final answer per kind, decide equivalence, cluster for votes."""

from ponder.answers.equivalence import canonical, cluster, equivalent
from ponder.answers.extract import (
    KINDS,
    Kind,
    code_blocks,
    extract,
    extract_answer,
    gsm8k_gold,
    last_boxed,
    normalize_number,
)

__all__ = [
    "KINDS",
    "Kind",
    "canonical",
    "cluster",
    "code_blocks",
    "equivalent",
    "extract",
    "extract_answer",
    "gsm8k_gold",
    "last_boxed",
    "normalize_number",
]
