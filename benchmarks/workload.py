"""A workload budget against uniform allocation, replayed on a stored pool (no model runs).

`ponder bench TASK --budget-tokens-total B` spends one budget over a set where the next sample
is predicted to buy the most. A pool holds samples of the same distribution such a run draws
from (same model, prompt and temperature; unit u even has the seed the run gives a problem's
u-th sample, though the embedded llama.cpp does not repeat a text from its seed across runs),
so the run's picks can be replayed on the pool (`ponder.bench.workload.replay`: the run's own
picking code, tested equal to the live run on the deterministic scripted backend). For
each k, the budget is what uniform vote@k spends over the set (prompt + completion tokens,
the workload's own measure), and two allocations of it are compared problem by problem:

    uniform     vote@k on every problem
    leader      the workload: after a probe round robin (--probe), the next sample where the
                leader is least settled (1 - P(leader stays)) per token, damped by the samples
                a problem has (--damping)

each in `--orders` orders of every problem's samples (the first: the stored order), with a
95% paired bootstrap over problems of the difference to uniform. The workload is also set
against the best fixed strategy the pool can price (vote@k and each adaptive stopping rule,
as `ponder router` prices them) among those generating no more tokens than it, paired by
problem: "at equal generated tokens, does one budget over the set beat every fixed choice?"

The same question per problem: `-s auto` without a router (the price rule: sample one at a
time while 1 - P(leader stays) per token, damped by the samples so far, is at least the price)
is replayed at each price of `ponder.bench.tuning.PRICES` on the same orders and set against
the best fixed strategy generating no more.

    python benchmarks/workload.py --test benchmarks/reports/gsm8k-pool16.sqlite \\
        --out benchmarks/reports/workload-gsm8k

The replay checked against a live run (`ponder bench TASK --limit N --budget-tokens-total B
--store LIVE` with the pool's model and settings): `--live LIVE` replays that run's workload on
the pool's same problems and prints both side by side, with how many of the samples the live
run bought are the pool's own (the same text from the same seed: all on a deterministic
backend, few on the embedded llama.cpp, whose batches differ from run to run).

Live `-s auto` runs (`ponder bench TASK --limit N -s auto [--seeds S] --store LIVE`):
`--live-auto LIVE [LIVE ...]` prints each run, and all together, beside the replay on the
pool's same problems; `--live-vote STORE` adds a live uniform vote drawn beside them (`ponder
bench TASK --limit N -s vote -n K --store STORE`), vote@j over its first j samples, paired by
problem with the live auto runs: a comparison in which both sides are drawn, not replayed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from ponder.bench.estimators import bootstrap_mean_ci
from ponder.bench.router import build_table, fixed_options, vote_prefixes
from ponder.bench.store import Store
from ponder.bench.tuning import PRICES
from ponder.bench.workload import (
    DAMPING,
    GREEDY_PROBE,
    Replayed,
    StoredPool,
    Workload,
    replay,
    stored_pool,
    vote_right,
)
from ponder.consensus import Observation, PriceStop
from ponder.consensus import replay as replay_rule
from ponder.runtime.settings import tune_gc
from ponder.runtime.strategy import make_strategy
from ponder.search.auto import Auto
from ponder.types import AnswerWith


def orders_of(pool: StoredPool, orders: int, seed: int) -> list[StoredPool]:
    """The pool in `orders` orders: as stored, then each problem's samples shuffled."""
    n = len(pool.samples[0])
    out = [pool]
    for o in range(1, orders):
        rows = [
            np.random.default_rng([seed, o, i]).permutation(n) for i in range(len(pool.samples))
        ]
        out.append(pool.take([[int(j) for j in r] for r in rows]))
    return out


PRICE = PriceStop().price  # the rule's default


def uniform(pool: StoredPool, k: int) -> Replayed:
    """vote@k on every problem: a workload whose probe is k and that buys nothing after it."""
    everything = sum(s.cost for samples in pool.samples for s in samples)
    return replay(pool, Workload(tokens_total=everything, max_n=k, probe=k))


def main() -> None:
    tune_gc()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--test", type=Path, required=True, help="the store whose pool is replayed")
    ap.add_argument("--task", default=None)
    ap.add_argument("--answer-with", default=None, choices=get_args(AnswerWith))
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8], help="uniform vote@k budgets")
    ap.add_argument(
        "--probe",
        type=int,
        default=GREEDY_PROBE,
        help=f"samples each problem gets first [{GREEDY_PROBE}: the default]",
    )
    ap.add_argument(
        "--damping",
        type=float,
        default=DAMPING,
        help=f"the gain's damping by samples so far [{DAMPING}: the default; 0: none]",
    )
    ap.add_argument("--orders", type=int, default=8)
    ap.add_argument(
        "--window", type=int, default=16, help="picks in flight (a live run: 2 x slots)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--restate",
        action="store_true",
        help="read the pool's samples as ponder reads them today (stated answers only)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/workload"))
    ap.add_argument("--live", type=Path, nargs="*", default=[], help="live workload runs' stores")
    ap.add_argument(
        "--live-auto",
        type=Path,
        nargs="+",
        default=[],
        help="stores of live `-s auto` runs (no router; one run per seed)",
    )
    ap.add_argument(
        "--live-vote",
        type=Path,
        nargs="+",
        default=[],
        help="with --live-auto: stores of live `-s vote -n K` runs on the same problems (a "
        "uniform vote drawn beside auto; stored as a pool), vote@j over each run's first j "
        "samples",
    )
    args = ap.parse_args()

    if args.live_vote and not args.live_auto:
        ap.error("--live-vote: give the live auto runs it is set against (--live-auto)")
    pool = stored_pool(
        args.test, task=args.task, answer_with=args.answer_with, restate=args.restate
    )
    if args.live_auto:
        lines = versus_live_auto(pool, args.live_auto, args.live_vote, args.orders, args.seed)
        print("\n".join(lines))
        return
    if args.live:
        checks = [versus_live(pool, p, args.window, args.orders, args.seed) for p in args.live]
        print(f"# Live workload runs beside their replay on {pool.path}\n")
        for c in checks:
            print("\n".join(c.lines) + "\n")
        print("\n".join(paired_lines(checks)))
        return
    n = len(pool.samples[0])
    if max(args.ks) > n:
        ap.error(f"--ks: the pool holds {n} samples per problem")
    pools = orders_of(pool, args.orders, args.seed)
    fixed = fixed_arms(pool, args.task)
    rows: list[dict[str, object]] = []
    curves: dict[str, list[tuple[int, float]]] = {}
    for k in args.ks:
        right = {m: np.zeros((args.orders, len(pool.problems))) for m in ("uniform", "leader")}
        spent = {m: np.zeros(args.orders) for m in right}
        generated = {m: np.zeros((args.orders, len(pool.problems))) for m in right}
        samples = {m: np.zeros(args.orders) for m in right}
        for o, p in enumerate(pools):
            base = uniform(p, k)
            w = Workload(tokens_total=base.spent, max_n=n, probe=args.probe, damping=args.damping)
            runs = {"uniform": base, "leader": replay(p, w, window=args.window)}
            for m, r in runs.items():
                right[m][o] = r.right
                spent[m][o] = r.spent
                generated[m][o] = r.generated
                samples[m][o] = float(np.mean(r.samples))
                if o == 0 and k == max(args.ks):
                    curves[m] = r.curve
        per = {m: v.mean(axis=0) for m, v in right.items()}  # per problem, over orders
        for m in right:
            acc, lo, hi = bootstrap_mean_ci(per[m])
            row: dict[str, object] = {
                "budget_of": f"vote@{k}",
                "method": m,
                "accuracy": acc,
                "ci": [lo, hi],
                "tokens_per_problem": float(spent[m].mean()) / len(pool.problems),
                "generated_per_problem": float(generated[m].mean()),
                "samples_per_problem": float(samples[m].mean()),
            }
            if m == "leader":
                row["delta"] = list(bootstrap_mean_ci(per[m] - per["uniform"]))
                row["versus_fixed"] = versus_fixed(per[m], generated[m].mean(), fixed)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "test": str(args.test),
        "problems": len(pool.problems),
        "pool": n,
        "answer_with": pool.answer_with,
        "orders": args.orders,
        "window": args.window,
        "probe": args.probe,
        "damping": args.damping,
        "rows": rows,
        "most_accurate_fixed": most_accurate(rows, fixed),
        "auto": [priced_point(pools, price, n, fixed) for price in sorted({*PRICES, PRICE})],
        "default_price": PRICE,
    }
    (args.out / "workload.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = "\n".join(table_lines(summary)) + "\n"
    (args.out / "workload.md").write_text(text)
    draw(curves, pools, max(args.ks), args.out / "workload.png", str(args.test))
    print(text)
    print(f"written: {args.out}/workload.md, workload.json, workload.png")


def priced(pool: StoredPool, price: float, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`-s auto` without a router on every problem of the pool, in its order, as the live
    strategy runs it (waves of one): per problem whether its answer is right, the tokens it
    generated and the tokens it was charged (prompt + completion)."""
    rule = PriceStop(price=price)
    right, generated, cost = (np.zeros(len(pool.samples)) for _ in range(3))
    for i, samples in enumerate(pool.samples):
        got = replay_rule(rule, [Observation(s.cls, s.completion) for s in samples], n, 1)
        bought = samples[: got.samples]
        right[i] = any(s.right for s in bought if s.cls is not None and s.cls == got.answer)
        generated[i] = got.tokens
        cost[i] = sum(s.cost for s in bought)
    return right, generated, cost


def priced_point(
    pools: list[StoredPool], price: float, n: int, fixed: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, object]:
    """The price rule at one price over the orders, against the best fixed strategy
    generating no more."""
    runs = [priced(p, price, n) for p in pools]
    right = np.mean([r[0] for r in runs], axis=0)
    generated = float(np.mean([r[1].mean() for r in runs]))
    return {
        "price": price,
        **point_of(right, generated, fixed),
        "tokens_per_problem": float(np.mean([r[2].mean() for r in runs])),
    }


def matches(
    right: np.ndarray, generated: float, fixed: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, object]:
    """The costliest fixed strategy no more accurate than `right` (per problem; the point
    estimates), what share of its generated tokens `generated` is, and the paired difference."""
    below = {k: v for k, v in fixed.items() if v[0].mean() <= right.mean() + 1e-12}
    if not below:
        return {"name": None}
    name = max(below, key=lambda k: (below[k][1].mean(), below[k][0].mean()))
    acc, tokens = below[name]
    return {
        "name": name,
        "accuracy": float(acc.mean()),
        "generated_per_problem": float(tokens.mean()),
        "share": generated / float(tokens.mean()),
        "delta": list(bootstrap_mean_ci(right - acc)),
    }


def fixed_arms(pool: StoredPool, task: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every fixed strategy the pool prices, per problem in the pool's order: (accuracy,
    generated tokens), as `ponder router` prices them (vote@k, each adaptive rule)."""
    table = build_table([pool.path], task=task, answer_with=pool.answer_with, restate=pool.restated)
    where = {i: r for r, i in enumerate(table.ids)}
    rows = [where[p.id or p.question[:40]] for p in pool.problems]
    return {name: (a[rows], t[rows]) for name, (a, t) in fixed_options(table).items()}


def versus_fixed(
    right: np.ndarray, generated: float, fixed: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, object]:
    """The most accurate fixed strategy generating no more tokens a problem than the
    workload (`generated`), and the workload's paired difference to it."""
    within = {k: v for k, v in fixed.items() if v[1].mean() <= generated * (1 + 1e-9)}
    if not within:
        return {"name": None}
    name = max(within, key=lambda k: (within[k][0].mean(), -within[k][1].mean()))
    acc, tokens = within[name]
    return {
        "name": name,
        "accuracy": float(acc.mean()),
        "generated_per_problem": float(tokens.mean()),
        "delta": list(bootstrap_mean_ci(right - acc)),
    }


def most_accurate(
    rows: list[dict[str, object]], fixed: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, object]:
    """The most accurate fixed strategy, and the least the workload generates (over the
    budgets run) to reach its accuracy: None when no budget does."""
    name = max(fixed, key=lambda k: (fixed[k][0].mean(), -fixed[k][1].mean()))
    acc, tokens = float(fixed[name][0].mean()), float(fixed[name][1].mean())
    reach = [
        num(r["generated_per_problem"])
        for r in rows
        if r["method"] == "leader" and num(r["accuracy"]) >= acc - 1e-12
    ]
    return {
        "name": name,
        "accuracy": acc,
        "generated_per_problem": tokens,
        "workload_reaches_it_at": min(reach) if reach else None,
    }


def num(x: object) -> float:
    assert isinstance(x, int | float)
    return float(x)


def versus_live_auto(
    pool: StoredPool, lives: list[Path], votes: list[Path], orders: int, seed: int
) -> list[str]:
    """Live `-s auto` runs (the price rule; one per seed, from one store or several) beside
    their replay on the pool's same problems, each and together (per problem, the mean over
    runs) against the best fixed strategy generating no more and the costliest one no more
    accurate, paired by problem. With `votes`: live uniform votes drawn beside them, vote@j
    over each run's first j samples, each set against the live auto runs, paired by problem
    (the pool's fixed strategies are replayed; these are drawn, as auto's are)."""
    if len({p.resolve() for p in [*lives, *votes]}) < len(lives) + len(votes):
        raise SystemExit("--live-auto/--live-vote: a store is given twice")
    per_run: dict[str, list[tuple[str, int, int]]] = {}
    settings: dict[str, str] = {}  # what the runs must share → the first run that had it
    for live in lives:
        store = Store(live, readonly=True)
        try:
            runs = sorted((r for r in store.runs() if r.strategy == "auto"), key=lambda r: r.seed)
            if not runs or any(r.config.get("unit", {}).get("router") for r in runs):
                raise SystemExit(f"{live}: no run of auto without a router (the price rule)")
            for r in runs:
                name = f"seed {r.seed}" if len(lives) == 1 else f"{live}, seed {r.seed}"
                if name in per_run:
                    raise SystemExit(f"{live}: two auto runs with seed {r.seed}")
                # as auto ran: its price and temperature as the strategy resolves them (a
                # default price and the same price given are one setting)
                rule = stored_auto(r.config).priced()
                unit = {
                    **r.config.get("unit", {}),
                    "price": rule.price,
                    "temperature": rule.temperature,
                }
                settings.setdefault(json.dumps([r.task, r.model, unit], sort_keys=True), name)
                per_run[name] = store.db.execute(
                    "SELECT p.problem_id, u.correct, "
                    "u.policy_completion + u.verifier_completion "
                    "FROM units u JOIN problems p USING (pid) WHERE u.rid = ?",
                    (r.rid,),
                ).fetchall()
        finally:
            store.close()
    if len(settings) > 1:
        raise SystemExit(
            "the live auto runs differ in task, model or settings: "
            + "; ".join(f"{name}: {key}" for key, name in settings.items())
        )
    task, model, unit = json.loads(next(iter(settings)))
    price, n = float(unit["price"]), int(unit["n"])
    if unit.get("answer_with", "reasoning") != pool.answer_with:
        raise SystemExit(
            f"the live auto runs answer with {unit.get('answer_with')}, the pool's samples "
            f"with {pool.answer_with} (give --answer-with)"
        )
    like = (task, model, unit.get("answer_with", "reasoning"), float(unit["temperature"]))
    voted: dict[str, dict[str, list[tuple[int | None, bool, int]]]] = {}
    notes: list[str] = []
    for path in votes:
        got, dropped = live_votes(path, like)
        voted |= got
        notes += [f"{name}: {k} problems without all samples left out" for name, k in dropped]
    ids = sorted(
        set.intersection(
            *({pid for pid, _, _ in rows} for rows in per_run.values()),
            *(set(rows) for rows in voted.values()),
        )
    )
    mine = pool.only(ids)
    if not mine.problems:
        done = {name: len(rows) for name, rows in per_run.items()}
        done |= {name: len(rows) for name, rows in voted.items()}
        raise SystemExit(
            "no problem of the pool is done in every live run (problems done: "
            + ", ".join(f"{name} {k}" for name, k in done.items())
            + ")"
        )
    # the replay can draw no more than the pool holds: a live n above it is replayed capped
    capped = min(n, len(mine.samples[0]))
    if capped < n:
        notes.append(
            f"The replay stops at the pool's {capped} samples a problem; the live runs could "
            f"draw up to {n} (a problem the rule keeps open past {capped} is capped replayed)."
        )
    order = [p.id for p in mine.problems]
    fixed = fixed_arms(mine, None)
    points: dict[str, dict[str, object]] = {}
    rights, spends = [], []
    for name, rows in per_run.items():
        by_id = {pid: (float(ok), float(gen)) for pid, ok, gen in rows}
        rights.append(np.array([by_id[i][0] for i in order]))
        spends.append(float(np.mean([by_id[i][1] for i in order])))
        points[f"live, {name}"] = point_of(rights[-1], spends[-1], fixed)
    if len(per_run) > 1:
        points[f"live, {len(per_run)} runs"] = point_of(
            np.mean(rights, axis=0), float(np.mean(spends)), fixed
        )
    points[f"replayed ({orders} orders, at most {capped})"] = priced_point(
        orders_of(mine, orders, seed), price, capped, fixed
    )
    lines = [
        f"# `-s auto` (price {price:g}, n {n}) live on {len(order)} problems "
        f"({', '.join(map(str, lives))}), beside its replay on {pool.path}",
        "",
        "| | accuracy [95% CI] | generated / problem | best fixed generating no more "
        "| Δ vs it [95% paired CI] | costliest fixed no more accurate | generated × its "
        "| Δ vs it [95% paired CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, point in points.items():
        interval = point["ci"]
        assert isinstance(interval, list)
        lines.append(
            f"| {name} | {100 * num(point['accuracy']):.1f}% [{100 * interval[0]:.1f}, "
            f"{100 * interval[1]:.1f}] | {num(point['generated_per_problem']):,.0f} | "
            f"{versus_cells(point['versus_fixed'])} | {versus_cells(point['matches'], True)} |"
        )
    if voted:
        lines += live_vote_lines(voted, order, rights, spends)
    return lines + [f"\n{note}" for note in notes]


def stored_auto(config: dict[str, Any]) -> Auto:
    """The `auto` strategy a stored run (no router) ran, from its stored options."""
    options = {k: v for k, v in config.get("unit", {}).items() if k != "name"}
    auto = make_strategy("auto", **options)
    assert isinstance(auto, Auto)
    return auto


def live_votes(
    path: Path, like: tuple[str, str, str, float]
) -> tuple[dict[str, dict[str, list[tuple[int | None, bool, int]]]], list[tuple[str, int]]]:
    """Each live uniform vote in a store (`ponder bench -s vote -n K` stores a pool: K
    samples per problem, one per unit), which must sample as the auto runs do (`like`: task,
    model, answer mode, temperature): per problem id, its samples in order (answer class,
    right, generated tokens), only problems with all K; and per run, the problems left out."""
    store = Store(path, readonly=True)
    try:
        runs = sorted((r for r in store.runs() if r.kind == "pool"), key=lambda r: r.seed)
        if not runs:
            raise SystemExit(f"{path}: no pool of samples (`ponder bench -s vote -n K`)")
        out: dict[str, dict[str, list[tuple[int | None, bool, int]]]] = {}
        dropped: list[tuple[str, int]] = []
        for r in runs:
            name = f"{path}, seed {r.seed}"
            if name in out:
                raise SystemExit(f"{path}: two pools with seed {r.seed}")
            unit = r.config.get("unit", {})
            mine = (r.task, r.model, unit.get("answer_with", "reasoning"), unit.get("temperature"))
            if mine != like:
                raise SystemExit(
                    f"{name}: samples {mine} (task, model, answer mode, temperature), the auto "
                    f"runs {like}"
                )
            samples: dict[str, list[tuple[int | None, bool, int]]] = {}
            for pid, cls, ok, gen in store.db.execute(
                "SELECT p.problem_id, c.class, c.correct, c.completion_tokens FROM candidates c "
                "JOIN problems p USING (pid) WHERE c.rid = ? ORDER BY c.pid, c.unit, c.idx",
                (r.rid,),
            ):
                samples.setdefault(pid, []).append((None if cls < 0 else cls, bool(ok), gen))
            if not samples:
                raise SystemExit(f"{name}: no samples stored")
            k = max(len(s) for s in samples.values())
            out[name] = {pid: s for pid, s in samples.items() if len(s) == k}
            if len(out[name]) < len(samples):
                dropped.append((name, len(samples) - len(out[name])))
        return out, dropped
    finally:
        store.close()


def live_vote_lines(
    voted: dict[str, dict[str, list[tuple[int | None, bool, int]]]],
    order: list[str],
    rights: list[np.ndarray],
    spends: list[float],
) -> list[str]:
    """Live vote@j (each run's first j samples) against the live auto runs, together."""
    auto = np.mean(rights, axis=0)
    lines = [
        "",
        f"Live uniform votes on the same problems, against the live auto runs together "
        f"({100 * auto.mean():.1f}% at {np.mean(spends):,.0f} generated tokens a problem):",
        "",
        "| live vote | accuracy [95% CI] | generated / problem "
        "| Δ live auto − it [95% paired CI] |",
        "|---|---|---|---|",
    ]
    for name, per in voted.items():
        # per problem (rows in `order`), the vote's correctness and tokens after j samples
        prefixes = np.array(
            [vote_prefixes([c for c, _, _ in per[i]], [ok for _, ok, _ in per[i]]) for i in order]
        )
        spent_by = np.cumsum([[t for _, _, t in per[i]] for i in order], axis=1)
        for j in range(1, prefixes.shape[1] + 1):
            right = prefixes[:, j - 1]
            spent = float(spent_by[:, j - 1].mean())
            acc, lo, hi = bootstrap_mean_ci(right)
            d = list(bootstrap_mean_ci(auto - right))
            lines.append(
                f"| {name}: vote@{j} | {100 * acc:.1f}% [{100 * lo:.1f}, "
                f"{100 * hi:.1f}] | {spent:,.0f} | {ci(d)} |"
            )
    return lines


def point_of(
    right: np.ndarray, generated: float, fixed: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, object]:
    """Accuracy (per problem `right`) at `generated` tokens a problem, against the best fixed
    strategy generating no more and the costliest one no more accurate."""
    acc, lo, hi = bootstrap_mean_ci(right)
    return {
        "accuracy": acc,
        "ci": [lo, hi],
        "generated_per_problem": generated,
        "versus_fixed": versus_fixed(right, generated, fixed),
        "matches": matches(right, generated, fixed),
    }


def at(strategy: dict[str, object]) -> str:
    """A fixed strategy: its name, accuracy and generated tokens a problem."""
    return (
        f"{strategy['name']}: {100 * num(strategy['accuracy']):.1f}% at "
        f"{num(strategy['generated_per_problem']):,.0f}"
    )


def ci(values: object) -> str:
    """A difference in points with its interval: +d [lo, hi]."""
    assert isinstance(values, list)
    return f"{100 * values[0]:+.1f} [{100 * values[1]:+.1f}, {100 * values[2]:+.1f}]"


def versus_cells(strategy: object, share: bool = False) -> str:
    """Table cells of a comparison with a fixed strategy: which, [its tokens share,] the Δ.
    Without one: none generating so few tokens (`versus_fixed`), or none as inaccurate
    (`matches`, the cells with the share)."""
    assert isinstance(strategy, dict)
    if not strategy.get("name"):
        return "none | — | —" if share else "none that cheap | —"
    named, delta = at(strategy), ci(strategy["delta"])
    return f"{named} | {num(strategy['share']):.2f} | {delta}" if share else f"{named} | {delta}"


@dataclass
class LiveCheck:
    """A live workload run beside its replay, per problem of the run."""

    lines: list[str]
    live: np.ndarray  # 1.0 where the live run's vote is right
    leader: np.ndarray  # the leader rule replayed at the live budget: right, mean over orders
    uniform: np.ndarray  # uniform vote@k (the largest k within the budget), mean over orders
    k: int


def versus_live(pool: StoredPool, live: Path, window: int, orders: int, seed: int) -> LiveCheck:
    """A live workload run beside its replay on the pool (the live run's problems only), and
    both beside uniform voting at the largest k the live budget affords on the pool."""
    store = Store(live, readonly=True)
    try:
        (run,) = [r for r in store.runs() if r.config.get("workload")]
        cfg = run.config["workload"]
        ids = [
            pid
            for (pid,) in store.db.execute(
                "SELECT problem_id FROM problems WHERE task = ? ORDER BY position LIMIT ?",
                (run.task, cfg["problems"]),
            )
        ]
        bought = texts(store, run.rid)
        spent = store.db.execute(
            "SELECT SUM(policy_prompt + policy_completion + verifier_prompt + verifier_completion)"
            " FROM units WHERE rid = ?",
            (run.rid,),
        ).fetchone()[0]
        right = live_right(store, run.rid)
    finally:
        store.close()
    w = Workload(
        tokens_total=cfg["tokens_total"],
        max_n=cfg["max_n"],
        probe=cfg["probe"],
        damping=cfg.get("damping", 0.0),  # runs before the damping ran without it
        answer_with=run.config["unit"].get("answer_with", "reasoning"),
    )
    mine = pool.only(ids)
    if len(mine.problems) != len(ids):
        raise SystemExit(
            f"{live}: {len(ids) - len(mine.problems)} of its problems are not in the pool"
        )
    again = replay(mine, w, window=window)
    pool_store = Store(pool.path, readonly=True)
    try:
        stored = texts(pool_store, pool.rid)
    finally:
        pool_store.close()
    same = sum(stored.get(key) == text for key, text in bought.items())
    n = len(mine.samples[0])
    spends = {j: uniform(mine, j).spent for j in range(1, n + 1)}
    k = max([1] + [j for j, spent_j in spends.items() if spent_j <= w.tokens_total])
    shuffled = orders_of(mine, orders, seed)
    leader = np.mean([replay(p, w, window=window).right for p in shuffled], axis=0)
    base = np.mean([uniform(p, k).right for p in shuffled], axis=0)
    per_live = [len([key for key in bought if key[0] == i]) for i in ids]
    lines = [
        f"## {live}",
        "",
        f"budget {w.tokens_total:,} tokens over {len(ids)} problems, probe {w.probe}, "
        f"at most {w.max_n} samples a problem",
        "",
        "| | tokens spent | vote right on | samples | samples per problem |",
        "|---|---|---|---|---|",
        f"| live | {spent:,} | {sum(right.values())} | {len(bought)} | {per_live} |",
        f"| replay (stored order) | {again.spent:,} | {sum(again.right)} | "
        f"{sum(again.samples)} | {again.samples} |",
        f"| replay (mean of {orders} orders) | | {leader.sum():.1f} | | |",
        f"| uniform vote@{k} on the pool (mean of {orders} orders) | "
        f"{spends[k]:,} (stored order) | {base.sum():.1f} | {k * len(ids)} | |",
        "",
        f"{same} of the {len(bought)} samples the live run bought have the text of the pool's "
        "sample with the same seed.",
    ]
    live_ok = np.array([float(right.get(i, False)) for i in ids])
    return LiveCheck(lines, live_ok, leader, base, k)


def paired_lines(checks: list[LiveCheck]) -> list[str]:
    """The live runs together: live and replayed accuracy against uniform, paired by problem."""
    live = np.concatenate([c.live for c in checks])
    leader = np.concatenate([c.leader for c in checks])
    base = np.concatenate([c.uniform for c in checks])
    ks = ", ".join(dict.fromkeys(f"vote@{c.k}" for c in checks))
    lines = [
        f"## Together: {len(live)} problems, against uniform {ks} at each run's budget",
        "",
        "| | accuracy [95% CI] | Δ vs uniform [95% paired CI] |",
        "|---|---|---|",
    ]
    for name, values in (("live workload", live), ("leader rule replayed", leader)):
        acc, lo, hi = bootstrap_mean_ci(values)
        d, dlo, dhi = bootstrap_mean_ci(values - base)
        lines.append(
            f"| {name} | {100 * acc:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] | "
            f"{100 * d:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}] |"
        )
    acc, lo, hi = bootstrap_mean_ci(base)
    lines.append(f"| uniform (pool) | {100 * acc:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] | — |")
    return lines


def texts(store: Store, rid: int) -> dict[tuple[str, int], str]:
    """(problem id, unit) → the sample's text, for one run."""
    return {
        (pid, unit): text
        for pid, unit, text in store.db.execute(
            "SELECT p.problem_id, c.unit, c.text FROM candidates c JOIN problems p USING (pid)"
            " WHERE c.rid = ? AND c.idx = 0",
            (rid,),
        )
    }


def live_right(store: Store, rid: int) -> dict[str, bool]:
    """Per problem id: whether the vote over the live run's samples is right (as the workload
    votes)."""
    rows = store.db.execute(
        "SELECT p.problem_id, u.class, u.correct FROM units u JOIN problems p USING (pid)"
        " WHERE u.rid = ? ORDER BY u.pid, u.unit",
        (rid,),
    ).fetchall()
    samples: dict[str, tuple[list[int | None], list[bool]]] = {}
    for pid, cls, ok in rows:
        classes, right = samples.setdefault(pid, ([], []))
        classes.append(None if cls < 0 else cls)
        right.append(bool(ok))
    return {pid: vote_right(*both) for pid, both in samples.items()}


def table_lines(summary: dict[str, object]) -> list[str]:
    lines = [
        f"# A workload budget against uniform allocation, replayed on {summary['test']}",
        "",
        f"{summary['problems']} problems, a pool of {summary['pool']} samples "
        f"({summary['answer_with']}), {summary['orders']} orders, {summary['window']} picks "
        f"in flight, probe {summary['probe']}, damping {summary['damping']}; the budget counts "
        "prompt + completion tokens (a workload budget's measure); generated tokens are the "
        "completions alone.",
        "",
        "| budget (uniform's spend) | allocation | accuracy [95% CI] | Δ vs uniform [95% paired CI]"
        " | tokens / problem | generated / problem | samples / problem "
        "| best fixed generating no more | Δ vs it [95% paired CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = summary["rows"]
    assert isinstance(rows, list)
    for r in rows:
        lo, hi = r["ci"]
        delta = r.get("delta")
        versus = versus_cells(r["versus_fixed"]) if "versus_fixed" in r else "— | —"
        lines.append(
            f"| {r['budget_of']} | {r['method']} | {100 * r['accuracy']:.1f}% [{100 * lo:.1f}, "
            f"{100 * hi:.1f}] | {'—' if delta is None else ci(delta)} | "
            f"{r['tokens_per_problem']:,.0f} | {r['generated_per_problem']:,.0f} | "
            f"{r['samples_per_problem']:.2f} | {versus} |"
        )
    lines += [
        "",
        "`-s auto` without a router (the price rule, one sample at a time; * the default price):",
        "",
        "| price | accuracy [95% CI] | generated / problem | tokens / problem "
        "| best fixed generating no more | Δ vs it [95% paired CI] "
        "| costliest fixed no more accurate | generated × its | Δ vs it [95% paired CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    auto = summary["auto"]
    assert isinstance(auto, list)
    for r in auto:
        lo, hi = r["ci"]
        star = "*" if r["price"] == summary["default_price"] else ""
        lines.append(
            f"| {r['price']:g}{star} | {100 * r['accuracy']:.1f}% [{100 * lo:.1f}, "
            f"{100 * hi:.1f}] | {r['generated_per_problem']:,.0f} | "
            f"{r['tokens_per_problem']:,.0f} | {versus_cells(r['versus_fixed'])} | "
            f"{versus_cells(r['matches'], True)} |"
        )
    top = summary["most_accurate_fixed"]
    assert isinstance(top, dict)
    reach = top["workload_reaches_it_at"]
    lines += [
        "",
        f"The most accurate fixed strategy: {top['name']}, {100 * top['accuracy']:.1f}% at "
        f"{top['generated_per_problem']:,.0f} generated tokens a problem; "
        + (
            f"the workload reaches it at {reach:,.0f} "
            f"({reach / top['generated_per_problem']:.2f}×)."
            if reach is not None
            else "the workload reaches it at none of these budgets."
        ),
    ]
    return lines


def draw(
    curves: dict[str, list[tuple[int, float]]],
    pools: list[StoredPool],
    k: int,
    path: Path,
    title: str,
) -> None:
    """Each allocation's anytime curve (the stored order) and uniform vote@j over orders."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = len(pools[0].problems)
    n = len(pools[0].samples[0])
    points = []
    for j in range(1, n + 1):
        runs = [uniform(p, j) for p in pools]
        points.append(
            (
                np.mean([r.spent for r in runs]) / problems,
                100 * np.mean([np.mean(r.right) for r in runs]),
            )
        )
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(*zip(*points, strict=True), marker="o", ms=3, label="uniform vote@k (over orders)")
    for name, curve in curves.items():
        if name == "uniform" or not curve:
            continue
        ax.plot(
            [t / problems for t, _ in curve],
            [100 * a for _, a in curve],
            lw=1,
            label=f"{name} workload, anytime (budget of vote@{k}, stored order)",
        )
    ax.set_xlabel("tokens per problem (prompt + completion)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"workload budget: {title}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
