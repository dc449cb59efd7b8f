"""Custom problem sets (`ponder bench --data FILE`): JSONL, CSV and Parquet."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ponder.errors import DataError, UsageError
from ponder.sandbox import Sandbox
from ponder.tasks.custom import load_custom
from ponder.tasks.registry import Field, grade
from ponder.types import Problem

RECORDS: list[dict[str, Any]] = [
    {"question": "What is 5 + 7?", "answer": 12},
    {"question": "What is 5 * 29?", "answer": 145.0},
    {"question": "Simplify x + 1 + 0.", "answer": "x+1"},
]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def write_parquet(path: Path, columns: dict[str, list[Any]]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_jsonl_and_csv_give_identical_problems(tmp_path: Path) -> None:
    expected = [
        Problem(id="set-1", question="What is 5 + 7?", gold="12", kind="math"),
        Problem(id="set-2", question="What is 5 * 29?", gold="145", kind="math"),
        Problem(id="set-3", question="Simplify x + 1 + 0.", gold="x+1", kind="math"),
    ]
    jsonl = write_jsonl(tmp_path / "set.jsonl", RECORDS)
    csv_file = write_csv(tmp_path / "set.csv", RECORDS)
    assert "145.0" in csv_file.read_text()  # the CSV really spells the float
    assert load_custom(jsonl) == expected
    assert load_custom(csv_file) == expected
    # .json holding JSON Lines reads the same; blank lines do not shift the record numbers
    (tmp_path / "set.json").write_text("\n" + jsonl.read_text().replace("\n", "\n\n"))
    assert load_custom(tmp_path / "set.json") == expected


@pytest.mark.parametrize(
    ("answers", "golds"),
    [
        ([12, 7, -3], ["12", "7", "-3"]),  # int64 column
        ([145.0, 3.5, 1e3], ["145", "3.5", "1000"]),  # double column
        (["x+1", " (B) ", "\\frac{1}{2}"], ["x+1", "(B)", "\\frac{1}{2}"]),  # string column
    ],
)
def test_parquet_matches_jsonl_for_each_column_type(
    tmp_path: Path, answers: list[Any], golds: list[str]
) -> None:
    questions = ["q one", "q two", "q three"]
    parquet = write_parquet(tmp_path / "set.parquet", {"question": questions, "answer": answers})
    records = [{"question": q, "answer": a} for q, a in zip(questions, answers, strict=True)]
    jsonl = write_jsonl(tmp_path / "set.jsonl", records)
    problems = load_custom(parquet)
    assert [p.gold for p in problems] == golds
    assert [p.id for p in problems] == ["set-1", "set-2", "set-3"]
    assert problems == load_custom(jsonl)


def test_parquet_round_trip_of_the_shared_records(tmp_path: Path) -> None:
    # A Parquet column has one type, so the mixed answers travel as their own columns.
    parquet = write_parquet(
        tmp_path / "set.parquet",
        {
            "question": [r["question"] for r in RECORDS],
            "answer": [str(r["answer"]) for r in RECORDS],  # "145.0" as text stays as written
            "num": [12.0, 145.0, 2.5],
        },
    )
    assert [p.gold for p in load_custom(parquet)] == ["12", "145.0", "x+1"]
    assert [p.gold for p in load_custom(parquet, answer_field="num")] == ["12", "145", "2.5"]


async def test_float_gold_grades_against_an_integer_answer(tmp_path: Path) -> None:
    problem = load_custom(write_jsonl(tmp_path / "s.jsonl", RECORDS[:2]), answer_type="number")[1]
    assert problem.gold == "145" and problem.kind == "number"
    box = Sandbox()
    assert await grade(problem, "145", box)
    assert not await grade(problem, "146", box)


@pytest.mark.parametrize(
    ("kind", "answer", "says"),
    [
        ("number", "x+1", "'x+1' is not a number (--answer-type number)"),
        ("choice", "banana", "'banana' is not a choice letter"),  # (its key read ABN)
        ("choice", 2, "'2' is not a choice letter"),  # an index, as some sets store it
    ],
)
def test_a_gold_answer_its_kind_cannot_compare_is_refused(
    tmp_path: Path, kind: str, answer: object, says: str
) -> None:
    # before: stored, then graded wrong whatever the model wrote, with no word said
    f = write_jsonl(
        tmp_path / "g.jsonl",
        [
            RECORDS[0] | {"answer": "1" if kind == "number" else "A"},
            {"question": "q", "answer": answer},
        ],
    )
    with pytest.raises(DataError) as e:
        load_custom(f, answer_type=kind)
    assert str(e.value).startswith(f"{f}:2: field 'answer': {says}")
    # and floats are read as written: 1e23 is 1e+23, not 99999999999999991611392
    f = write_jsonl(tmp_path / "f.jsonl", [{"question": "q", "answer": 1e23}])
    assert load_custom(f, answer_type="number")[0].gold == "1e+23"


async def test_choice_answers_grade_by_letter(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "c.jsonl", [{"question": "Pick (A) 1 or (B) 2", "answer": "(B)"}])
    (problem,) = load_custom(f, answer_type="choice")
    assert problem.kind == "choice" and problem.gold == "(B)"
    box = Sandbox()
    assert await grade(problem, "B", box)
    assert not await grade(problem, "A", box)


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "q", "answer": 1}\n\n{"question": "q2", "answer": \n')
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert f"{f}:3" in str(e.value) and "not valid JSON" in str(e.value)


def test_json_array_is_refused_with_a_hint(tmp_path: Path) -> None:
    f = tmp_path / "arr.json"
    f.write_text(json.dumps(RECORDS, indent=2))
    with pytest.raises(DataError, match="expected JSON Lines"):
        load_custom(f)


def test_missing_answer_field_names_line_and_lists_fields(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "m.jsonl", [RECORDS[0], {"question": "q", "solution": "4"}])
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert str(e.value) == f"{f}:2: missing field 'answer' (fields: question, solution)"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (None, "missing field 'answer' (null)"),
        ("   ", "empty field 'answer'"),
        (True, "field 'answer' should be a string"),
        ([1, 2], "field 'answer' should be a string"),
    ],
)
def test_bad_answer_values_are_errors(tmp_path: Path, answer: Any, message: str) -> None:
    f = write_jsonl(tmp_path / "m.jsonl", [RECORDS[0], {"question": "q", "answer": answer}])
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert str(e.value).startswith(f"{f}:2: {message}")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"question": "q\\ud800", "answer": 1}', "a \\u escape of half a surrogate pair"),
        ('{"question": "a", "question": "b", "answer": 1}', "field 'question' given twice"),
        ('{"question": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON nested too deeply to read"),
    ],
)
def test_json_the_store_or_a_model_cannot_take_is_refused_with_its_line(
    tmp_path: Path, line: str, says: str
) -> None:
    # before: a traceback from the store (a lone surrogate), the last key silently kept,
    # a RecursionError
    f = tmp_path / "m.jsonl"
    f.write_text(json.dumps(RECORDS[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert str(e.value) == f"{f}:2: {says}"
    ok = tmp_path / "ok.jsonl"  # a whole surrogate pair is text (an emoji)
    ok.write_text('{"question": "q \\ud83d\\ude00", "answer": 1}\n', encoding="utf-8")
    assert load_custom(ok)[0].question == "q \U0001f600"


def test_empty_question_is_an_error(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "m.jsonl", [{"question": "", "answer": 1}])
    with pytest.raises(DataError, match=r"m.jsonl:1: empty field 'question'"):
        load_custom(f)
    # nothing visible is empty too: said at load with its line, not mid-run by the engine
    f = write_jsonl(tmp_path / "z.jsonl", [RECORDS[0], {"question": "\u200b\u2060", "answer": 1}])
    with pytest.raises(DataError, match=r"z.jsonl:2: empty field 'question'"):
        load_custom(f)


def test_csv_errors_name_the_physical_line(tmp_path: Path) -> None:
    f = tmp_path / "m.csv"
    f.write_text("question,answer\nq1,1\nq2\nq3,3\n")  # line 3 lacks its answer
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert str(e.value).startswith(f"{f}:3: missing field 'answer'")
    f.write_text('question,answer\n"a\nquestion over two lines",1\nq2, \n')  # empty on line 4
    with pytest.raises(DataError, match=r"m.csv:4: empty field 'answer'"):
        load_custom(f)
    f.write_text("question,answer\nq1,1\nq2,2,oops\n")
    with pytest.raises(DataError, match=r"m.csv:3: 3 values for 2 columns"):
        load_custom(f)
    f.write_text("question,solution\nq1,1\n")
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert str(e.value) == f"{f}: no column 'answer' (columns: question, solution)"
    f.write_text("question,answer,question\nq1,1,q2\n")  # the last 'question' would win
    with pytest.raises(DataError, match=r"m.csv:1: column 'question' named twice"):
        load_custom(f)


def test_csv_with_byte_order_mark_reads(tmp_path: Path) -> None:
    f = tmp_path / "bom.csv"
    f.write_bytes("question,answer\nq, 7 \n".encode("utf-8-sig"))
    assert [p.gold for p in load_custom(f)] == ["7"]


def test_parquet_errors_name_the_row_and_columns(tmp_path: Path) -> None:
    f = write_parquet(tmp_path / "p.parquet", {"problem": ["a"], "a": [1], "b": [2]})
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert str(e.value) == f"{f}: no column 'question' (columns: problem, a, b)"
    f = write_parquet(tmp_path / "p.parquet", {"question": ["a", "b"], "answer": [1.0, None]})
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert str(e.value) == f"{f}: row 2: missing field 'answer' (null)"
    f = write_parquet(tmp_path / "p.parquet", {"question": ["a"], "answer": [float("nan")]})
    with pytest.raises(DataError, match=r"p.parquet: row 1: missing field 'answer' \(NaN\)"):
        load_custom(f)
    f = write_parquet(tmp_path / "p.parquet", {"question": ["a"], "answer": [b"bytes"]})
    with pytest.raises(DataError, match=r"p.parquet: row 1: field 'answer' should be a string"):
        load_custom(f)
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"junk.parquet: not a readable Parquet file"):
        load_custom(tmp_path / "junk.parquet")


def test_ids_come_from_the_id_field_and_must_be_unique(tmp_path: Path) -> None:
    records = [{**r, "uid": uid} for r, uid in zip(RECORDS, ["a", 7, "c"], strict=True)]
    f = write_jsonl(tmp_path / "i.jsonl", records)
    assert [p.id for p in load_custom(f, id_field="uid")] == ["a", "7", "c"]
    records[2]["uid"] = "a"
    f = write_jsonl(tmp_path / "i.jsonl", records)
    with pytest.raises(DataError) as e:
        load_custom(f, id_field="uid")
    assert str(e.value) == f"{f}:3: duplicate id 'a' (also at line 1)"
    # the duplicate is found even when the selection stops before it
    with pytest.raises(DataError, match="duplicate id 'a'"):
        load_custom(f, id_field="uid", limit=1)
    f = write_csv(tmp_path / "i.csv", records)
    with pytest.raises(DataError, match=r"i.csv:4: duplicate id 'a' \(also at line 2\)"):
        load_custom(f, id_field="uid")


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "set.xlsx"
    f.write_text("x")
    with pytest.raises(DataError) as e:
        load_custom(f)
    assert str(e.value) == (
        f"{f}: unknown data format ('.xlsx'; supported: .jsonl, .json, .csv, .parquet)"
    )
    with pytest.raises(DataError, match=r"nope.jsonl: no such file"):
        load_custom(tmp_path / "nope.jsonl")


def test_unknown_answer_type_lists_the_choices(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "s.jsonl", RECORDS)
    with pytest.raises(UsageError, match=r"'numeric' \(choose from: number, math, choice, code\)"):
        load_custom(f, answer_type="numeric")


def test_limit_and_offset_select_in_file_order(tmp_path: Path) -> None:
    records = [{"question": f"q{i}", "answer": i} for i in range(1, 6)]
    f = write_jsonl(tmp_path / "s.jsonl", records)
    assert [p.id for p in load_custom(f, limit=2)] == ["s-1", "s-2"]
    assert [p.id for p in load_custom(f, offset=3)] == ["s-4", "s-5"]
    assert [p.gold for p in load_custom(f, offset=1, limit=2)] == ["2", "3"]
    assert load_custom(f, offset=9) == [] and load_custom(f, limit=0) == []


def test_custom_field_names(tmp_path: Path) -> None:
    records = [{"problem": "What is 2+2?", "solution": 4.0, "answer": "ignored"}]
    f = write_jsonl(tmp_path / "s.jsonl", records)
    (p,) = load_custom(f, question_field="problem", answer_field="solution")
    assert (p.question, p.gold) == ("What is 2+2?", "4")
    with pytest.raises(DataError, match=r"s.jsonl:1: missing field 'problem_text'"):
        load_custom(f, question_field="problem_text", answer_field="solution")


async def test_code_problems_grade_by_their_asserts(tmp_path: Path) -> None:
    tests = "assert add(1, 2) == 3\nassert add(-1, 1) == 0"
    f = write_jsonl(tmp_path / "code.jsonl", [{"question": "Write add(a, b).", "answer": tests}])
    (p,) = load_custom(f, answer_type="code")
    assert p.kind == "code" and p.gold is None
    assert p.meta["tests"] == ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    assert "assert add(1, 2) == 3" in p.question and p.system
    box = Sandbox()
    assert await grade(p, "def add(a, b):\n    return a + b", box)
    assert not await grade(p, "def add(a, b):\n    return a - b", box)


def test_code_answers_must_be_python_asserts(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "code.jsonl", [{"question": "q", "answer": "12"}])
    with pytest.raises(DataError, match=r"code.jsonl:1: field 'answer' has no assert statements"):
        load_custom(f, answer_type="code")
    f = write_jsonl(tmp_path / "code.jsonl", [{"question": "q", "answer": "assert f(1) =="}])
    with pytest.raises(DataError, match=r"code.jsonl:1: field 'answer' is not valid Python"):
        load_custom(f, answer_type="code")
    # a test with setup stays one block
    block = "def check(f):\n    assert f(2) == 4\ncheck(double)"
    f = write_jsonl(tmp_path / "code.jsonl", [{"question": "q", "answer": block}])
    assert load_custom(f, answer_type="code")[0].meta["tests"] == [block]


def test_field_keeps_its_file_line_place_unless_given_one(tmp_path: Path) -> None:
    assert Field(tmp_path / "a.jsonl", 4, {}).where == f"{tmp_path / 'a.jsonl'}:4"
    assert Field(tmp_path / "a.parquet", 0, {}, where="x: row 2").where == "x: row 2"


def test_csv_errors_name_the_line_they_are_on(tmp_path: Path) -> None:
    # a bad byte far into the file: its line and its place in the file (not in a buffer)
    rows = "".join(f"question {i},{i}\n" for i in range(2, 4002))
    bad = tmp_path / "late.csv"
    bad.write_bytes(b"question,answer\n" + rows.encode() + b"caf\xe9,1\n")
    with pytest.raises(DataError) as e:
        load_custom(bad)
    at = len(b"question,answer\n" + rows.encode()) + 3
    assert str(e.value).startswith(f"{bad}:4002: not UTF-8 text (")
    assert str(e.value).endswith(f" at byte {at} of the file)")
    # a field past the csv module's limit, on line 3
    huge = tmp_path / "huge.csv"
    huge.write_text("question,answer\nq,1\n" + "x" * 200_000 + ",1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"huge.csv:3: not valid CSV \(field larger"):
        load_custom(huge)
    # a quote opened and never closed: the rest of the file was read as one question
    open_quote = tmp_path / "quote.csv"
    open_quote.write_text('question,answer\nq,1\n"2 + 2?,4\n3 + 3?,6\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"quote.csv:3: not valid CSV \(unexpected end of data: a "):
        load_custom(open_quote)
    # text after a closing quote
    stray = tmp_path / "stray.csv"
    stray.write_text('question,answer\n"2 + 2?" ok,4\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"stray.csv:2: not valid CSV \(',' expected after"):
        load_custom(stray)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"question": "a", "answer": 1}\r{"question": "b", "answer": 2}\r', "a lone CR"),
        (b'{\n  "question": "a",\n  "answer": 1\n}\n', "JSON spread over lines"),
    ],
)
def test_known_json_lines_mistakes_are_named(tmp_path: Path, content: bytes, says: str) -> None:
    f = tmp_path / "m.jsonl"
    f.write_bytes(content)
    with pytest.raises(DataError, match=rf"m.jsonl:1: not valid JSON \(.*\); .*{says}"):
        load_custom(f)
