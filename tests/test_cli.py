from __future__ import annotations

from pathlib import Path

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
        (["solve", "\u200b\ufeff "], "error: the question is empty"),  # nothing visible
        (["solve", "q", "-m", "/"], "error: /: a directory, not a GGUF model file"),
        (
            ["bench", "gsm8k", "--seeds", "1,2,1"],
            "error: --seeds: seed 1 given twice in '1,2,1'",
        ),
        (["bench", "gsm8k", "--seeds", ","], "error: --seeds: no seed in ','"),
        (  # each within 4096, together 16.7M generations a step: it hung
            ["solve", "q", "-s", "beam", "-n", "4096", "-o", "m=4096", "--backend", "scripted"],
            "error: strategy 'beam': max_steps=12 × n=4096 × m=4096 = 201,326,592 is more than",
        ),
        (  # a pool's compute is its n: a per-problem cap was silently not applied
            ["bench", "gsm8k", "-s", "vote", "--budget-tokens", "10"],
            "error: --budget-tokens/--budget-seconds/--budget-dollars cap one solve of a "
            "strategy that is not pooled; vote runs as a pool of n samples",
        ),
        (
            ["solve", "q", "-s", "greedy", "-n", "3"],
            "error: strategy 'greedy' has no width for -n to set (its options: answer_with; "
            "give them with -o KEY=VALUE)",
        ),
        (["bench", "nope"], "error: unknown task 'nope' (choose from: gsm8k, math500,"),
        (
            ["bench", "gsm8k", "--seeds", "99999999999999999999999"],
            "error: --seeds: each seed must be in [0, 2**63), got '99999999999999999999999'",
        ),
        (["models", "pull", "nope"], "error: unknown model 'nope'"),
        (
            ["solve", "q", "-s", "vote", "-n", "3", "-o", "n=4"],
            "error: -n 3 and -o n=4 both set the width; give one",
        ),
        (  # a key given twice: a later value silently winning would hide the mistake
            ["solve", "q", "-s", "vote", "-o", "n=3", "-o", "n=4"],
            "error: -o n given twice ('n=3', then 'n=4')",
        ),
        (
            ["bench", "gsm8k", "-s", "vote", "--temperature", "0.3", "-o", "temperature=0.9"],
            "error: --temperature 0.3 and -o temperature=0.9 both set temperature; give one",
        ),
        (  # -n set twice, in bench as in solve
            ["bench", "gsm8k", "-s", "vote", "-n", "3", "-o", "n=4"],
            "error: -n 3 and -o n=4 both set n; give one",
        ),
        (
            ["solve", "q", "-s", "auto", "--router", "r.json", "-o", "router=s.json"],
            "error: --router r.json and -o router=s.json both set router; give one",
        ),
        (
            ["solve", "q", "-s", "vote", "-o", "name=x"],
            "error: bad options for strategy 'vote': name: Extra inputs are not permitted",
        ),
        (  # a check across options: its own message names the option, nothing before it
            ["solve", "q", "-s", "auto", "-o", "price=0"],
            "error: bad options for strategy 'auto': price: without a router the price rule "
            "needs a price > 0 (valid keys:",
        ),
        (  # an internal keyword once: it switched the check of the other options off
            ["solve", "q", "-s", "vote", "-o", "shared=true", "-o", "tempreature=0"],
            "error: bad options for strategy 'vote': shared: Extra inputs are not permitted",
        ),
        (
            ["solve", "q", "-s", "best_of_n", "--verifier", "{bad"],
            "error: --verifier: not valid JSON",
        ),
        (
            ["solve", "q", "-s", "best_of_n", "--verifier", "oracle"],
            "error: bad options for strategy 'best_of_n': verifier: unknown "
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


def test_o_n_sets_the_width_as_n_does() -> None:
    from ponder.cli.common import build_strategy

    assert build_strategy("vote", None, {"n": 4}).model_dump()["n"] == 4
    assert build_strategy("vote", 4, {"n": 4}).model_dump()["n"] == 4
    assert build_strategy("mcts", None, {"n": 3}).model_dump()["iterations"] == 3


def test_bad_output_paths_fail_before_any_work(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    empty = tmp_path / "empty.sqlite"
    empty.write_text("")
    r = run_ponder("report", str(empty))
    assert r.returncode == 1 and "an empty file, not a ponder store" in r.stderr, r.stderr
    assert empty.stat().st_size == 0  # not turned into a store
    from ponder.bench.store import Store

    Store(tmp_path / "s.sqlite").close()
    r = run_ponder("report", str(tmp_path / "s.sqlite"), "--out", str(afile))
    assert r.returncode == 2 and f"--out {afile}: cannot make the report folder" in r.stderr
    # a folder of other files (--out . or "", the working folder) is not written into
    r = run_ponder("report", str(tmp_path / "s.sqlite"), "--out", str(tmp_path))
    assert r.returncode == 2 and "a folder holding other files" in r.stderr
    assert not (tmp_path / "report.md").exists()
    # --trace: checked before the model loads (the default model is not needed to fail)
    r = run_ponder("solve", "q", "-s", "beam", "--trace", str(tmp_path))
    assert r.returncode == 2 and "a directory; give a .jsonl file" in r.stderr, r.stderr
    r = run_ponder("solve", "q", "-s", "vote", "--trace", str(tmp_path / "t.jsonl"))
    assert r.returncode == 2 and "strategy 'vote' keeps no search tree" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--base-url", ""], "--base-url: '' is not an http(s) URL with a host"),
        (["--base-url", "http://[::1"], "--base-url: 'http://[::1' is not a URL"),
        (["--base-url", "http://127.0.0.1:99999"], "is not a URL (Port out of range"),
        (["--base-url", "localhost:8000"], "is not an http(s) URL with a host"),
        (["--backend", "openai"], "backend 'openai' needs a base_url (--base-url)"),
        (
            ["--backend", "scripted", "--base-url", "http://127.0.0.1:9"],
            "backend 'scripted' runs its model in this process and takes no --base-url",
        ),
        (["--backend", "scripted", "--price", "inf,inf"], "bad price 'inf,inf'"),
        (["--backend", "scripted", "--timeout", "inf"], "--timeout: Input should be a finite"),
        (["--backend", "scripted", "-n", "5000"], "n=5000 is more than 4096"),
        (["--backend", "scripted", "-o", "n=99999999999999999999999"], "is more than 4096"),
        (
            ["--backend", "scripted", "-o", "temperature=Infinity"],
            "temperature: Input should be a finite",
        ),
        # JSON types are kept: true is not 1, 2.0 is not 2, "3" is not 3 (lax coercion ran
        # a request other than the one written)
        (["--backend", "scripted", "-o", "n=true"], "n: Input should be a valid integer"),
        (["--backend", "scripted", "-o", "n=2.0"], "n: Input should be a valid integer"),
        (
            ["--backend", "scripted", "-o", "temperature=true"],
            "temperature: Input should be a valid number",
        ),
        # an empty model ran the default one; --gold without --trace was dropped
        (["-m", ""], "--model: empty; give a model name or a .gguf path"),
        (["--backend", "scripted", "--gold", "5"], "--gold is kept in the search trace"),
        (["--backend", "scripted", "--price", "0"], None),  # the help's default, accepted
    ],
)
def test_backend_flags_and_widths_that_cannot_work_are_exit_2(
    flags: list[str], says: str | None
) -> None:
    # before: tracebacks, a URL silently ignored (the embedded model ran), NaN costs that
    # bench dropped without a word, or a run that never ended
    r = run_ponder("solve", "What is 2+3?", "-s", "vote", *flags, timeout=60)
    if says is None:
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 2 and says in r.stderr, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr


def test_a_trace_path_ponder_cannot_write_is_refused_before_the_compute(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    trace = afile / "x.jsonl"
    r = run_ponder(
        "solve",
        "What is 2+3?",
        "-s",
        "beam",
        "-n",
        "2",
        "--backend",
        "scripted",
        "--trace",
        str(trace),
    )
    assert r.returncode == 2 and f"--trace {trace}: cannot write there" in r.stderr, r.stderr
    assert r.stdout == ""  # refused before any compute


def test_a_failed_solve_prints_what_it_computed_and_its_error_on_stderr() -> None:
    r = run_ponder(
        "solve",
        "What is 2+3?",
        "-s",
        "greedy",
        "--base-url",
        "http://127.0.0.1:9",
        "--timeout",
        "1",
    )
    assert r.returncode == 1, r.stderr
    assert "answer: (none)" in r.stdout and "total: 0 calls" in r.stdout
    assert "error:" not in r.stdout and "error: gave up after" in r.stderr, r.stderr


def test_a_workload_budget_that_covers_no_sample_is_an_error(tmp_path: Path) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "What is 2+3?", "answer": "5"}\n')
    r = run_ponder(
        "bench",
        "--data",
        str(data),
        "--backend",
        "scripted",
        "--budget-tokens-total",
        "1",
        "--store",
        str(tmp_path / "s.sqlite"),
    )
    assert r.returncode == 2 and "--budget-tokens-total 1 covered no sample" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["-n", "3", "-n", "4"], "-n given twice (-n 3, then -n 4)"),
        (["-n3", "--n=4"], "--n given twice (-n 3, then --n 4)"),
        (["-s", "vote", "-s", "greedy"], "-s given twice (-s vote, then -s greedy)"),
        (["--seed=1", "--seed", "2"], "--seed given twice (--seed 1, then --seed 2)"),
    ],
)
def test_an_option_of_one_value_given_twice_is_exit_2(flags: list[str], says: str) -> None:
    # click keeps the last silently; a value that looks like an option is still a value
    r = run_ponder("solve", "What is 2+3?", "--backend", "scripted", "--system", "-n", *flags)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    ok = run_ponder("solve", "What is 2+3?", "--backend", "scripted", "--system", "-n", "-n", "2")
    assert ok.returncode == 0, ok.stderr


def test_bytes_that_are_not_utf8_are_named_not_a_traceback(tmp_path: object) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from ponder.errors import DataError
    from ponder.tasks.data import read_jsonl

    assert isinstance(tmp_path, Path)
    r = subprocess.run(
        [sys.executable, "-m", "ponder", "solve", b"a\xffb"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert r.returncode == 2 and "argument 2" in r.stderr and "not UTF-8" in r.stderr, r.stderr
    sweep = tmp_path / "s.yaml"
    sweep.write_bytes(b"tasks: [gsm8k]\n\xff\xfe: 1\n")
    r = run_ponder("bench", "--sweep", str(sweep))
    assert r.returncode == 2 and "s.yaml: not UTF-8 text" in r.stderr, r.stderr
    lines = tmp_path / "t.jsonl"
    lines.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: not UTF-8 text"):
        list(read_jsonl(lines))
    lines.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')  # a byte-order mark is no error
    assert list(read_jsonl(lines)) == [(1, {"a": 1})]


def test_more_threads_than_cores_is_a_warning() -> None:
    import os

    many = str((os.cpu_count() or 1) * 8)
    r = run_ponder("solve", "What is 2+3?", "--backend", "scripted", "--threads", many)
    assert r.returncode == 0 and f"--threads {many} is more than this machine's" in r.stderr
    r = run_ponder("solve", "What is 2+3?", "--backend", "scripted", "--threads", "1")
    assert r.returncode == 0 and "--threads" not in r.stderr
