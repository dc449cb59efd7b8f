"""A sweep's units over Ray workers (`ponder bench --ray`): the same rows as without Ray, a
worker killed mid-sweep, scaling, and the one-line errors (a missing extra, an unreachable
address) that leave the store as it was.

The tests that start Ray are skipped where the [ray] extra is not installed, except under
scripts/test.sh, which installs it and makes a missing Ray a failure."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import run_ponder
from ponder.bench.harness import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import scale

try:
    import ray

    HAS_RAY = True
except ImportError:
    HAS_RAY = False

# scripts/test.sh installs the extra and sets PONDER_REQUIRE_RAY: there a missing Ray fails
needs_ray = pytest.mark.skipif(
    not HAS_RAY and not os.environ.get("PONDER_REQUIRE_RAY"),
    reason="the [ray] extra is not installed",
)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    from ponder.lm.remote import connect

    ray_ = connect(None)
    yield
    ray_.shutdown()


@needs_ray
async def test_units_on_ray_workers_store_the_rows_of_a_run_without_ray(
    local_ray: None, tmp_path: Path
) -> None:
    config = scale.scripted(latency=0.05, slots=2)
    items = scale.problems(10)
    await scale.local_run(tmp_path / "local.sqlite", config, items)
    got = await scale.ray_run(tmp_path / "ray.sqlite", config, items, workers=2)
    assert got["units"] == 40
    assert scale.stored_rows(tmp_path / "ray.sqlite") == scale.stored_rows(
        tmp_path / "local.sqlite"
    )
    # every problem's units on one worker; both workers had problems
    assert sum(got["problems_per_worker"]) == 10 + 4  # (+ the warm-up's)
    assert min(got["problems_per_worker"]) >= 4
    assert sum(got["units_per_worker"]) == 40 and min(got["units_per_worker"]) > 0


@needs_ray
async def test_a_worker_killed_mid_sweep_loses_and_duplicates_nothing(
    local_ray: None, tmp_path: Path
) -> None:
    config = scale.scripted(latency=0.2, slots=2)
    items = scale.problems(12)
    await scale.local_run(tmp_path / "local.sqlite", config, items)
    killed: list[int] = []
    warned: list[str] = []

    def kill_one(progress: Progress, units: Any) -> None:
        if not killed and progress.done >= 12:  # a quarter of the way
            victim = units.workers[0]
            killed.append(victim.pid)
            os.kill(victim.pid, signal.SIGKILL)

    got = await scale.ray_run(
        tmp_path / "ray.sqlite", config, items, 3, on_progress=kill_one, warn=warned.append
    )
    assert killed and got["units"] == 48
    assert len(warned) == 1 and f"pid {killed[0]}" in warned[0] and "died" in warned[0]
    assert scale.stored_rows(tmp_path / "ray.sqlite") == scale.stored_rows(
        tmp_path / "local.sqlite"
    )


@needs_ray
async def test_two_workers_about_double_a_latency_bound_sweep(
    local_ray: None, tmp_path: Path
) -> None:
    """A small `benchmarks/scale.py workers` (the full one is in RESULTS.md). Loose bound:
    ideal is 2×; the work is sleeping, so only serialized workers would miss it."""
    rows = await scale.scaling([1, 2], problems_=8, latency=0.5, slots=2, where=tmp_path)
    assert all(r["identical_rows"] for r in rows)
    assert rows[1]["speedup"] >= 1.5, rows


def store_rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT rid, pid, unit, answer FROM units"))
    finally:
        db.close()


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, list[str], list[tuple[object, ...]]]:
    """A store with a finished run (no Ray), and the command that made it."""
    data = tmp_path / "q.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"What is {i}+{i}?", "answer": str(2 * i)}) + "\n"
            for i in range(3)
        )
    )
    store = tmp_path / "s.sqlite"
    args = [
        "bench", "--data", str(data), "-s", "vote", "-n", "2", "--backend", "scripted",
        "--store", str(store),
    ]  # fmt: skip
    done = run_ponder(*args)
    assert done.returncode == 0, done.stderr
    return store, args, store_rows(store)


@needs_ray
def test_an_unreachable_ray_address_is_one_line_and_the_store_is_kept(
    stored: tuple[Path, list[str], list[tuple[object, ...]]],
) -> None:
    store, args, before = stored
    done = run_ponder(*args, "--ray", "127.0.0.1:1")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "no Ray cluster" in lines[0]
    assert store_rows(store) == before


def test_ray_without_the_extra_is_one_line_naming_it(
    stored: tuple[Path, list[str], list[tuple[object, ...]]],
) -> None:
    store, args, before = stored
    hide = (
        "import sys; sys.modules['ray'] = None; "
        f"sys.argv = ['ponder', *{[*args, '--ray']!r}]; "
        "from ponder.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: --ray needs Ray, which is not installed: pip install 'ponder[ray]'"]
    assert store_rows(store) == before


def test_not_an_address_after_ray_says_so() -> None:
    done = run_ponder("bench", "--ray", "gsm8k")
    assert done.returncode == 2
    assert "'gsm8k' is a task, not a Ray address" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    done = run_ponder("bench", "gsm8k", "--ray", "no such:host")
    assert done.returncode == 2 and "'no such:host' is not a Ray address" in done.stderr
    done = run_ponder("bench", "gsm8k", "--workers", "3")
    assert done.returncode == 2 and "--workers" in done.stderr and "--ray" in done.stderr


def test_ray_replicas_without_the_extra_is_one_line() -> None:
    hide = (
        "import sys; sys.modules['ray'] = None; "
        "sys.argv = ['ponder', 'serve', '--backend', 'scripted', '--ray']; "
        "from ponder.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --ray needs Ray, which is not installed: pip install 'ponder[ray]'"
    ]


@needs_ray
async def test_replicas_on_ray_actors_serve_and_fail_over(local_ray: None) -> None:
    import asyncio

    from ponder.lm import BackendConfig
    from ponder.lm.remote import remote_replicas
    from ponder.lm.replicas import Replica, ReplicaLM
    from ponder.runtime.engine import Engine

    config = BackendConfig(
        backend="scripted", slots=2, options={"replies": ["\\boxed{4}"], "latency_s": 0.05}
    )
    remotes = remote_replicas(config, 2)
    warned: list[str] = []
    router = ReplicaLM(
        [Replica(lm.name, lm, lm.ping) for lm in remotes], check_every=0, warn=warned.append
    )
    engine = Engine(router)
    first = await asyncio.gather(*(engine.solve(f"q{i}", "vote", n=3) for i in range(6)))
    assert all(r.answer == "4" for r in first)
    assert all(r.requests > 0 for r in router.replicas)
    ray.kill(remotes[0].actor)  # a replica's process is gone
    again = await asyncio.gather(*(engine.solve(f"q{i}", "vote", n=3) for i in range(6)))
    assert all(r.answer == "4" and r.error is None for r in again)
    assert not router.replicas[0].up and any("ray replica 0 is down" in w for w in warned)
    await engine.aclose()
