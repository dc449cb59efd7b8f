"""Finding and reading benchmark files, with errors that name the file and line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ponder.errors import DataError


def data_dir() -> Path:
    """$PONDER_DATA_DIR, else the nearest `shared/data` above the working directory or this
    package (the project keeps its benchmark data beside the repository)."""
    if env := os.environ.get("PONDER_DATA_DIR"):
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in [start, *start.parents]:
            for candidate in (parent / "shared" / "data", parent / "data"):
                if (candidate / "gsm8k").is_dir():
                    return candidate
    raise DataError("benchmark data not found: set PONDER_DATA_DIR to the folder holding gsm8k/")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, record
