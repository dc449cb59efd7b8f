"""The answer layer: extract a final answer per kind, decide equivalence, cluster for votes."""

from ponder.answers.extract import (
    code_blocks,
    extract_answer,
    gsm8k_gold,
    last_boxed,
    normalize_number,
)
from ponder.answers.kinds import (
    ANSWER_KINDS,
    READING,
    AnswerKind,
    answer_kind,
    canonical,
    cluster,
    equivalent,
    extract,
    read_answer,
)

__all__ = [
    "ANSWER_KINDS",
    "READING",
    "AnswerKind",
    "answer_kind",
    "canonical",
    "cluster",
    "code_blocks",
    "equivalent",
    "extract",
    "extract_answer",
    "gsm8k_gold",
    "last_boxed",
    "normalize_number",
    "read_answer",
]
