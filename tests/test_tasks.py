from __future__ import annotations

from pathlib import Path

import pytest

from ponder.errors import DataError
from ponder.tasks.registry import get_task


def test_loads_real_gsm8k_with_golds() -> None:
    problems = get_task("gsm8k").load(limit=3)
    assert len(problems) == 3
    assert problems[0].question.startswith("Janet")
    assert problems[0].gold == "18"
    assert get_task("gsm8k").load(limit=1, offset=2)[0].question == problems[2].question


def test_gold_with_thousands_separator_in_real_data() -> None:
    golds = [p.gold for p in get_task("gsm8k").load()]
    assert len(golds) == 1319
    assert all(g is not None and "," not in g for g in golds)


def test_malformed_file_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "q", "answer": "#### 1"}\n\n{"question": "q2", "answer": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:3: not valid JSON"):
        get_task("gsm8k").load(f)
    f.write_text('{"question": "q", "answer": "no hashes"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'answer': GSM8K answer has no '####'"):
        get_task("gsm8k").load(f)


def test_grading() -> None:
    from ponder.answers import equivalent

    assert equivalent("18", "18", "number") and equivalent("18.0", "18", "number")
    assert not equivalent(None, "18", "number") and not equivalent("17", "18", "number")


# -- every shared set ------------------------------------------------------------------------------
import asyncio  # noqa: E402

from helpers import need_set  # noqa: E402
from ponder.errors import UsageError  # noqa: E402
from ponder.sandbox import Sandbox  # noqa: E402
from ponder.tasks.puzzles import check_expression  # noqa: E402
from ponder.tasks.registry import TASKS, grade, reference_answer  # noqa: E402

SIZES = {
    "gsm8k": 1319, "math500": 500, "math": 5000, "aime24": 30, "amc23": 40, "minerva_math": 272,
    "olympiadbench": 675, "college_math": 2818, "gaokao2023en": 383, "gaokao2024_I": 14,
    "gaokao2024_II": 14, "gaokao2024_mix": 91, "gaokao_math_cloze": 118, "gaokao_math_qa": 351,
    "cn_middle_school": 101, "cmath": 600, "carp_en": 976, "aqua": 254, "sat_math": 32,
    "mmlu_stem": 3018, "humaneval": 164, "mbpp": 974, "game24": 1362, "countdown": 256,
}  # fmt: skip


def test_every_shared_set_is_registered() -> None:
    assert set(TASKS) == set(SIZES)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_set_loads_and_its_reference_answers_grade_correct(name: str) -> None:
    need_set(name)  # the sets not bundled are read where this machine has them
    task = get_task(name)
    problems = task.load()
    assert len(problems) == SIZES[name]
    assert len({p.id for p in problems}) == len(problems)  # ids are unique
    sample = problems[:: max(1, len(problems) // 40)]
    if "check" in problems[0].meta:
        return  # puzzles have no reference expression; see the puzzle tests
    box = Sandbox()

    async def grades() -> list[bool]:
        return [await grade(p, reference_answer(p), box) for p in sample]

    assert all(asyncio.run(grades()))
    if task.kind != "code":
        assert not any(asyncio.run(grade(p, "\\text{surely wrong}", box)) for p in sample)


FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_every_loader_reads_its_format_and_grades_its_references(name: str) -> None:
    """The sets not bundled, on a few rows of their real files (tests/fixtures/data): each
    loader's format and grading run on every machine, not only where the set was pulled."""
    from ponder.tasks.catalog import SETS

    (spec,) = SETS[name].files
    path = FIXTURES / name / spec.name
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    problems = get_task(name).load(path)
    assert len(problems) == len(rows) == 4
    assert all(p.question.strip() and p.gold for p in problems)
    box = Sandbox()

    async def grades(answer: str | None = None) -> list[bool]:
        return [await grade(p, answer or reference_answer(p), box) for p in problems]

    assert all(asyncio.run(grades()))
    assert not any(asyncio.run(grades("\\text{surely wrong}")))


def test_every_set_not_bundled_has_a_loader_fixture() -> None:
    from ponder.tasks.catalog import SETS
    from ponder.tasks.data import BUNDLED

    missing = [n for n in SETS if not (FIXTURES / n).is_dir() and not (BUNDLED / n).is_dir()]
    assert missing == []


def test_choice_sets_show_their_options_and_grade_letters() -> None:
    p = get_task("mmlu_stem").load(limit=1)[0]
    assert p.kind == "choice" and p.gold == "C"
    assert "(A) maintain the population" in p.question and "(D) increase" in p.question
    box = Sandbox()
    assert asyncio.run(grade(p, "C", box)) and not asyncio.run(grade(p, "B", box))
    aqua = get_task("aqua").load(limit=1)[0]
    assert "(A) 5(√3 + 1)" in aqua.question and aqua.kind == "choice"


def test_mixed_sets_pick_the_kind_per_problem(tmp_path: Path) -> None:
    f = tmp_path / "mix.jsonl"
    f.write_text(
        '{"question": "q1", "answer": "B", "choice_answer": "B"}\n'
        '{"question": "q2", "answer": "$\\\\frac{1}{2}$", "choice_answer": ""}\n'
    )
    problems = get_task("gaokao2024_mix").load(f)
    assert [(p.kind, p.gold) for p in problems] == [("choice", "B"), ("math", "\\frac{1}{2}")]


def test_mixed_sets_real_data_has_both_kinds() -> None:
    need_set("gaokao2024_mix")
    kinds = {p.kind for p in get_task("gaokao2024_mix").load()}
    assert kinds == {"choice", "math"}


@pytest.mark.parametrize(
    ("expr", "numbers", "target", "ok"),
    [
        ("(6 - 1 - 1) * 4", [1, 1, 4, 6], 16, True),
        ("6 * 4 * 1 * 1", [1, 1, 4, 6], 24, True),
        ("8 / (3 - 8 / 3)", [3, 3, 8, 8], 24, True),
        ("\\frac{8}{3-\\frac{8}{3}}", [3, 3, 8, 8], 24, True),
        ("(1 + 1) \\times (4 + 6) = 20", [1, 1, 4, 6], 20, True),
        ("6 * 4", [1, 1, 4, 6], 24, False),  # numbers left unused
        ("6 * 4 * 1 * 1 * 1", [1, 1, 4, 6], 24, False),  # a number used twice
        ("6 ** 2 - 4 * 1 * 1", [1, 1, 4, 6], 32, False),  # no powers
        ("__import__('os')", [1], 1, False),
        ("8 / (3 - 3)", [3, 3, 8], 0, False),
        ("", [1], 1, False),
    ],
)
def test_puzzle_answers_are_checked_by_evaluation(
    expr: str, numbers: list[int], target: int, ok: bool
) -> None:
    assert check_expression(expr, numbers, target) is ok


def test_puzzle_problems_grade_by_expression() -> None:
    p = get_task("game24").load(limit=1)[0]
    assert p.meta["numbers"] == [1, 1, 4, 6] and "24" in p.question
    box = Sandbox()
    assert asyncio.run(grade(p, "(1 + 1 + 4) * 6 - 6 * 2", box)) is False
    assert asyncio.run(grade(p, "6 * 4 * 1 * 1", box)) is True
    c = get_task("countdown").load(limit=1)[0]
    assert c.meta == {"check": "expression", "numbers": [30, 100, 93], "target": 23}
    assert asyncio.run(grade(c, "100 - 93 + 30 - 7", box)) is False
    assert asyncio.run(grade(c, "(100 - 93) + 30 - 14", box)) is False


def test_unknown_task_lists_the_tasks() -> None:
    with pytest.raises(UsageError, match=r"unknown task 'gsm9k' \(choose from: gsm8k, math500"):
        get_task("gsm9k")


def test_missing_or_mistyped_fields_name_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "m.jsonl"
    f.write_text(
        '{"problem": "p", "answer": "1", "unique_id": "u"}\n{"problem": "q", "unique_id": "v"}\n'
    )
    with pytest.raises(DataError, match=r"m.jsonl:2: missing field 'answer'"):
        get_task("math500").load(f)
    f.write_text('{"question": "q", "choices": ["a", "b"], "answer": 5}\n')
    with pytest.raises(DataError, match=r"m.jsonl:1: field 'answer' should index into 'choices'"):
        get_task("mmlu_stem").load(f)
    f.write_text('{"question": ["not", "a", "string"], "answer": "1"}\n')
    with pytest.raises(DataError, match=r"m.jsonl:1: field 'question' should be a string"):
        get_task("cmath").load(f)
    c = tmp_path / "24.csv"
    c.write_text("Rank,Puzzles\n1,1 1 4 six\n")
    with pytest.raises(DataError, match=r"24.csv:2: field 'Puzzles'"):
        get_task("game24").load(c)


def test_math500_train_is_the_rest_of_math_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PRM800K's training share: the full MATH test file without MATH-500's problems, read in
    the full file's layout ("Level 3", a boxed solution), with the `math` task's ids."""
    import json

    def row(i: int) -> dict[str, object]:
        return {"problem": f"What is {i}+{i}?", "level": f"Level {i % 5 + 1}", "type": "Algebra",
                "solution": f"It is $\\boxed{{{2 * i}}}$.", "idx": i}  # fmt: skip

    (tmp_path / "math").mkdir()
    rows = "".join(json.dumps(row(i)) + "\n" for i in range(6))
    (tmp_path / "math" / "test.jsonl").write_text(rows)
    (tmp_path / "math500").mkdir()
    held = [{"problem": f"What is {i}+{i}?", "answer": str(2 * i), "unique_id": f"test/a/{i}.json",
             "level": 1, "subject": "Algebra", "solution": ""} for i in (1, 4)]  # fmt: skip
    (tmp_path / "math500" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    monkeypatch.setenv("PONDER_DATA_DIR", str(tmp_path))

    task = get_task("math500")
    train = task.load(split="train")
    assert [p.id for p in train] == ["math/0", "math/2", "math/3", "math/5"]
    assert [p.gold for p in train] == ["0", "4", "6", "10"]
    assert [p.meta["level"] for p in train] == [1, 3, 4, 1]
    assert [p.id for p in task.load(split="train", offset=1, limit=2)] == ["math/2", "math/3"]
    assert [p.id for p in task.load()] == ["test/a/1.json", "test/a/4.json"]
    with pytest.raises(UsageError, match=r"no split 'dev' \(choose from: test, train\)"):
        task.load(split="dev")


def test_math500_train_on_the_real_files() -> None:
    need_set("math")
    task = get_task("math500")
    train = task.load(split="train")
    test = {p.question for p in task.load()}
    assert len(train) == 4500 and test.isdisjoint(p.question for p in train)
    assert {p.meta["level"] for p in train} == {1, 2, 3, 4, 5}


def test_a_plugin_task_names_its_splits_by_file() -> None:
    """As docs/plugins.md shows it: `splits` maps a split to a file name."""
    from ponder.tasks.registry import Split, Task, gsm8k

    t = Task(name="x", file="x/t.jsonl", kind="number", description="", loader=gsm8k,
             splits={"train": "x/train.jsonl"})  # fmt: skip
    assert t.split("train") == Split(file="x/train.jsonl") and t.split().file == "x/t.jsonl"
