"""GSM8K (Cobbe et al., 2021): grade-school word problems with integer answers."""

from __future__ import annotations

from pathlib import Path

from ponder.answers import gsm8k_gold, normalize_number
from ponder.errors import DataError
from ponder.tasks.data import data_dir, read_jsonl
from ponder.types import Problem


def load(
    path: Path | None = None, *, split: str = "test", limit: int | None = None, offset: int = 0
) -> list[Problem]:
    path = path or data_dir() / "gsm8k" / f"{split}.jsonl"
    problems: list[Problem] = []
    for index, (lineno, rec) in enumerate(read_jsonl(path)):
        if index < offset:
            continue
        if limit is not None and len(problems) >= limit:
            break
        question, answer = rec.get("question"), rec.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise DataError(f"{path}:{lineno}: needs string fields 'question' and 'answer'")
        try:
            gold = gsm8k_gold(answer)
        except ValueError as e:
            raise DataError(f"{path}:{lineno}: {e}") from None
        problems.append(
            Problem(id=f"gsm8k/{split}/{index}", question=question, gold=gold, kind="number")
        )
    return problems


def is_correct(answer: str | None, gold: str | None) -> bool:
    if answer is None or gold is None:
        return False
    a, g = normalize_number(answer), normalize_number(gold)
    return a is not None and a == g
