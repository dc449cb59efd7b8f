"""Scaling out (issue 27): a sweep's units over Ray workers, and replicas by prefix affinity.

workers   A sweep (vote, n=4) on 1, 2 and 4 Ray workers of a local Ray instance, each worker
          holding a scripted backend that takes a fixed time per call (latency-bound, so the
          two cores are not the limit). Throughput is units stored per second over the sweep
          itself (the workers started and warmed up first). The stored rows of every run are
          compared with those of a run without Ray: they must be identical.
          Targets: 2 workers ≥ 1.8× one worker's throughput, 4 workers ≥ 3.5×.
replicas  The same requests through one scripted replica that models llama.cpp's prefix
          caches (its slots' and the prompts it keeps in host memory) with 2 × S slots, and
          through two such replicas of S slots behind the router, by prefix affinity and by
          round-robin: every question
          asked in several rounds (a vote of n from one prefill each, as a client coming back
          to a question, or a search's steps), all questions in flight at once (with --pause,
          each client waits a seeded while before each round, so replicas are idle at times
          and the router spills a full replica's requests to an idle one). Measured: prompt
          tokens evaluated (not found cached) over every replica.
          Target: affinity ≤ 1.2× one replica's; round-robin is about 2×.

    /tmp/scale-venv/bin/python benchmarks/scale.py workers [--problems 32] [--latency 1.0]
    /tmp/scale-venv/bin/python benchmarks/scale.py replicas [--questions 9] [--rounds 4] [--pause 0]

(`workers` needs the [ray] extra; `replicas` does not.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ponder.bench.harness import Harness, Progress, plan
from ponder.bench.store import Store
from ponder.bench.sweep import model_sha256
from ponder.lm import BackendConfig
from ponder.lm.protocol import Capabilities
from ponder.lm.replicas import Replica, ReplicaLM, Routing
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import make_strategy
from ponder.types import Problem

REPLIES = ["Adding them up. \\boxed{4}", "So it is \\boxed{4}.", "I get \\boxed{5}."]
# columns that depend on timing or on which process wrote the row, not on what was computed
TIMING = {"sid", "latency", "call_seconds", "class"}


def problems(count: int, prefix: str = "p") -> list[Problem]:
    return [
        Problem(id=f"{prefix}{i}", question=f"What is {i} plus {i}? ({prefix})", gold=str(2 * i))
        for i in range(count)
    ]


def scripted(latency: float, slots: int) -> BackendConfig:
    return BackendConfig(
        backend="scripted",
        slots=slots,
        options={"replies": REPLIES, "latency_s": latency},
    )


def stored_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every stored row keyed by run key instead of row ids, without timing columns."""
    db = sqlite3.connect(path)
    keys = dict(db.execute("SELECT rid, run_key FROM runs"))
    out: dict[str, list[tuple[object, ...]]] = {}
    for table in ("units", "candidates"):
        cols = [c[1] for c in db.execute(f"PRAGMA table_info({table})")]
        keep = [i for i, c in enumerate(cols) if c not in TIMING]
        out[table] = sorted(
            (keys[r[0]], *(r[i] for i in keep[1:])) for r in db.execute(f"SELECT * FROM {table}")
        )
    out["runs"] = sorted(db.execute("SELECT run_key, config FROM runs"))
    out["classes"] = sorted(
        db.execute(
            "SELECT p.problem_id, c.key, c.correct FROM classes c JOIN problems p USING (pid)"
        )
    )
    db.close()
    return out


STRATEGIES = [make_strategy("vote", n=4)]


async def local_run(store: Path, config: BackendConfig, items: list[Problem]) -> None:
    """The reference: the same sweep in this process, without Ray."""
    engine = Engine.open(config.model_copy(update={"options": {"replies": REPLIES}}))
    db = Store(store)
    async with engine:
        harness = Harness(engine, db, model_sha256=model_sha256(config))
        for p in plan(STRATEGIES):
            await harness.execute("scale", items, p, seed=0)
    db.close()


async def ray_run(
    store: Path,
    config: BackendConfig,
    items: list[Problem],
    workers: int,
    *,
    on_progress: Callable[[Progress, Any], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The sweep on `workers` Ray workers: (units, seconds over the sweep, units per worker)."""
    from ponder.bench.distributed import RayUnits

    units = RayUnits(config, Prompting(), workers=workers, warn=warn)
    db = Store(store)
    try:
        async with units:
            sha = model_sha256(config)
            # warm-up in another store: every worker has run a unit before the clock starts
            warm = Store(store.with_suffix(".warmup.sqlite"))
            for p in plan(STRATEGIES):
                await Harness(units, warm, model_sha256=sha).execute(
                    "warmup", problems(2 * workers, "w"), p, seed=0
                )
            warm.close()
            before = [w.done for w in units.workers]
            harness = Harness(units, db, model_sha256=sha)
            started = time.monotonic()
            done = 0
            for p in plan(STRATEGIES):

                def watch(pr: Progress) -> None:
                    if on_progress is not None:
                        on_progress(pr, units)

                out = await harness.execute("scale", items, p, seed=0, on_progress=watch)
                done += out.progress.done
            seconds = time.monotonic() - started
            per_worker = [w.done - b for w, b in zip(units.workers, before, strict=True)]
            spread = [len(w.problems) for w in units.workers]
    finally:
        db.close()
    return {
        "workers": workers,
        "units": done,
        "seconds": seconds,
        "per_second": done / seconds,
        "units_per_worker": per_worker,
        "problems_per_worker": spread,
    }


async def scaling(
    counts: list[int], *, problems_: int, latency: float, slots: int, where: Path
) -> list[dict[str, Any]]:
    from ponder.lm.remote import connect

    connect(None)
    config = scripted(latency, slots)
    items = problems(problems_)
    reference = where / "local.sqlite"
    await local_run(reference, config, items)
    want = stored_rows(reference)
    out = []
    for count in counts:
        store = where / f"ray-{count}.sqlite"
        got = await ray_run(store, config, items, count)
        got["identical_rows"] = stored_rows(store) == want
        out.append(got)
    base = out[0]["per_second"]
    for row in out:
        row["speedup"] = row["per_second"] / base
    return out


# -- replicas ------------------------------------------------------------------------------
SYSTEM = "Solve it."


def cached_lm(slots: int, latency: float) -> ScriptedLM:
    return ScriptedLM(
        REPLIES,
        latency_s=latency,
        prefix_cache=True,
        capabilities=Capabilities(slots=slots, n_with_stop=True),
    )


async def _up() -> None:
    return None


async def affinity(
    *,
    questions: int,
    rounds: int,
    n: int,
    slots: int,
    latency: float,
    routing: Routing | None,
    pause: float = 0.0,
) -> dict[str, Any]:
    """Prompt tokens evaluated for `questions` × `rounds` of vote-`n`, the questions all in
    flight: on one replica (routing None) or two behind the router. `pause`: each client
    waits up to that long (seeded) before each round, so replicas go idle at times."""
    if routing is None:  # one replica with the slots of both
        lms = [cached_lm(2 * slots, latency)]
        policy: Any = lms[0]
    else:
        lms = [cached_lm(slots, latency) for _ in range(2)]
        policy = ReplicaLM(
            [Replica(f"replica {i}", lm, _up) for i, lm in enumerate(lms)],
            routing=routing,
            check_every=0,
        )
    engine = Engine(policy, prompting=Prompting(system=SYSTEM))
    items = [
        Problem(question=f"Question {i}: " + " ".join(f"fact{i}-{j}" for j in range(60)) + "?")
        for i in range(questions)
    ]

    pauses = random.Random(0)  # each client's own pace between its rounds (same every run)
    waits = [[pauses.uniform(0, pause) for _ in range(rounds)] for _ in items]

    async def ask(p: Problem, i: int) -> None:
        for r in range(rounds):
            await asyncio.sleep(waits[i][r])
            await engine.solve(p, "vote", n=n, seed=1000 * r + i)

    started = time.monotonic()
    await asyncio.gather(*(ask(p, i) for i, p in enumerate(items)))
    seconds = time.monotonic() - started
    await engine.aclose()
    return {
        "routing": routing or "one replica",
        "evaluated": sum(lm.prefilled for lm in lms),
        "calls": sum(len(lm.calls) for lm in lms),
        "per_replica": [len(lm.calls) for lm in lms],
        "spilled": getattr(policy, "spilled", 0),
        "seconds": round(seconds, 2),
    }


async def replicas(
    *, questions: int, rounds: int, n: int, slots: int, latency: float, pause: float = 0.0
) -> list[dict[str, Any]]:
    rows = []
    for routing in (None, "affinity", "round-robin"):
        rows.append(
            await affinity(
                questions=questions,
                rounds=rounds,
                n=n,
                slots=slots,
                latency=latency,
                routing=routing,  # type: ignore[arg-type]
                pause=pause,
            )
        )
    one = rows[0]
    for row in rows:
        row["vs_one_replica"] = round(row["evaluated"] / one["evaluated"], 3)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    w = sub.add_parser("workers")
    w.add_argument("--counts", default="1,2,4")
    w.add_argument("--problems", type=int, default=32)
    w.add_argument("--latency", type=float, default=1.0)
    w.add_argument("--slots", type=int, default=4)
    r = sub.add_parser("replicas")
    r.add_argument("--questions", type=int, default=9)
    r.add_argument("--pause", type=float, default=0.0)
    r.add_argument("--rounds", type=int, default=4)
    r.add_argument("--n", type=int, default=4)
    r.add_argument("--slots", type=int, default=4)
    r.add_argument("--latency", type=float, default=0.05)
    args = ap.parse_args()
    if args.what == "workers":
        with tempfile.TemporaryDirectory(prefix="ponder-scale-") as d:
            rows = asyncio.run(
                scaling(
                    [int(x) for x in args.counts.split(",")],
                    problems_=args.problems,
                    latency=args.latency,
                    slots=args.slots,
                    where=Path(d),
                )
            )
        for row in rows:
            row["seconds"] = round(row["seconds"], 2)
            row["per_second"] = round(row["per_second"], 2)
            row["speedup"] = round(row["speedup"], 2)
            print(json.dumps(row))
        ok = all(r["identical_rows"] for r in rows)
        print(f"identical rows in every run: {ok}", file=sys.stderr)
    else:
        for row in asyncio.run(
            replicas(
                questions=args.questions,
                rounds=args.rounds,
                n=args.n,
                slots=args.slots,
                latency=args.latency,
                pause=args.pause,
            )
        ):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
