"""benchmarks/peers.py: method specs, grading and the table (no model, no peer installed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import peers
from ponder.types import Problem


def test_method_specs_carry_typed_options() -> None:
    m = peers.Method.parse("ponder:adaptive?rule=beta&threshold=0.95&max_n=16&cancel=true")
    assert (m.peer, m.name) == ("ponder", "adaptive")
    assert m.options == {"rule": "beta", "threshold": 0.95, "max_n": 16, "cancel": True}
    assert m.spec == "ponder:adaptive?rule=beta&threshold=0.95&max_n=16&cancel=true"
    assert peers.Method.parse("its_hub:beta").options == {}
    for bad in ("vote", "nobody:vote", "ponder:"):
        with pytest.raises(SystemExit):
            peers.Method.parse(bad)


def test_every_method_is_graded_alike() -> None:
    p = Problem(id="x", question="?", gold="18", kind="number")
    assert peers.grade("so 9 * 2 = 18 and the answer is \\boxed{18}.", p) == ("18", True)
    assert peers.grade("\\boxed{18.00} dollars", p)[1]
    assert peers.grade("first \\boxed{18}, then \\boxed{20}", p) == ("20", False)
    assert peers.grade("<|im_end|>", p) == (None, False)
    assert peers.grade(None, p) == (None, False)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    values = np.array([1.0] * 30 + [0.0] * 70)
    a = peers.bootstrap_ci(values, np.random.default_rng(0))
    b = peers.bootstrap_ci(values, np.random.default_rng(0))
    assert a == b
    assert a[0] < 0.3 < a[1]
    assert peers.bootstrap_ci(np.ones(5), np.random.default_rng(0)) == (1.0, 1.0)


def rows(
    method: str, correct: list[bool], generated: int, reported: int, offset: int = 0
) -> list[dict]:
    ids = [f"p{offset + i}" for i in range(len(correct))]
    out: list[dict] = [
        {"kind": "problem", "method": method, "id": i, "correct": c}
        for i, c in zip(ids, correct, strict=True)
    ]
    out.append(
        {
            "kind": "total",
            "method": method,
            "ids": ids,
            "offset": offset,
            "problems": len(ids),
            "errors": 0,
            "settings": {"n": 8, "temperature": 0.7, "max_tokens": 512, "system": "s"},
            "wall_seconds": 100.0 if method == "ref" else 50.0,
            "server_tokens_predicted": generated,
            "server_prompt_tokens": 10,
            "peer_completion_tokens": reported,
        }
    )
    return out


def test_table_ratios_and_paired_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.jsonl"
    lines = rows("ref", [True, False, False, False], 1000, 1000)
    lines += rows("other", [True, True, False, False], 500, 125)
    lines += rows("local", [False, False, False, False], 0, 300)
    out.write_text("".join(json.dumps(r) + "\n" for r in lines))
    peers.table([out], "ref", seed=0)
    text = capsys.readouterr().out
    ref = next(line for line in text.splitlines() if line.startswith("| ref |"))
    other = next(line for line in text.splitlines() if line.startswith("| other |"))
    local = next(line for line in text.splitlines() if line.startswith("| local |"))
    assert "reference" in ref and "25%" in ref
    cells = [c.strip() for c in other.strip("|").split("|")]
    assert cells[2].startswith("50%")
    assert cells[6:10] == ["125", "0.25", "0.50", "0.50"]
    assert cells[10].startswith("+25%") and "4 paired" in cells[10]
    assert "not on the server" in local


def test_tables_of_several_files_pool_their_problems_and_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a = rows("ref", [True, False], 1000, 1000) + rows("other", [True, True], 500, 500)
    b = rows("ref", [True, True], 1000, 1000, offset=2)
    b += rows("other", [False, False], 100, 100, offset=2)
    for path, lines in ((first, a), (second, b)):
        path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    peers.table([first, second], "ref", seed=0)
    text = capsys.readouterr().out
    assert "problems 1-2, 3-4" in text
    other = next(line for line in text.splitlines() if line.startswith("| other |"))
    cells = [c.strip() for c in other.strip("|").split("|")]
    # 4 problems each; 600 of 2,000 generated tokens; 100 of 200 wall seconds
    assert cells[1] == "4" and cells[2].startswith("50%") and cells[3] == "100"
    assert cells[4] == "600" and cells[8:10] == ["0.30", "0.50"]
    assert cells[10].startswith("-25%") and "4 paired" in cells[10]
