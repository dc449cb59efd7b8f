"""Answer extraction and normalisation (v0: boxed answers and numbers)."""

from ponder.answers.extract import extract_answer, gsm8k_gold, normalize_number

__all__ = ["extract_answer", "gsm8k_gold", "normalize_number"]
