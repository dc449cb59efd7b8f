"""Every problem set ponder knows (its files: `ponder.tasks.catalog`): how to load it, its
answer kind, its grader.

A loader turns one record into a Problem (question text with its options, gold answer, kind,
and what a grader needs in `meta`); a missing or mistyped field is a DataError naming the file,
line and field. Graders: answer equivalence for number/math/choice sets, unit tests in the
sandbox for code sets, and evaluating the expression with the given numbers for puzzles.
"""

from __future__ import annotations

import ast
import csv
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from ponder.answers import equivalent, extract, gsm8k_gold, last_boxed
from ponder.errors import DataError, UsageError, no_file
from ponder.plugins import Registry
from ponder.sandbox import Sandbox
from ponder.tasks.data import data_file, read_jsonl
from ponder.tasks.puzzles import check_expression
from ponder.types import Problem
from ponder.verify.checks import run_tests

CODE_SYSTEM_PROMPT = (
    "Write a correct, complete Python solution. Put the whole code (imports and the function) "
    "in one ```python code block. Do not include tests or example usage."
)
PUZZLE_SYSTEM_PROMPT = (
    "Think step by step, then give one arithmetic expression that solves the puzzle, using "
    "each given number exactly once, within \\boxed{}."
)
CHOICE_HINT = "Answer with the letter of the correct option within \\boxed{}."

Loader = Callable[[dict[str, Any], int, "Field"], Problem]


class Field:
    """Typed access to a record's fields; errors name the file, line and field (`where`
    replaces `path:lineno` for records without a line, e.g. a Parquet row)."""

    def __init__(
        self, path: Path, lineno: int, record: dict[str, Any], *, where: str | None = None
    ) -> None:
        self.where = where or f"{path}:{lineno}"
        self.record = record

    def value(self, name: str) -> Any:
        if name not in self.record or self.record[name] is None:
            raise DataError(f"{self.where}: missing field '{name}'")
        return self.record[name]

    def text(self, name: str) -> str:
        value = self.value(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise DataError(f"{self.where}: field '{name}' should be a string, not {value!r:.60}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise DataError(f"{self.where}: field '{name}' is {value}, not a finite number")
            if value.is_integer() and abs(value) < 2**53:  # answers such as 27.0
                return str(int(value))
            return repr(value)  # its shortest spelling: 1e+23, not 99999999999999991611392
        return str(value)

    def opt(self, name: str) -> Any:
        return self.record.get(name)


class Split(BaseModel):
    """A split other than a task's default (test) one: its file, and how to read it when its
    records are laid out otherwise."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    file: str
    loader: Any = None  # Loader; None: the task's own
    # leave out the problems of the task's test split (same question text): a training share
    # cut from a larger file that holds the test problems too
    without_test: bool = False


class Task(BaseModel):
    """A problem set: where its file is, what kind of answer it has, how to read a record."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    name: str
    file: str
    kind: str
    description: str
    loader: Any  # Loader
    # other splits than the default (test) one: a file name, or a Split
    splits: dict[str, Split] = {}

    @field_validator("splits", mode="before")
    @classmethod
    def _files_are_splits(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: Split(file=v) if isinstance(v, str) else v for k, v in value.items()}
        return value

    def split(self, name: str | None = None) -> Split:
        if name is None or name == "test":
            return Split(file=self.file)
        if name not in self.splits:
            known = ", ".join(["test", *self.splits])
            raise UsageError(f"task '{self.name}' has no split '{name}' (choose from: {known})")
        return self.splits[name]

    def path(self, split: str | None = None) -> Path:
        return data_file(self.split(split).file)

    def load(
        self,
        path: Path | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        split: str | None = None,
    ) -> list[Problem]:
        """The problems of a split (or of the file at `path`, read as the test split), from
        the `offset`-th on, at most `limit`."""
        spec = Split(file=self.file) if path is not None else self.split(split)
        path = path or data_file(spec.file)
        loader: Loader = spec.loader or self.loader
        held_out = {p.question for p in self.load()} if spec.without_test else set()
        out: list[Problem] = []
        position = -1
        for index, (lineno, record) in enumerate(_records(path)):
            if limit is not None and len(out) >= limit:
                break
            problem = loader(record, index, Field(path, lineno, record)) if held_out else None
            if problem is not None and problem.question in held_out:
                continue
            position += 1
            if position < offset:
                continue
            problem = problem or loader(record, index, Field(path, lineno, record))
            if problem.gold is not None and not problem.gold.strip():
                continue  # no reference answer to grade against (2 records in gaokao2023en)
            if not problem.id:
                problem.id = f"{self.name}/{index}"
            out.append(problem)
        return out

    async def grade(self, problem: Problem, answer: str | None, sandbox: Sandbox) -> bool:
        """Whether `answer` (as extracted for the problem's kind) is right."""
        return await grade(problem, answer, sandbox)


async def grade(problem: Problem, answer: str | None, sandbox: Sandbox) -> bool:
    if answer is None:
        return False
    check = problem.meta.get("check")
    if check == "expression":
        return check_expression(answer, problem.meta["numbers"], problem.meta["target"])
    if problem.kind == "code":
        tests = problem.meta.get("tests") or []
        if not tests:
            return False
        return (await run_tests(problem, answer, sandbox)).all_passed
    return equivalent(answer, problem.gold, problem.kind or "math")


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix == ".csv":
        if not path.is_file():
            raise DataError(no_file(path, "file"))
        with path.open(encoding="utf-8", newline="") as f:
            for lineno, row in enumerate(csv.DictReader(f), 2):
                yield lineno, dict(row)
        return
    yield from read_jsonl(path)


# -- loaders -----------------------------------------------------------------------------------
def _options_text(options: list[str] | dict[str, str] | str) -> str:
    if isinstance(options, str):
        return options
    if isinstance(options, dict):
        return "\n".join(f"({k}) {v}" for k, v in options.items())
    return "\n".join(f"({o[0]}) {o[2:].strip()}" if o[1:2] == ")" else o for o in options)


def _choice_problem(question: str, options: Any, gold: str) -> Problem:
    text = f"{question}\n\nAnswer choices:\n{_options_text(options)}\n\n{CHOICE_HINT}"
    return Problem(question=text, gold=gold.strip().upper(), kind="choice")


def _strip_dollars(s: str) -> str:
    s = s.strip()
    while len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        s = s[1:-1].strip()
    return s


def _letters(s: str) -> bool:
    return bool(s) and all(ch in "ABCDE" for ch in s.replace(",", "").replace(" ", ""))


def gsm8k(r: dict[str, Any], i: int, f: Field) -> Problem:
    try:
        gold = gsm8k_gold(f.text("answer"))
    except ValueError as e:
        raise DataError(f"{f.where}: field 'answer': {e}") from None
    split = "train" if "train" in f.where.rsplit("/", 1)[-1] else "test"
    return Problem(id=f"gsm8k/{split}/{i}", question=f.text("question"), gold=gold, kind="number")


def _question_answer(q: str, a: str, kind: str) -> Loader:
    def load(r: dict[str, Any], i: int, f: Field) -> Problem:
        gold = f.text(a)
        return Problem(question=f.text(q), gold=_strip_dollars(gold), kind=kind)

    return load


def level_number(value: Any) -> int | None:
    """A difficulty level as a number: 3 for 3, "3" or "Level 3" (MATH's full test file, and
    stores of MATH written before 2026-12-06), None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.removeprefix("Level ").strip()
        return int(text) if text.isdigit() else None
    return None


def _level(value: Any) -> Any:
    """MATH's difficulty as a number where it reads as one, kept as it is otherwise."""
    number = level_number(value)
    return value if number is None else number


def _boxed_solution(q: str, sol: str, *, id_prefix: str | None = None) -> Loader:
    def load(r: dict[str, Any], i: int, f: Field) -> Problem:
        gold = last_boxed(f.text(sol))
        if gold is None:
            raise DataError(f"{f.where}: field '{sol}' has no \\boxed{{}} answer")
        meta = {"level": _level(f.opt("level")), "subject": f.opt("type")}
        pid = "" if id_prefix is None else f"{id_prefix}/{i}"
        return Problem(id=pid, question=f.text(q), gold=gold, kind="math", meta=meta)

    return load


def math500(r: dict[str, Any], i: int, f: Field) -> Problem:
    return Problem(
        id=f.text("unique_id"),
        question=f.text("problem"),
        gold=f.text("answer"),
        kind="math",
        meta={"level": f.opt("level"), "subject": f.opt("subject")},
    )


def olympiadbench(r: dict[str, Any], i: int, f: Field) -> Problem:
    answers = f.value("final_answer")
    if not isinstance(answers, list) or not answers:
        raise DataError(f"{f.where}: field 'final_answer' should be a non-empty list")
    context = f.opt("context")
    question = f"{context}\n\n{f.text('question')}" if context else f.text("question")
    gold = ", ".join(_strip_dollars(str(a)) for a in answers)
    return Problem(id=f"olympiadbench/{f.opt('id')}", question=question, gold=gold, kind="math")


def maybe_choice(q: str, a: str) -> Loader:
    """Sets that mix multiple-choice (answer is letters) and fill-in problems."""

    def load(r: dict[str, Any], i: int, f: Field) -> Problem:
        gold = _strip_dollars(f.text(a))
        kind = "choice" if _letters(gold) else "math"
        return Problem(question=f.text(q), gold=gold, kind=kind)

    return load


def choice_or_value(r: dict[str, Any], i: int, f: Field) -> Problem:
    choice = f.opt("choice_answer")
    if isinstance(choice, str) and _letters(choice.strip()):
        return Problem(question=f.text("question"), gold=choice.strip(), kind="choice")
    return Problem(question=f.text("question"), gold=_strip_dollars(f.text("answer")), kind="math")


def aqua(r: dict[str, Any], i: int, f: Field) -> Problem:
    return _choice_problem(f.text("question"), f.value("options"), f.text("correct"))


def sat_math(r: dict[str, Any], i: int, f: Field) -> Problem:
    return _choice_problem(f.text("question"), f.text("options"), f.text("Answer"))


def gaokao_math_qa(r: dict[str, Any], i: int, f: Field) -> Problem:
    return _choice_problem(f.text("question"), f.value("options"), f.text("label"))


def mmlu_stem(r: dict[str, Any], i: int, f: Field) -> Problem:
    choices = f.value("choices")
    index = f.value("answer")
    if not isinstance(choices, list) or not isinstance(index, int) or not 0 <= index < len(choices):
        raise DataError(f"{f.where}: field 'answer' should index into 'choices'")
    options = {"ABCDE"[k]: str(c) for k, c in enumerate(choices)}
    return _choice_problem(f.text("question"), options, "ABCDE"[index])


def humaneval(r: dict[str, Any], i: int, f: Field) -> Problem:
    prompt, entry = f.text("prompt"), f.text("entry_point")
    question = f"Complete this Python function:\n\n```python\n{prompt}```"
    return Problem(
        id=f.text("task_id"),
        question=question,
        kind="code",
        system=CODE_SYSTEM_PROMPT,
        gold=prompt + f.text("canonical_solution"),
        meta={
            "tests": [f"{f.text('test')}\ncheck({entry})"],
            "entry_point": entry,
            "prompt": prompt,
        },
    )


def mbpp(r: dict[str, Any], i: int, f: Field) -> Problem:
    tests = f.value("test_list")
    if not isinstance(tests, list) or not tests:
        raise DataError(f"{f.where}: field 'test_list' should be a non-empty list")
    question = f"{f.text('text')}\nYour code should pass these tests:\n" + "\n".join(tests)
    meta: dict[str, Any] = {"tests": tests, "test_setup": f.opt("test_setup_code") or ""}
    entry = _entry_point(f.text("code"), tests)
    if entry:
        meta["entry_point"] = entry
    return Problem(
        id=f"mbpp/{f.value('task_id')}",
        question=question,
        kind="code",
        system=CODE_SYSTEM_PROMPT,
        gold=f.text("code"),
        meta=meta,
    )


def _entry_point(code: str, tests: list[str]) -> str | None:
    """The function under test: the first function of the reference solution that every test
    calls (the grader takes it from the candidate even when it is named like a builtin, as
    MBPP 126's `sum`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # old escape sequences in the data set's code
            defined = [
                n.name
                for n in ast.parse(code).body
                if isinstance(n, ast.FunctionDef | ast.ClassDef)
            ]
            called = [
                {
                    c.func.id
                    for c in ast.walk(ast.parse(t))
                    if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                }
                for t in tests
            ]
    except SyntaxError:
        return None
    return next((n for n in defined if all(n in c for c in called)), None)


def game24(r: dict[str, Any], i: int, f: Field) -> Problem:
    try:
        numbers = [int(x) for x in f.text("Puzzles").split()]
    except ValueError:
        raise DataError(f"{f.where}: field 'Puzzles' should hold integers") from None
    return _puzzle(f"game24/{f.text('Rank')}", numbers, 24)


def countdown(r: dict[str, Any], i: int, f: Field) -> Problem:
    try:
        numbers = [int(x) for x in f.text("input").split(",")]
        target = int(f.text("output"))
    except ValueError:
        raise DataError(f"{f.where}: fields 'input'/'output' should hold integers") from None
    return _puzzle(f"countdown/{i}", numbers, target)


def _puzzle(pid: str, numbers: list[int], target: int) -> Problem:
    shown = ", ".join(map(str, numbers))
    question = (
        f"Use the numbers {shown}, each exactly once, with +, -, * and / (and parentheses) to "
        f"make {target}."
    )
    return Problem(
        id=pid,
        question=question,
        gold=str(target),
        kind="math",
        system=PUZZLE_SYSTEM_PROMPT,
        meta={"check": "expression", "numbers": numbers, "target": target},
    )


def _task(
    name: str,
    file: str,
    kind: str,
    description: str,
    loader: Loader,
    splits: dict[str, str | Split] | None = None,
) -> Task:
    return Task(
        name=name,
        file=file,
        kind=kind,
        description=description,
        loader=loader,
        splits=splits or {},
    )


TASKS: Registry[Task] = Registry(
    "task",
    "ponder.tasks",
    ("ponder.tasks.registry",),
    is_part=lambda obj: isinstance(obj, Task),
    a_part="a Task",
)


def task(t: Task) -> Task:
    """Register a problem set under its name (another package's too, through the
    `ponder.tasks` entry point group)."""
    return TASKS.add(t.name, t, summary=t.description, capabilities={t.kind})


for _t in (
    _task(
        "gsm8k",
        "gsm8k/test.jsonl",
        "number",
        "GSM8K test, 1319 word problems (split train: 7473)",
        gsm8k,
        {"train": "gsm8k/train.jsonl"},
    ),
    _task(
        "math500",
        "math500/test.jsonl",
        "math",
        "MATH-500 (Lightman et al.; split train: the other 4500 MATH test problems)",
        math500,
        # PRM800K's share of MATH test for training: every problem of the full test file
        # that is not one of the 500 (problems keep the `math` task's ids)
        {
            "train": Split(
                file="math/test.jsonl",
                loader=_boxed_solution("problem", "solution", id_prefix="math"),
                without_test=True,
            )
        },
    ),
    _task(
        "math",
        "math/test.jsonl",
        "math",
        "MATH test, 5000 problems",
        _boxed_solution("problem", "solution"),
    ),
    _task(
        "aime24",
        "aime24/test.jsonl",
        "number",
        "AIME 2024 I+II",
        _question_answer("problem", "answer", "number"),
    ),
    _task(
        "amc23",
        "amc23/test.jsonl",
        "number",
        "AMC 12 2023",
        _question_answer("question", "answer", "number"),
    ),
    _task(
        "minerva_math",
        "minerva_math/test.jsonl",
        "math",
        "Minerva OCW courses",
        _boxed_solution("problem", "solution"),
    ),
    _task(
        "olympiadbench",
        "olympiadbench/test.jsonl",
        "math",
        "OlympiadBench (en, maths)",
        olympiadbench,
    ),
    _task(
        "college_math",
        "college_math/test.jsonl",
        "math",
        "College math",
        _question_answer("question", "answer", "math"),
    ),
    _task(
        "gaokao2023en",
        "gaokao2023en/test.jsonl",
        "math",
        "Gaokao 2023 (English)",
        maybe_choice("question", "answer"),
    ),
    _task(
        "gaokao2024_I",
        "gaokao2024_I/test.jsonl",
        "math",
        "Gaokao 2024 I (Chinese)",
        maybe_choice("question", "answer"),
    ),
    _task(
        "gaokao2024_II",
        "gaokao2024_II/test.jsonl",
        "math",
        "Gaokao 2024 II (Chinese)",
        maybe_choice("question", "answer"),
    ),
    _task(
        "gaokao2024_mix",
        "gaokao2024_mix/test.jsonl",
        "math",
        "Gaokao 2024 mix",
        choice_or_value,
    ),
    _task(
        "gaokao_math_cloze",
        "gaokao_math_cloze/test.jsonl",
        "math",
        "Gaokao cloze",
        _question_answer("question", "answer", "math"),
    ),
    _task(
        "gaokao_math_qa",
        "gaokao_math_qa/test.jsonl",
        "choice",
        "Gaokao multiple choice",
        gaokao_math_qa,
    ),
    _task(
        "cn_middle_school",
        "cn_middle_school/test.jsonl",
        "math",
        "Chinese middle school",
        choice_or_value,
    ),
    _task(
        "cmath",
        "cmath/test.jsonl",
        "number",
        "CMATH (Chinese elementary)",
        _question_answer("question", "answer", "number"),
    ),
    _task(
        "carp_en",
        "carp_en/test.jsonl",
        "math",
        "CARP (English)",
        _question_answer("content", "answer", "math"),
    ),
    _task("aqua", "aqua/test.jsonl", "choice", "AQuA-RAT test", aqua),
    _task("sat_math", "sat_math/test.jsonl", "choice", "AGIEval SAT-Math", sat_math),
    _task("mmlu_stem", "mmlu_stem/test.jsonl", "choice", "MMLU STEM subjects", mmlu_stem),
    _task("humaneval", "humaneval/HumanEval.jsonl", "code", "HumanEval, 164 functions", humaneval),
    _task("mbpp", "mbpp/mbpp.jsonl", "code", "MBPP, 974 tasks (test: ids 11-510)", mbpp),
    _task("game24", "game24/24.csv", "math", "Game of 24 (ToT), 1362 puzzles", game24),
    _task(
        "countdown",
        "countdown/countdown_cd3_test.jsonl",
        "math",
        "Countdown, 3 numbers",
        countdown,
    ),
):
    task(_t)


def get_task(name: str) -> Task:
    return TASKS.get(name).obj


def reference_answer(problem: Problem) -> str | None:
    """The gold answer as a candidate would state it (for gold-vs-gold checks)."""
    if problem.kind == "code":
        return problem.gold
    return (
        problem.gold
        if problem.gold is None
        else extract(f"\\boxed{{{problem.gold}}}", problem.kind or "math")
    )
