"""GSM8K (Cobbe et al., 2021): grade-school word problems with integer answers."""

from __future__ import annotations

from pathlib import Path

from ponder.answers import equivalent
from ponder.tasks.registry import TASKS
from ponder.types import Problem


def load(
    path: Path | None = None, *, split: str = "test", limit: int | None = None, offset: int = 0
) -> list[Problem]:
    task = TASKS["gsm8k"]
    path = path or task.path().with_name(f"{split}.jsonl")
    return task.load(path, limit=limit, offset=offset)


def is_correct(answer: str | None, gold: str | None) -> bool:
    return gold is not None and equivalent(answer, gold, "number")
