"""Methods from several stores side by side, paired by problem: each direct run (and each pool
at a chosen k) of the stores, on the problems they all answered, with its accuracy and tokens
and its difference from the first with a 95% paired bootstrap interval. Problems are matched by
task and problem id, so runs made into different stores (e.g. before and after a change, or
resumed elsewhere) are compared on exactly the same problems.

    .venv/bin/python benchmarks/compare.py benchmarks/reports/gsm8k-tir.sqlite \\
        benchmarks/reports/gsm8k-tir-notebook.sqlite [--k 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ponder.bench.analysis import Point, load_groups, points
from ponder.bench.estimators import bootstrap_mean_ci
from ponder.bench.store import Store


def rows_of(path: Path, k: int | None) -> list[tuple[str, Point, dict[int, str]]]:
    """(label, point, store pid → problem id) for each direct run and each pool at k."""
    store = Store(path, readonly=True)
    ids = store.problem_names()
    out = []
    for g in load_groups(store):
        how = g.answer_with
        for p in points(g):
            if g.kind == "direct":
                out.append((f"{g.label} · {how} ({path.name})", p, ids))
            elif k is not None and p.k == k and p.method == "vote":
                out.append((f"vote@{k} · {how} ({path.name})", p, ids))
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("stores", type=Path, nargs="+")
    ap.add_argument("--k", type=int, default=None, help="also each pool's majority vote at k")
    args = ap.parse_args()
    rows = [r for path in args.stores for r in rows_of(path, args.k)]
    if not rows:
        raise SystemExit("error: no direct run or pool at that k in these stores")
    keyed = [
        (label, p, {ids[int(pid)]: float(v) for pid, v in zip(p.pids, p.per_problem, strict=True)})
        for label, p, ids in rows
    ]
    common = sorted(set.intersection(*(set(m) for _, _, m in keyed)))
    if not common:
        raise SystemExit("error: the runs share no problem")
    base = np.asarray([keyed[0][2][c] for c in common])
    print(f"{len(common)} problems answered by every run; Δ against the first row.\n")
    print("| run | accuracy [95% CI] | tokens / problem (all its own) | Δ [95% paired CI] |")
    print("|---|---|---|---|")
    for label, p, by_id in keyed:
        mine = np.asarray([by_id[c] for c in common])
        acc, lo, hi = bootstrap_mean_ci(mine)
        d, dlo, dhi = bootstrap_mean_ci(mine - base)
        print(
            f"| {label} | {100 * acc:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] | {p.tokens:,.0f} "
            f"| {100 * d:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}] |"
        )


if __name__ == "__main__":
    main()
