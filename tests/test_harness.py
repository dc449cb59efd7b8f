from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_worker import engine_for
from helpers import schema_2_store, store_of_version
from ponder.bench.analysis import load_groups, points
from ponder.bench.harness import Harness, plan, unit_seed
from ponder.bench.store import SCHEMA_VERSION, Store, StoreError
from ponder.errors import TransientError
from ponder.runtime.strategy import make_strategy
from ponder.tasks.registry import get_task
from ponder.types import Problem

WORKER = Path(__file__).with_name("bench_worker.py")
# a store's rows without ids and timing: the benchmarks' helper (scale.py), one copy for both
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from scale import stored_rows  # noqa: E402


def metrics(path: Path) -> list[tuple[object, ...]]:
    store = Store(path, create=False)
    try:
        return sorted(
            (p.method, p.group, p.k, p.problems, round(p.accuracy, 12), p.tokens, p.flops)
            for g in load_groups(store)
            for p in points(g, resamples=200)
        )
    finally:
        store.close()


def count_units(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT COUNT(*) FROM units").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet


def worker(store: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(store), "30", "0.01"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_at_20_random_points_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    clean = tmp_path / "clean.sqlite"
    assert subprocess.run([sys.executable, str(WORKER), str(clean), "30", "0.01"]).returncode == 0
    total = count_units(clean)
    assert total == 30 * 6 + 30  # one pool of 6 (vote and weighted_vote share it) + greedy

    crashed = tmp_path / "crashed.sqlite"
    rng = random.Random(7)
    # kill points spread over the whole run: after a random number of stored units
    targets = sorted(rng.randrange(0, total) for _ in range(20))
    kills = 0
    for target in targets:
        proc = worker(crashed)
        deadline = time.monotonic() + 60
        while proc.poll() is None and count_units(crashed) < target:
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert kills >= 15  # most kills landed mid-run (a few may find the run already done)
    assert count_units(crashed) < total or kills < 20
    final = worker(crashed)
    assert final.wait() == 0
    if final.stderr:
        final.stderr.close()

    assert stored_rows(crashed) == stored_rows(clean)  # no unit lost, none duplicated, same content
    assert metrics(crashed) == metrics(clean)


async def test_a_rerun_computes_only_what_is_missing(tmp_path: Path) -> None:
    problems = get_task("gsm8k").load(limit=5)
    engine = engine_for({p.question: p.gold for p in problems}, 0.0)
    store = Store(tmp_path / "s.sqlite")
    harness = Harness(engine, store)
    (pool,) = plan([make_strategy("vote", n=4)])
    first = await harness.execute("gsm8k", problems[:3], pool, seed=1)
    calls = len(engine.policy.calls)  # type: ignore[attr-defined]
    assert first.progress.done == 12 and calls == 12
    # more problems and a bigger pool: only the new units run
    pool.n = 6
    second = await harness.execute("gsm8k", problems, pool, seed=1)
    assert second.progress.skipped == 12 and second.progress.done == 30 - 12
    assert len(engine.policy.calls) - calls == 18  # type: ignore[attr-defined]
    again = await harness.execute("gsm8k", problems, pool, seed=1)
    assert again.progress.total == 0 and again.progress.skipped == 30
    assert store.db.execute("SELECT COUNT(*) FROM units").fetchone()[0] == 30


async def test_units_are_seeded_by_problem_and_index_so_order_does_not_matter(
    tmp_path: Path,
) -> None:
    problems = get_task("gsm8k").load(limit=4)
    engine = engine_for({p.question: p.gold for p in problems}, 0.0)
    (pool,) = plan([make_strategy("vote", n=3)])
    a = Store(tmp_path / "a.sqlite")
    await Harness(engine, a).execute("gsm8k", problems, pool, seed=9)
    b = Store(tmp_path / "b.sqlite")
    await Harness(engine, b).execute("gsm8k", problems[::-1], pool, seed=9)
    q = "SELECT p.problem_id, unit, answer, correct FROM units JOIN problems p USING (pid)"
    assert sorted(a.db.execute(q)) == sorted(b.db.execute(q))
    assert unit_seed(9, "x", 0) != unit_seed(9, "x", 1) != unit_seed(10, "x", 1)


def test_pooled_strategies_share_one_pool_of_the_largest_n() -> None:
    plans = plan(
        [
            make_strategy("greedy"),
            make_strategy("vote", n=16),
            make_strategy("weighted_vote", n=8, verifier="self_judge"),
            make_strategy("best_of_n", n=4, verifier="self_judge"),
            make_strategy("vote", n=4, temperature=1.0),
        ]
    )
    pools = [p for p in plans if p.kind == "pool"]
    assert [p.kind for p in plans].count("direct") == 1
    scored = next(p for p in pools if "verifier" in p.unit)
    assert scored.n == 16 and set(scored.methods) == {"vote", "weighted_vote", "best_of_n"}
    other = next(p for p in pools if p.unit["temperature"] == 1.0)
    assert other.n == 4 and "verifier" not in other.unit
    assert len(pools) == 2


async def test_stop_lets_units_in_flight_finish_and_stores_them(tmp_path: Path) -> None:
    problems = get_task("gsm8k").load(limit=6)
    engine = engine_for({p.question: p.gold for p in problems}, 0.02)
    store = Store(tmp_path / "s.sqlite")
    (pool,) = plan([make_strategy("vote", n=4)])
    stop = asyncio.Event()
    seen = []

    def progress(p: object) -> None:
        seen.append(p)
        if len(seen) == 5:
            stop.set()  # as Ctrl-C does

    out = await Harness(engine, store, window=4).execute(
        "gsm8k", problems, pool, seed=0, stop=stop, on_progress=progress
    )
    stored = store.db.execute("SELECT COUNT(*) FROM units").fetchone()[0]
    assert out.interrupted and 4 <= out.progress.done < 24
    assert stored == out.progress.done  # every unit that finished was stored
    calls = len(engine.policy.calls)  # type: ignore[attr-defined]
    assert calls == stored  # nothing started after the stop was left unstored
    rest = await Harness(engine, store).execute("gsm8k", problems, pool, seed=0)
    assert not rest.interrupted and rest.progress.done == 24 - stored


async def test_a_failed_unit_is_not_stored_and_is_retried(tmp_path: Path) -> None:
    problems = get_task("gsm8k").load(limit=3)
    engine = engine_for({p.question: p.gold for p in problems}, 0.0)
    lm = engine.policy
    broken = {"on": True}
    lm._fail = lambda i, req: TransientError("down") if broken["on"] else None  # type: ignore[attr-defined]
    engine.scheduler.max_attempts = 1
    store = Store(tmp_path / "s.sqlite")
    (pool,) = plan([make_strategy("vote", n=2)])
    out = await Harness(engine, store).execute("gsm8k", problems, pool, seed=0)
    assert (
        out.progress.failed == 6
        and store.db.execute("SELECT COUNT(*) FROM units").fetchone()[0] == 0
    )
    broken["on"] = False
    out = await Harness(engine, store).execute("gsm8k", problems, pool, seed=0)
    assert out.progress.done == 6 and out.progress.failed == 0


async def test_equivalent_answers_share_a_class_graded_once(tmp_path: Path) -> None:
    from ponder.bench.harness import Harness as H

    problems = [Problem(question="half?", id="h", gold="1/2", kind="math")]
    engine = engine_for({}, 0.0)
    store = Store(tmp_path / "s.sqlite")
    h = H(engine, store)
    (pid,) = store.add_problems("t", problems)
    a = await h.classify(pid, problems[0], "0.5")
    b = await h.classify(pid, problems[0], "\\frac{1}{2}")
    c = await h.classify(pid, problems[0], "2")
    none = await h.classify(pid, problems[0], None)
    assert a == b == (0, True) and c == (1, False) and none == (-1, False)
    assert store.db.execute("SELECT COUNT(DISTINCT class) FROM classes").fetchone()[0] == 2


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    store_of_version(path, "0")
    with pytest.raises(StoreError) as e:
        Store(path)
    assert "schema version 0" in str(e.value) and f"reads version {SCHEMA_VERSION}" in str(e.value)
    assert "never mixed" in str(e.value)


def test_a_store_read_read_only_is_left_byte_for_byte(tmp_path: Path) -> None:
    """Reports, router fits and benchmarks open stores read-only: reading one (temporary
    tables included) leaves the file as it was, even a store in rollback-journal mode, which a
    writable open would switch to WAL."""
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.add_problems("t", [Problem(question="1+1?", id="a", gold="2", kind="math")])
    store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    before = path.read_bytes()
    reader = Store(path, readonly=True)
    assert load_groups(reader) == []  # builds its temporary tables
    assert reader.db.execute("SELECT COUNT(*) FROM problems").fetchone() == (1,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.add_problems("t", [Problem(question="2+2?", id="b", gold="4", kind="math")])
    with pytest.raises(StoreError, match="read-only"):
        reader.claim()
    reader.close()
    assert path.read_bytes() == before
    Store(path, create=False).close()  # a writer's open does change it: the check can fail
    assert path.read_bytes() != before
    with pytest.raises(StoreError, match="no such store"):
        Store(tmp_path / "absent.sqlite", readonly=True)
    assert not (tmp_path / "absent.sqlite").exists()


def test_a_store_of_an_older_schema_read_read_only_is_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    schema_2_store(path)
    reader = Store(path, readonly=True)
    assert reader.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    reader.close()


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_text("hello, not sqlite" * 100)
    with pytest.raises(StoreError, match="not a ponder store"):
        Store(junk)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="no meta table"):
        Store(other)
    # refused before anything is written to it: its journal mode stays the owner's
    db = sqlite3.connect(other)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    db.close()
    damaged = tmp_path / "damaged.sqlite"
    Store(damaged).close()
    db = sqlite3.connect(damaged)
    db.execute("DROP TABLE units")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="a damaged ponder store \\(no units table\\)"):
        Store(damaged)


def test_changed_data_under_the_same_ids_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.add_problems("t", [Problem(question="a?", id="1")])
    with pytest.raises(StoreError, match="different question"):
        store.add_problems("t", [Problem(question="b?", id="1")])
    store.add_problems("t", [Problem(question="c?", id="2", gold="42")])
    store.add_problems("t", [Problem(question="c?", id="2", gold="42")])  # the same: fine
    with pytest.raises(StoreError, match=r"different gold answer \('42', the data now says '43'\)"):
        store.add_problems("t", [Problem(question="c?", id="2", gold="43")])


def test_run_metadata_records_versions_and_config(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    engine = engine_for({}, 0.0)
    (pool,) = plan([make_strategy("vote", n=2)])
    run = Harness(engine, store, model_sha256="abc").open_run("gsm8k", pool, 4)
    assert run.versions["ponder"] and run.versions["python"] and run.model_sha256 == "abc"
    assert run.config["unit"]["name"] == "sample" and run.config["seed"] == 4
    assert json.loads(json.dumps(run.config)) == run.config
    # how answers were read is part of a run's identity: a run read another way (before
    # stated answers, a text's last number voted) is a run of its own, never resumed
    assert run.config["reading"] == "stated"
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr("ponder.bench.harness.READING", "loose")
        older = Harness(engine, store, model_sha256="abc").open_run("gsm8k", pool, 4)
    assert older.rid != run.rid and older.config["reading"] == "loose"


async def test_direct_units_are_started_twice_as_wide_as_pool_samples(tmp_path: Path) -> None:
    """A pool sample is one sequence, a direct unit a whole strategy (which also waits
    between its calls): with 8 slots, 16 samples are in flight at once but 32 searches."""
    problems = get_task("gsm8k").load(limit=40)
    engine = engine_for({p.question: p.gold for p in problems}, 0.01)
    live, most = 0, 0
    solve = engine.solve

    async def counted(*args: object, **kw: object) -> object:
        nonlocal live, most
        live += 1
        most = max(most, live)
        try:
            return await solve(*args, **kw)  # type: ignore[arg-type]
        finally:
            live -= 1

    engine.solve = counted  # type: ignore[method-assign]
    harness = Harness(engine, Store(tmp_path / "s.sqlite"))
    (pool,) = plan([make_strategy("vote", n=1)])
    await harness.execute("gsm8k", problems, pool)
    assert most == 16
    most = 0
    (direct,) = plan([make_strategy("greedy")])
    await harness.execute("gsm8k", problems, direct)
    assert most == 32


async def test_a_pool_stored_read_loosely_is_read_again_as_stated(tmp_path: Path) -> None:
    """A pool stored before stated answers (its samples' last numbers voted) replays as
    ponder reads samples today: no answer where a sample states none, the class of the
    stated answer where it states another than its last number."""
    from helpers import scripted_engine
    from ponder.answers import extract

    # text → (right read loosely, right read as stated, has a stated answer)
    replies = {
        "We start from 12 apples": (False, False, False),
        "\\boxed{7}": (True, True, True),
        "The answer is 7, not 12": (False, True, True),
        "\\boxed{8}": (False, False, True),
    }
    texts = list(replies)
    engine, _ = scripted_engine(lambda req, i, rng: texts[(req.seed or 0) % 4], native_n=False)
    problems = [Problem(question="12 apples, 5 eaten?", id="a", gold="7", kind="number")]
    store = Store(tmp_path / "s.sqlite")
    (pool,) = plan([make_strategy("vote", n=16)])
    with pytest.MonkeyPatch.context() as loose:  # the reading before stop 47
        loose.setattr("ponder.runtime.context.read_answer", lambda t, k: (extract(t, k), None))
        await Harness(engine, store).execute("t", problems, pool, seed=0)
    (stored,) = [g for g in load_groups(store) if g.kind == "pool"]
    (restated,) = [g for g in load_groups(store, restate=True) if g.kind == "pool"]
    drawn = [t for (t,) in store.db.execute("SELECT text FROM candidates ORDER BY unit")]
    assert set(drawn) == set(texts)  # every kind of sample was drawn
    assert list(stored.correct[0]) == [replies[t][0] for t in drawn]
    assert list(restated.correct[0]) == [replies[t][1] for t in drawn]
    assert [c >= 0 for c in restated.classes[0]] == [replies[t][2] for t in drawn]
    sevens = {int(c) for c, t in zip(restated.classes[0], drawn, strict=True) if replies[t][1]}
    assert len(sevens) == 1  # "\\boxed{7}" and "the answer is 7" are one class
    store.close()
    # a workload's replay of the pool reads it the same way
    from ponder.bench.workload import stored_pool

    for restate, column in ((False, 0), (True, 1)):
        (samples,) = stored_pool(tmp_path / "s.sqlite", restate=restate).samples
        assert [s.right for s in samples] == [replies[t][column] for t in drawn]
