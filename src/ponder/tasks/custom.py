"""Custom problem sets: `ponder bench --data FILE --question-field Q --answer-field A`.

One record per problem, read from JSON Lines (`.jsonl`, or `.json` holding JSON Lines), CSV
(`.csv`, UTF-8 with a header row) or Parquet (`.parquet`). Every problem gets the answer kind
`answer_type` and a stable id: the `id_field` value, or `{file stem}-{record number}` (1-based),
so a sweep over the same file can resume. Errors are DataErrors naming the place and the field:
`FILE:LINE: ...` for JSONL and CSV (the physical line; CSV's header is line 1), and
`FILE: row N: ...` for Parquet.

Answers may be strings, integers or floats (`145.0` reads as "145"); a CSV cell spelling an
integral float ("145.0", as pandas writes integer columns with gaps) reads the same way.

Answer type `code`: the answer field holds Python test code with asserts (MBPP style, e.g.
`assert add(1, 2) == 3`). It is kept as `meta["tests"]`: one test per top-level assert when
the field is nothing but asserts, else the whole field as one test. The tests are shown after
the question (as MBPP shows its tests, so the model knows the function's name), gold is None,
and `ponder.tasks.registry.grade` runs the tests in the sandbox like any code set.
"""

from __future__ import annotations

import ast
import codecs
import csv
import io
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.answers import ANSWER_KINDS
from ponder.answers.extract import normalize_number
from ponder.errors import DataError, UsageError, no_file, not_utf8
from ponder.tasks.data import read_jsonl
from ponder.tasks.registry import CODE_SYSTEM_PROMPT, Field
from ponder.types import Problem, blank

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_INTEGRAL = re.compile(r"[+-]?\d+\.0+")


@dataclass
class _Row:
    where: str  # "FILE:LINE" or "FILE: row N", the prefix of every error about the record
    place: str  # "line 3" or "row 3", for pointing back at a record from another one
    record: dict[str, Any]
    null: str  # why a field may hold None: "null", or a CSV row short of values
    csv: bool = False


def load_custom(
    path: Path,
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    answer_type: str = "math",
    id_field: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Problem]:
    """The file's problems in file order, `offset` records skipped and at most `limit` kept.

    The whole file is checked (every record, and ids unique across it) whatever the selection.
    """
    if answer_type not in ANSWER_KINDS:
        kinds = ", ".join(ANSWER_KINDS)
        raise UsageError(f"unknown answer type '{answer_type}' (choose from: {kinds})")
    if offset < 0 or (limit is not None and limit < 0):
        raise UsageError("--limit and --offset cannot be negative")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        suffix = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise DataError(f"{path}: unknown data format ({suffix}; supported: {', '.join(FORMATS)})")
    if not path.is_file():
        raise DataError(no_file(path, "file"))
    fields = list(dict.fromkeys([question_field, answer_field, *([id_field] if id_field else [])]))
    reader = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt]

    problems: list[Problem] = []
    seen: dict[str, str] = {}
    try:
        for number, row in enumerate(reader(path, fields), 1):
            f = Field(path, 0, row.record, where=row.where)
            question = _text(row, f, question_field)
            answer = _text(row, f, answer_field)
            if row.csv and answer_type != "code" and _INTEGRAL.fullmatch(answer):
                answer = str(int(answer.split(".")[0]))
            pid = _text(row, f, id_field) if id_field else f"{path.stem}-{number}"
            if pid in seen:
                raise DataError(f"{row.where}: duplicate id '{pid}' (also at {seen[pid]})")
            seen[pid] = row.place
            if answer_type == "code":
                problems.append(
                    Problem(
                        id=pid,
                        question=f"{question}\nYour code should pass these tests:\n{answer}",
                        gold=None,
                        kind="code",
                        system=CODE_SYSTEM_PROMPT,
                        meta={"tests": _tests(answer, row.where, answer_field)},
                    )
                )
            else:
                check_gold(answer, answer_type, f"{row.where}: field '{answer_field}'")
                problems.append(Problem(id=pid, question=question, gold=answer, kind=answer_type))
    except UnicodeDecodeError as e:
        raise DataError(not_utf8(path, e)) from None
    return problems[offset : None if limit is None else offset + limit]


def _text(row: _Row, f: Field, name: str) -> str:
    """A required field as stripped, non-empty text."""
    if name not in row.record:  # only JSONL gets here: the other formats check their columns
        present = ", ".join(map(str, row.record)) or "none"
        raise DataError(f"{row.where}: missing field '{name}' (fields: {present})")
    value = row.record[name]
    if value is None:
        raise DataError(f"{row.where}: missing field '{name}' ({row.null})")
    if isinstance(value, float) and math.isnan(value):
        raise DataError(f"{row.where}: missing field '{name}' (NaN)")
    text = f.text(name).strip()
    if blank(text):
        raise DataError(f"{row.where}: empty field '{name}'")
    return text


# letters, apart by commas, semicolons, "and" or spaces, each maybe in parentheses: "B",
# "(c)", "A, C" (a multiple answer); not "banana", which the choice key reads as ABN
_CHOICE = re.compile(r"\(?[A-Za-z]\)?(?:\s*(?:,|;|\band\b|\s)\s*\(?[A-Za-z]\)?)*")


def check_gold(answer: str, kind: str, where: str) -> None:
    """A gold answer its kind can compare with: a number for `number`, letters for `choice`.
    Anything else would be graded wrong whatever the model wrote, with no word said."""
    if kind == "number" and normalize_number(answer) is None:
        raise DataError(f"{where}: {answer!r:.60} is not a number (--answer-type number)")
    if kind == "choice" and not _CHOICE.fullmatch(answer.strip()):
        raise DataError(
            f"{where}: {answer!r:.60} is not a choice letter such as B or 'A, C' (--answer-type "
            "choice; the options go in the question, and the answer names one by its letter)"
        )


def _check_columns(path: Path, fields: Sequence[str], columns: Sequence[str]) -> None:
    for name in fields:
        if name not in columns:
            raise DataError(f"{path}: no column '{name}' (columns: {', '.join(columns)})")


def _jsonl_rows(path: Path, fields: Sequence[str]) -> Iterator[_Row]:
    with path.open("rb") as fh:
        if fh.read(4096).lstrip().startswith(b"["):
            raise DataError(f"{path}: expected JSON Lines (one object per line), not a JSON array")
    for lineno, record in read_jsonl(path):
        yield _Row(f"{path}:{lineno}", f"line {lineno}", record, "null")


def _csv_rows(path: Path, fields: Sequence[str]) -> Iterator[_Row]:
    # utf-8-sig: plain UTF-8, minus the byte-order mark spreadsheets put before the header;
    # decoded whole, so a bad byte is named by its line and place in the file (a stream's
    # error names its place in a buffer)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        at = e.start + (3 if raw.startswith(codecs.BOM_UTF8) else 0)
        line = raw.count(b"\n", 0, at) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text ({e.reason} at byte {at} of the file)"
        ) from None
    with io.StringIO(text, newline="") as fh:
        # strict: a quote never closed is an error (else the rest of the file is one field)
        reader = csv.DictReader(fh, strict=True)
        try:
            columns = reader.fieldnames
            if not columns:
                raise DataError(f"{path}: empty file (no header row)")
            twice = sorted({c for c in columns if columns.count(c) > 1})
            if twice:  # DictReader keeps the last such column's values, silently
                raise DataError(f"{path}:1: column {', '.join(map(repr, twice))} named twice")
            _check_columns(path, fields, columns)
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:  # DictReader's key for values beyond the header's columns
                    extra = len(row[None])
                    raise DataError(
                        f"{where}: {len(columns) + extra} values for {len(columns)} columns"
                    )
                given = sum(v is not None for v in row.values())
                null = f"the row has {given} of {len(columns)} values"
                yield _Row(where, f"line {reader.line_num}", dict(row), null, csv=True)
        except csv.Error as e:
            # (the csv module counts a line once it has parsed it: the one it failed on is next)
            why = str(e)
            if why == "unexpected end of data":
                why += ": a quoted value begun on this line is never closed"
            raise DataError(f"{path}:{reader.line_num + 1}: not valid CSV ({why})") from None


def _parquet_rows(path: Path, fields: Sequence[str]) -> Iterator[_Row]:
    import pyarrow as pa  # type: ignore[import-untyped]  # lazily: only Parquet needs it
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        pf = pq.ParquetFile(path)
        _check_columns(path, fields, pf.schema_arrow.names)
        i = 0
        for batch in pf.iter_batches(columns=list(fields)):
            for record in batch.to_pylist():
                i += 1
                yield _Row(f"{path}: row {i}", f"row {i}", record, "null")
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None


def _tests(source: str, where: str, name: str) -> list[str]:
    """Assert-style tests: one per top-level assert if that is all there is, else one block."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise DataError(
            f"{where}: field '{name}' is not valid Python ({e.msg}, line {e.lineno} of the field)"
        ) from None
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        raise DataError(
            f"{where}: field '{name}' has no assert statements "
            "(answer type 'code' takes Python asserts as tests)"
        )
    if len(tree.body) > 1 and all(isinstance(s, ast.Assert) for s in tree.body):
        return [ast.get_source_segment(source, s) or "" for s in tree.body]
    return [source]
