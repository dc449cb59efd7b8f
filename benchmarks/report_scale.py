"""`ponder report` on a store of 1,000,000 samples: wall time and peak memory (targets: < 5 s,
< 2 GB RSS), with the report's own stages timed side by side.

The store is made with the store's own schema (Store, runs, problems, answer classes), and its
units and candidates are synthesized in bulk: 62,500 problems × one scored pool of 16 samples,
each problem with its own difficulty, answers drawn from a few classes (class 0 right), verifier
scores that lean towards right answers. (The harness writes the same rows one unit per
transaction; making a million that way would time the scripted engine, not the report.)

    .venv/bin/python benchmarks/report_scale.py [--problems 62500] [--pool 16] [--store PATH]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ponder.bench.analysis import load_groups, points
from ponder.bench.harness import Harness, Plan
from ponder.bench.store import Store
from ponder.types import Problem


def build(path: Path, problems: int, pool: int, seed: int = 0) -> None:
    from ponder.lm.scripted import ScriptedLM
    from ponder.runtime.engine import Engine

    rng = np.random.default_rng(seed)
    store = Store(path)
    engine = Engine(ScriptedLM(["x"], name="scripted-1m"))
    plan = Plan(
        kind="pool",
        unit={"name": "best_of_n", "n": 1, "temperature": 0.7, "verifier": {"name": "self_judge"}},
        n=pool,
        methods=["vote", "weighted_vote", "best_of_n"],
    )
    run = Harness(engine, store, model_sha256="scripted").open_run("synthetic", plan, 0)
    pids = store.add_problems(
        "synthetic",
        [
            Problem(question=f"synthetic problem {i}", id=f"s/{i}", gold="0")
            for i in range(problems)
        ],
    )
    sid = store.open_segment(run.rid)
    skill = rng.beta(1.2, 1.5, size=problems)  # each problem's chance of a right sample
    classes = np.where(
        rng.random((problems, pool)) < skill[:, None],
        0,
        rng.integers(1, 5, size=(problems, pool)),
    )
    classes[rng.random((problems, pool)) < 0.05] = -1  # no answer
    right = classes == 0
    scores = np.clip(rng.normal(0.45 + 0.2 * right, 0.2), 0.0, 1.0)
    completion = rng.integers(150, 450, size=(problems, pool))
    with store.transaction():
        store.db.executemany(
            "INSERT INTO classes VALUES (?,?,?,?,?)",
            ((pid, str(c), c, int(c == 0), str(c)) for pid in pids for c in range(5)),
        )
        for i, pid in enumerate(pids):
            units = []
            cands = []
            for u in range(pool):
                c = int(classes[i, u])
                answer = None if c < 0 else str(c)
                k, s = int(completion[i, u]), float(scores[i, u])
                units.append(
                    (
                        run.rid,
                        pid,
                        u,
                        sid,
                        answer,
                        c,
                        int(c == 0),
                        s,
                        120,
                        100,
                        k,
                        k + 130,
                        k + 120,
                        1,
                        2,
                        1e9 * (20 + 2 * k),
                        0.0,
                        1.0,
                        1.0,
                        None,
                        None,
                        "{}",
                    )
                )
                cands.append(
                    (
                        run.rid,
                        pid,
                        u,
                        0,
                        f"scripted sample {u}: \\boxed{{{answer}}}",
                        answer,
                        c,
                        int(c == 0),
                        s,
                        k,
                        "stop",
                        None,
                    )
                )
            store.db.executemany(
                "INSERT INTO units VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", units
            )
            store.db.executemany("INSERT INTO candidates VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", cands)
        total = int(completion.sum() * 2 + problems * pool * 160)
        store.db.execute(
            "UPDATE segments SET units = ?, tokens = ?, ended = started + 3600 WHERE sid = ?",
            (problems * pool, total, sid),
        )
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=62_500)
    ap.add_argument("--pool", type=int, default=16)
    ap.add_argument("--store", type=Path, default=Path("benchmarks/out/report_scale.sqlite"))
    args = ap.parse_args()
    samples = args.problems * args.pool
    if not args.store.exists():
        t0 = time.monotonic()
        build(args.store, args.problems, args.pool)
        print(
            f"built {samples:,} samples in {time.monotonic() - t0:.1f} s "
            f"({args.store.stat().st_size / 2**20:.0f} MiB)"
        )
    out = args.store.with_name(args.store.stem + "-report")
    # the command as a user runs it: a fresh process, imports and plots included
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ponder", "report", str(args.store), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        sys.exit(done.stderr)
    assert rss >= before
    # the stages in this process, for where the time goes
    store = Store(args.store, readonly=True)
    t1 = time.monotonic()
    groups = load_groups(store)
    t2 = time.monotonic()
    pts = [p for g in groups for p in points(g)]
    t3 = time.monotonic()
    store.close()
    print(f"samples: {samples:,} · points: {len(pts)}")
    print(
        f"ponder report: {wall:.2f} s wall (target < 5 s) · peak RSS {rss / 2**20:.2f} GiB "
        "(target < 2 GiB)"
    )
    print(f"  stages here: load {t2 - t1:.2f} s · estimators + bootstrap {t3 - t2:.2f} s")
    ok = wall < 5 and rss < 2 * 2**20
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
