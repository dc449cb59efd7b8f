"""`ponder bench` into a store and `ponder report` from it, as a user runs them: the command
line in a fresh process against a scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from fake_server import FakeOpenAIServer
from helpers import ponder_async, run_ponder, store_of_version


def work(server: FakeOpenAIServer) -> int:
    """Generation requests (not the backend's 2-token capability probe)."""
    return sum(body.get("max_tokens") == 512 for _, body in server.requests)


def units(store: Path) -> int:
    db = sqlite3.connect(store)
    try:
        return int(db.execute("SELECT COUNT(*) FROM units").fetchone()[0])
    finally:
        db.close()


async def test_bench_stores_resumes_and_reports(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    async with FakeOpenAIServer() as server:
        args = ["bench", "gsm8k", "--base-url", server.url, "--model", "fake-model"]
        args += ["-s", "greedy", "-s", "vote", "-n", "4", "--limit", "3", "--store", str(store)]
        code, out, err = await ponder_async(*args)
        assert code == 0, err
        assert units(store) == 3 + 3 * 4
        first = work(server)
        assert first == 15  # each unit one request
        assert "vote" in out and "greedy" in out and "accuracy" in out
        # the server's capability probe is said, and is in no problem's cost (the fake
        # answers its 6 POSTs with 7 prompt + 4 completion tokens; its n=2 call lists 4 + 5)
        assert "probe: 6 calls · 29 completion + 42 prompt tokens readying the server" in out
        # stderr is a pipe, not a terminal: plain progress lines a log file keeps, each
        # tenth of a run, the last with every unit (a live bar would leave nothing there)
        lines = [line for line in err.splitlines() if " units · " in line]
        assert any(line.startswith("gsm8k vote@4: 12/12 units · ") for line in lines)
        assert any(" 3/3 units · " in line for line in lines)
        assert any(" ETA " in line for line in lines)
        assert "\x1b[" not in err  # no terminal control codes in the log
        # the same command again: everything is stored, nothing is asked of the server
        asked = len(server.requests)
        code, out, err = await ponder_async(*args)
        assert code == 0, err
        assert work(server) == first and len(server.requests) == asked and "probe:" not in out
        assert units(store) == 15
        # a bigger pool: only the new samples
        code, _, err = await ponder_async(*[a if a != "4" else "6" for a in args])
        assert code == 0, err
        assert units(store) == 3 + 3 * 6
        assert work(server) == first + 6

    report = tmp_path / "rep"
    code, out, err = await ponder_async("report", str(store), "--out", str(report))
    assert code == 0, err
    text = (report / "report.md").read_text()
    assert "| vote | 6 | 3 |" in text and "| greedy | 1 | 3 |" in text
    with (report / "points.csv").open() as f:
        pts = list(csv.DictReader(f))
    vote = {int(r["k"]): r for r in pts if r["method"] == "vote"}
    assert sorted(vote) == [1, 2, 4, 6]
    # a pool's cost grows with k: 4 prompt-not-cached... (7 - 2) + 4 completion per sample
    assert float(vote[1]["tokens"]) == pytest.approx(9) and float(vote[6]["tokens"]) == 54
    assert {p.name for p in report.glob("*.png")} >= {
        "scaling_gsm8k_fake-model_tokens.png",
        "equal_compute_gsm8k_fake-model.png",
        "difficulty_gsm8k_fake-model.png",
    }
    assert all(p.stat().st_size > 10_000 for p in report.glob("*.png"))


async def test_a_log_keeps_whole_method_labels(tmp_path: Path) -> None:
    """stdout is a pipe: the summary's rows are not cut to 80 columns (a label cut to
    "greedy(answer_with=pro…" does not say which run it is)."""
    # a shell's pipe has no COLUMNS; under pytest the inherited environment may set it
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    async with FakeOpenAIServer() as server:
        args = ["bench", "gsm8k", "--base-url", server.url, "--model", "fake-model", "--limit"]
        args += ["1", "-s", "greedy", "-o", "answer_with=program", "--seeds", "123456789"]
        code, out, err = await ponder_async(*args, "--store", str(tmp_path / "s.sqlite"), env=env)
    assert code == 0, err
    assert "greedy(answer_with=program)" in out, out
    assert "…" not in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_ctrl_c_stores_the_units_in_flight_and_a_rerun_finishes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    store = tmp_path / "s.sqlite"
    started = asyncio.Event()

    def slow(i: int, path: str, body: dict[str, object]) -> str:
        if work(server) >= 6:  # some units done, others in flight
            started.set()
        return "slow"

    async with FakeOpenAIServer(slow) as server:
        args = [sys.executable, "-m", "ponder", "bench", "gsm8k", "--base-url", server.url]
        args += ["-s", "vote", "-n", "8", "--limit", "5", "--store", str(store), "--slots", "2"]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await asyncio.wait_for(started.wait(), timeout=60)
        proc.send_signal(sig)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 130, err.decode()
        assert "finishing the units in flight" in err.decode()
        sent = work(server)
        stored = units(store)
        assert 6 <= stored < 40
        assert stored == sent  # every request that was sent finished and was stored
        code, _, e = await ponder_async(*args[3:])
        assert code == 0, e
        assert units(store) == 40 and work(server) == 40


async def test_custom_data_and_a_sweep_file(tmp_path: Path) -> None:
    data = tmp_path / "mine.csv"
    data.write_text("problem,solution\nWhat is 1+1?,2\nWhat is 2+3?,5.0\n")
    sweep = tmp_path / "sweep.toml"
    async with FakeOpenAIServer() as server:
        sweep.write_text(
            'store = "out/s.sqlite"\n'
            f'models = [{{name = "fake-model", base_url = "{server.url}"}}]\n'
            'tasks = [{data = "mine.csv", question_field = "problem", '
            'answer_field = "solution", answer_type = "number"}]\n'
            'strategies = ["greedy", {name = "vote", n = 2}]\n'
            "seeds = [0, 1]\n"
        )
        code, _, err = await ponder_async("bench", "--sweep", str(sweep))
        assert code == 0, err
    store = tmp_path / "out" / "s.sqlite"  # relative to the sweep file
    db = sqlite3.connect(store)
    assert db.execute("SELECT DISTINCT task FROM runs").fetchall() == [("data:mine.csv",)]
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4  # 2 plans × 2 seeds
    assert db.execute("SELECT COUNT(*) FROM units").fetchone()[0] == 2 * (2 + 2 * 2)
    golds = sorted(g for (g,) in db.execute("SELECT gold FROM problems"))
    assert golds == ["2", "5"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('{"question": "a", "answer": 1}\n{"question": "b"\n', "bad.jsonl:2: not valid JSON"),
        (
            '{"question": "a", "answer": 1}\n\n{"question": "b"}\n',
            "bad.jsonl:3: missing field 'answer'",
        ),
    ],
)
def test_bad_custom_data_names_file_line_and_field(
    tmp_path: Path, lines: str, message: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines)
    r = run_ponder("bench", "--data", str(bad), "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "s.sqlite").exists()  # failed before any model or store opened


def test_an_empty_set_is_an_error_not_an_empty_table(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    r = run_ponder("bench", "--data", str(empty), "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 2 and f"{empty}: no problems (an empty set" in r.stderr, r.stderr
    one = tmp_path / "one.jsonl"
    one.write_text('{"question": "a", "answer": 1}\n')
    args = ["--data", str(one), "--offset", "5", "--store", str(tmp_path / "s.sqlite")]
    r = run_ponder("bench", *args)
    assert r.returncode == 2 and "no problems from --offset 5" in r.stderr, r.stderr
    assert not (tmp_path / "s.sqlite").exists()


def test_a_second_bench_on_a_store_being_written_is_refused(tmp_path: Path) -> None:
    from ponder.bench.store import Store

    path = tmp_path / "s.sqlite"
    writer = Store(path)
    writer.claim()
    r = run_ponder("bench", "gsm8k", "--limit", "1", "-s", "greedy", "--store", str(path))
    assert r.returncode == 1 and "another ponder bench is writing this store" in r.stderr
    writer.close()  # the claim goes with it
    again = Store(path)
    again.claim()
    again.close()


def test_bad_sweep_files(tmp_path: Path) -> None:
    y = tmp_path / "s.yaml"
    y.write_text("tasks: [gsm8k]\nstrategies: [vote]\nfrobnicate: 1\n")
    r = run_ponder("bench", "--sweep", str(y))
    assert r.returncode == 2 and "frobnicate: Extra inputs are not permitted" in r.stderr
    y.write_text("tasks: [nope]\nstrategies: [vote]\n")
    r = run_ponder("bench", "--sweep", str(y))
    assert "unknown task 'nope' (choose from: gsm8k" in r.stderr
    y.write_text("tasks: [gsm8k\nstrategies: [vote]\n")
    r = run_ponder("bench", "--sweep", str(y))
    assert r.returncode == 2 and "s.yaml:2: not valid YAML" in r.stderr, r.stderr
    y.write_text("tasks: [gsm8k]\nstrategies: [{name: vote, n: 0}]\n")
    r = run_ponder("bench", "--sweep", str(y), "--store", str(tmp_path / "x.sqlite"))
    assert r.returncode == 2 and "bad options for strategy 'vote': n:" in r.stderr
    # a misspelt option is an error naming the file and the entry, not a silent default
    y.write_text("tasks: [gsm8k]\nstrategies: [vote, {name: beam, n: 2, mm: 9}]\n")
    r = run_ponder("bench", "--sweep", str(y), "--store", str(tmp_path / "x.sqlite"))
    assert r.returncode == 2, r.stderr
    assert "s.yaml:2: strategies[1]: bad options for strategy 'beam': mm: Extra inputs" in r.stderr
    # errors point at the line of the value at fault; a quoted number is not a number
    y.write_text(
        "tasks: [gsm8k]\nstrategies:\n  - greedy\n  - name: vote\n    n: 2\n"
        '    temperature: "0.7"\nseeds: [0]\n'
    )
    r = run_ponder("bench", "--sweep", str(y), "--store", str(tmp_path / "x.sqlite"))
    assert r.returncode == 2
    assert "s.yaml:6: strategies[1]: bad options for strategy 'vote': " in r.stderr
    assert "temperature: Input should be a valid number" in r.stderr, r.stderr
    y.write_text("tasks: [gsm8k]\nstrategies: [vote]\nseeds:\n  - 0\n  - x\n")
    r = run_ponder("bench", "--sweep", str(y), "--store", str(tmp_path / "x.sqlite"))
    assert r.returncode == 2 and "s.yaml:5: seeds.1: Input should be a valid integer" in r.stderr
    # YAML's own coercions (yes is true, 2.0 a float) and a key given twice are refused;
    # a named task takes no data-file fields (before: each silently ran something else)
    for text, says in (
        ("tasks: [gsm8k]\nstrategies: [vote]\nseeds: [yes]\n", "s.yaml:3: seeds.0: Input should"),
        ("tasks: [{name: gsm8k, limit: 2.0}]\nstrategies: [vote]\n", "s.yaml:1: tasks.0.limit:"),
        ("tasks: [gsm8k]\nstrategies: [vote]\nseeds: [1]\nseeds: [2]\n", "key 'seeds' given twice"),
        (
            "tasks: [{name: gsm8k, answer_type: choice}]\nstrategies: [vote]\n",
            "s.yaml:1: tasks.0: answer_type: read with 'data' (a file), not a named task",
        ),
    ):
        y.write_text(text)
        r = run_ponder("bench", "--sweep", str(y), "--store", str(tmp_path / "x.sqlite"))
        assert r.returncode == 2 and says in r.stderr, r.stderr
    r = run_ponder("bench", "gsm8k", "--answer-type", "choice", "--id-field", "id")
    assert r.returncode == 2
    assert "--answer-type, --id-field: read with --data FILE; task 'gsm8k' has" in r.stderr


def test_yaml_line_finds_the_node_or_its_nearest_ancestor() -> None:
    from ponder.bench.sweep import yaml_line

    text = "a: 1\nb:\n  - x\n  - {c: 2,\n     d: 3}\n"
    assert yaml_line(text, ("a",)) == 1
    assert yaml_line(text, ("b", 1, "d")) == 5
    assert yaml_line(text, ("b", 1, "missing")) == 4  # the mapping that lacks it
    assert yaml_line(text, ("b", 7)) == 2
    assert yaml_line("[unclosed", ("a",)) is None


def test_report_refuses_a_store_of_another_version(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    store_of_version(path, "999")
    r = run_ponder("report", str(path))
    assert r.returncode == 1 and "store schema version 999" in r.stderr
    r = run_ponder("report", str(tmp_path / "missing.sqlite"))
    assert r.returncode == 2 and "no such store" in r.stderr


def test_splits_are_selectable_and_an_unknown_split_lists_them(tmp_path: Path) -> None:
    from ponder.bench.sweep import TaskSpec

    r = run_ponder("bench", "gsm8k", "--split", "dev", "--store", str(tmp_path / "s.sqlite"))
    assert r.returncode == 2 and "no split 'dev' (choose from: test, train)" in r.stderr
    train = TaskSpec(name="gsm8k", split="train", limit=3)
    test = TaskSpec(name="gsm8k", limit=3)
    assert train.label() == "gsm8k:train" and test.label() == "gsm8k"
    assert {p.question for p in train.load()}.isdisjoint(p.question for p in test.load())
