from __future__ import annotations

from pathlib import Path

import pytest

from ponder.errors import DataError
from ponder.tasks import gsm8k


def test_loads_real_gsm8k_with_golds() -> None:
    problems = gsm8k.load(limit=3)
    assert len(problems) == 3
    assert problems[0].question.startswith("Janet")
    assert problems[0].gold == "18"
    assert gsm8k.load(limit=1, offset=2)[0].question == problems[2].question


def test_gold_with_thousands_separator_in_real_data() -> None:
    golds = [p.gold for p in gsm8k.load()]
    assert len(golds) == 1319
    assert all(g is not None and "," not in g for g in golds)


def test_malformed_file_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "q", "answer": "#### 1"}\n\n{"question": "q2", "answer": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:3: not valid JSON"):
        gsm8k.load(f)
    f.write_text('{"question": "q", "answer": "no hashes"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: GSM8K answer has no '####'"):
        gsm8k.load(f)


def test_grading() -> None:
    assert gsm8k.is_correct("18", "18") and gsm8k.is_correct("18.0", "18")
    assert not gsm8k.is_correct(None, "18") and not gsm8k.is_correct("17", "18")
