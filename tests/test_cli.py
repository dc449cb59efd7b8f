from __future__ import annotations

import pytest

from helpers import run_ponder
from ponder.runtime.strategy import STRATEGIES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["solve", "q", "--strategy", "nope"],
            # the registry's names, in its order (the message asks the registry)
            f"error: unknown strategy 'nope' (choose from: {', '.join(STRATEGIES)})",
        ),
        (["solve", "q", "--model", "nope"], "error: unknown model 'nope' (choose from: "),
        (["solve", "q", "--frobnicate"], "error: No such option: --frobnicate (options: "),
        (["solve", "   "], "error: the question is empty"),
        (
            ["solve", "q", "-s", "greedy", "-n", "3"],
            "error: strategy 'greedy' has no width for -n to set (its options: answer_with; "
            "give them with -o KEY=VALUE)",
        ),
        (["bench", "nope"], "error: unknown task 'nope' (choose from: gsm8k, math500,"),
        (["models", "pull", "nope"], "error: unknown model 'nope'"),
        (
            ["solve", "q", "-s", "best_of_n", "--verifier", "{bad"],
            "error: --verifier: not valid JSON",
        ),
        (
            ["solve", "q", "-s", "best_of_n", "--verifier", "oracle"],
            "error: bad options for strategy 'best_of_n': verifier: Value error, unknown "
            "verifier 'oracle' (choose from: self_judge,",
        ),
        (
            ["solve", "q", "-s", "vote", "--verifier", "self_judge"],
            "error: bad options for strategy 'vote': verifier: Extra inputs are not permitted",
        ),
        (
            ["solve", "q", "--answer-with", "vibes"],
            "error: bad options for strategy 'vote': answer_with: Input should be 'reasoning'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    proc = run_ponder(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr


def test_models_list_shows_registry() -> None:
    proc = run_ponder("models", "list")
    assert proc.returncode == 0
    assert "qwen2.5-coder-0.5b (default)" in proc.stdout and "qwen2.5-coder-1.5b" in proc.stdout
    assert "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32" in proc.stdout


def test_tasks_lists_every_problem_set_with_its_kind() -> None:
    proc = run_ponder("tasks")
    assert proc.returncode == 0, proc.stderr
    for line in ("gsm8k (number)", "math500 (math)", "aqua (choice)", "mbpp (code)", "game24"):
        assert line in proc.stdout
