"""Shared test helpers: scripted engines."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from ponder.bench.analysis import Group
from ponder.bench.store import Store
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ReplyFn, ScriptedLM
from ponder.runtime.budget import Budget, Ledger
from ponder.runtime.context import Context
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.verifiers import Verifiers
from ponder.types import Message


async def no_sleep(_: float) -> None:
    return None


def scripted_engine(
    replies: Sequence[str] | ReplyFn,
    *,
    slots: int = 8,
    native_n: bool = True,
    n_with_stop: bool = True,
    **kw: object,
) -> tuple[Engine, ScriptedLM]:
    caps = Capabilities(slots=slots, n=native_n, n_with_stop=n_with_stop)
    lm = ScriptedLM(replies, capabilities=caps, **kw)  # type: ignore[arg-type]
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep)), lm


def run_ponder(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The `ponder` command line in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "ponder", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_benchmark(
    script: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`benchmarks/SCRIPT` with these arguments in a fresh process."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / script
    return subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def ponder_async(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """The `ponder` command line in a fresh process, awaited (the test's event loop goes on
    serving a fake server meanwhile): (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ponder",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def scripted_context(lm: ScriptedLM, budget: Budget | None = None, *, seed: int = 0) -> Context:
    """What a strategy gets, over a scripted model, for testing its parts directly."""
    return Context(
        policy=lm,
        scheduler=Scheduler(sleep=no_sleep),
        ledger=Ledger(budget),
        seed=seed,
        verifiers=Verifiers(),
    )


def count_renders(lm: ScriptedLM) -> tuple[list[str], Callable[[list[Message]], Awaitable[str]]]:
    """Record each conversation `lm` renders from now on (by its last message) and hand back
    the list with the unrecorded render, for working out expected prompts."""
    rendered: list[str] = []
    render = lm.render

    async def counting(messages: list[Message]) -> str:
        rendered.append(messages[-1].content)
        return await render(messages)

    lm.render = counting  # type: ignore[method-assign]
    return rendered, render


def store_of_version(path: Path, version: str) -> None:
    """A results store that says it was written by schema `version`."""
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    db.commit()
    db.close()


def schema_2_store(path: Path, then: str = "") -> None:
    """A results store as schema 2 wrote it (no traces table, no candidates.tool_calls), with
    the SQL `then` run on it."""
    Store(path).close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE traces; ALTER TABLE candidates DROP COLUMN tool_calls;"
        "UPDATE meta SET value = '2' WHERE key = 'schema_version';" + then
    )
    db.commit()
    db.close()


def need_set(name: str) -> None:
    """Skip the calling test where the data set is neither bundled nor on this machine (a
    clean clone has only the bundled sets; `ponder data pull NAME` fetches the others)."""
    import pytest

    from ponder.tasks.catalog import SETS
    from ponder.tasks.pull import where_is

    if where_is(SETS[name]).where == "missing":
        pytest.skip(f"data set {name} is not here (not bundled): ponder data pull {name}")


def group_of(keys: list[list[int]], correct: list[list[bool]]) -> Group:
    """A pooled group of answer classes (-1: no answer) and their correctness, one row per
    problem, every unit costing 1."""
    p, m = len(keys), len(keys[0])
    return Group(
        task="t",
        model="m",
        kind="pool",
        label="pool",
        config={},
        runs=[],
        pids=np.arange(p),
        classes=np.asarray(keys, np.int32),
        scores=np.full((p, m), np.nan),
        correct=np.asarray(correct, bool),
        sizes=np.full(p, m),
        cost={c: np.ones(p) for c in ("tokens", "flops", "dollars", "seconds")},
    )
