"""Stated answers: a sample votes only with an answer it states (\\boxed{}, "the answer is N"),
not with a number its text merely mentions. Replayed on stored pools, no model: each sample's
text is read both ways (`ponder.answers.read_answer`: the stated answer, and the looser
reading ponder used before stop 47, which fell back to the text's last number), graded
against the problem's gold, and majority@k estimated for each reading on the same pools
(`majority_at`, every k-subset or a shared random set of them), paired by problem.

    .venv/bin/python benchmarks/stated.py benchmarks/reports/gsm8k-train-pool16.sqlite \
        benchmarks/reports/gsm8k-pool16.sqlite
"""

from __future__ import annotations

import argparse
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np

from ponder.answers import canonical, cluster, equivalent, read_answer
from ponder.bench.estimators import Pools, bootstrap_mean_ci, majority_at

Reading = tuple[str | None, bool]  # (the answer, right?)


def readings(text: str, gold: str, kind: str) -> tuple[Reading, Reading, bool]:
    """(stated reading, loose reading, whether the text states an answer)."""
    stated, unstated = read_answer(text, kind)
    loose = stated if stated is not None else unstated

    def graded(answer: str | None) -> Reading:
        if answer is None or canonical(answer, kind) is None:
            return None, False
        return answer, equivalent(answer, gold, kind)

    return graded(stated), graded(loose), stated is not None


def pools_of(store: Path) -> dict[str, tuple[Pools, Pools, str]]:
    """Per pool run ("task · answer mode"): the pools read both ways (complete pools only,
    code problems left out: a program's grade needs the sandbox) and how many samples state
    an answer and how often each kind is right."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT r.rid, r.task, json_extract(r.config, '$.unit.answer_with'), c.pid, c.unit,"
        " c.text, p.gold, p.kind FROM candidates c JOIN runs r USING (rid)"
        " JOIN problems p USING (pid) WHERE r.kind = 'pool' ORDER BY r.rid, c.pid, c.unit, c.idx"
    ).fetchall()
    by_run: dict[tuple[int, str], dict[int, list[tuple[Reading, Reading, bool]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    kinds: dict[int, str] = {}
    for rid, task, mode, pid, _, text, gold, kind in rows:
        if (kind or "math") == "code" or gold is None:
            continue
        label = f"{task} · {mode or 'reasoning'}"
        kinds[pid] = kind or "math"
        by_run[rid, label][pid].append(readings(text or "", gold, kind or "math"))

    def voted(readings: list[Reading], kind: str) -> list[tuple[str | None, None, bool]]:
        """A problem's samples as the vote sees them: equivalent answers one class (as a
        bench classes them: math-verify merges `0.5` and `\\frac12`)."""
        ids = cluster([a for a, _ in readings], kind)
        return [
            (None if c is None else str(c), None, ok)
            for c, (_, ok) in zip(ids, readings, strict=True)
        ]

    out = {}
    for (_, label), per in by_run.items():
        full = max(len(v) for v in per.values())
        complete = {p: v for p, v in per.items() if len(v) == full}
        stated = Pools.from_lists(
            [voted([s for s, _, _ in v], kinds[p]) for p, v in complete.items()]
        )
        loose = Pools.from_lists(
            [voted([lo for _, lo, _ in v], kinds[p]) for p, v in complete.items()]
        )
        every = [r for v in complete.values() for r in v]
        says = [lo[1] for _, lo, s in every if s]
        mute = [lo[1] for _, lo, s in every if not s]
        share = (
            f"{len(says) / len(every):.0%} (right {np.mean(says or [0]):.0%}; the others' "
            f"last number right {np.mean(mute or [0]):.0%})"
        )
        out[label] = (stated, loose, share)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stores", nargs="+", type=Path)
    args = ap.parse_args()
    print(
        "| store · pool | samples stating an answer | k | majority@k, loose | stated "
        "| Δ [95% paired CI] |"
    )
    print("|---|---|---|---|---|---|")
    for store in args.stores:
        for label, (stated, loose, share) in pools_of(store).items():
            n = int(stated.sizes.max())
            for k in sorted({1, 2, 4, 8, 16, n} & set(range(1, n + 1))):
                a, b = majority_at(loose, k), majority_at(stated, k)
                mean, lo, hi = bootstrap_mean_ci(b - a)
                print(
                    f"| {store.stem} · {label} ({len(stated)} problems) | {share} | {k} "
                    f"| {100 * np.nanmean(a):.1f}% | {100 * np.nanmean(b):.1f}% "
                    f"| {100 * mean:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |"
                )


if __name__ == "__main__":
    main()
