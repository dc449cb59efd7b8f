"""Adaptive compute, live and side by side in one run: majority vote over a fixed pool of n
samples, adaptive self-consistency (a stopping rule) and DeepConf online, on the same problems,
model and machine, one after another in one process; then the ratios (wall time, generated
tokens) and paired accuracy differences against the fixed pool, and the same stopping rule
replayed on that pool (the offline prediction checked against the live run).

    .venv/bin/python benchmarks/adaptive.py live --problems 30 \
        --store benchmarks/out/adaptive.sqlite
    .venv/bin/python benchmarks/adaptive.py table --store benchmarks/out/adaptive.sqlite

    # each stopping rule's settings and each selection rule's (parameter, signal) chosen on a
    # train pool, judged on a test pool (replayed)
    .venv/bin/python benchmarks/adaptive.py tune \
        --train benchmarks/reports/gsm8k-train-pool16.sqlite \
        --test benchmarks/reports/gsm8k-pool16.sqlite

    # an answer-level selector (logistic regression over vote share and the supporters'
    # confidences) fitted on a train pool, judged on test pools beside majority@k
    .venv/bin/python benchmarks/adaptive.py learned \
        --train benchmarks/reports/gsm8k-train-pool16.sqlite \
        --test benchmarks/reports/gsm8k-pool16.sqlite

    # a pool of TIR samples at every k, and stopping rules replayed on it, against the CoT
    # pool's majority@16 on the same problems
    .venv/bin/python benchmarks/adaptive.py against --pool benchmarks/reports/gsm8k-pool16.sqlite

    # a live run (any strategy) beside the CoT pool's majority@16 on the same problems:
    # accuracy, generated tokens and wall time
    .venv/bin/python benchmarks/adaptive.py versus --pool benchmarks/reports/gsm8k-pool16.sqlite \
        --live STORE

    # waves against rolling (the next sample started as one finishes), replayed on a pool
    .venv/bin/python benchmarks/adaptive.py rolling --pool benchmarks/reports/gsm8k-pool16.sqlite

    # DeepConf online over group windows, warm-ups and percentiles (the tune grid fixes the
    # window at 32 and the warm-up at 4), chosen on train, the choice judged on test
    .venv/bin/python benchmarks/adaptive.py online-grid \
        --train benchmarks/reports/gsm8k-train-pool16.sqlite \
        --test benchmarks/reports/gsm8k-pool16.sqlite

Resumable: the store keeps every finished unit, and a run already complete is not run again
(its wall time is then the one it was measured at).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from ponder.bench.analysis import Group, direct_outcomes, load_groups, points
from ponder.bench.confidence import (
    STOPPING,
    PoolSignals,
    load_signals,
    paired,
    replay_online,
    replay_points,
    replay_rule,
)
from ponder.bench.estimators import Pools, bootstrap_mean_ci, majority_at
from ponder.bench.harness import Harness, plan
from ponder.bench.store import Store
from ponder.bench.sweep import model_sha256
from ponder.bench.tuning import TOLERANCE, Reference, baseline, tune_selection, tune_stopping
from ponder.consensus import ESC, BetaStop, Observation
from ponder.consensus.replay import expected
from ponder.lm import BackendConfig
from ponder.plugins import parse_options
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.settings import tune_gc
from ponder.runtime.strategy import make_strategy
from ponder.signals import SIGNALS
from ponder.tasks.registry import get_task


def methods(
    n: int, rule: str, adaptive: list[str], deepconf: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """vote@n, then adaptive and DeepConf online with their defaults or the given settings
    (KEY=VALUE, e.g. those `tune` chose on a train pool)."""
    return [
        ("vote", {"n": n}),
        ("adaptive", {"n": n, "rule": rule, **parse_options(adaptive, "--adaptive")}),
        ("deepconf", {"n": n, **parse_options(deepconf, "--deepconf")}),
    ]


async def live(args: argparse.Namespace) -> None:
    problems = get_task(args.task).load(limit=args.problems, offset=args.offset, split=args.split)
    config = BackendConfig(model=args.model, base_url=args.base_url, slots=args.slots)
    engine = Engine.open(config, prompting=Prompting(max_tokens=args.max_tokens))
    store = Store(args.store)
    async with engine:
        harness = Harness(engine, store, model_sha256=model_sha256(config))
        for name, options in methods(args.n, args.rule, args.adaptive, args.deepconf):
            for p in plan([make_strategy(name, **options)]):
                done = await harness.execute(args.task, problems, p, seed=args.seed)
                print(f"{name}: {done.progress.done} units in {done.seconds:.0f} s", flush=True)
    store.close()


def wall(store: Store, rids: list[int]) -> float:
    marks = ",".join(str(r) for r in rids)
    (seconds,) = store.db.execute(
        f"SELECT SUM(COALESCE(ended, started) - started) FROM segments WHERE rid IN ({marks})"
    ).fetchone()
    return float(seconds or 0.0)


def generated(store: Store, rids: list[int]) -> tuple[float, int]:
    marks = ",".join(str(r) for r in rids)
    total, problems = store.db.execute(
        f"SELECT SUM(policy_completion), COUNT(DISTINCT pid) FROM units WHERE rid IN ({marks})"
    ).fetchone()
    return float(total or 0), int(problems or 0)


def table(args: argparse.Namespace) -> None:
    store = Store(args.store, readonly=True)
    groups = load_groups(store)
    pool = next(g for g in groups if g.kind == "pool")
    pool_points = {p.k: p for p in points(pool) if p.method == "vote"}
    n = max(pool_points)
    base = pool_points[n]
    base_wall = wall(store, [r.rid for r in pool.runs])
    base_tokens, problems = generated(store, [r.rid for r in pool.runs])
    rows = [
        f"| vote@{n} (fixed pool) | {problems} | {100 * base.accuracy:.1f}% "
        f"[{100 * base.low:.1f}, {100 * base.high:.1f}] | {base_tokens / problems:,.0f} | 1.00 "
        f"| {base_wall:,.0f} | 1.00 | — |"
    ]
    for g in groups:
        if g.kind != "direct":
            continue
        (p,) = points(g)
        rids = [r.rid for r in g.runs]
        tokens, count = generated(store, rids)
        seconds = wall(store, rids)
        d, lo, hi = paired(p, base)
        rows.append(
            f"| {g.label} | {count} | {100 * p.accuracy:.1f}% [{100 * p.low:.1f}, "
            f"{100 * p.high:.1f}] | {tokens / count:,.0f} | "
            f"{tokens / count / (base_tokens / problems):.2f} "
            f"| {seconds:,.0f} | {seconds / base_wall:.2f} | {100 * d:+.1f} [{100 * lo:+.1f}, "
            f"{100 * hi:+.1f}] |"
        )
    print(
        f"| method | problems | accuracy [95% CI] | generated tokens / problem | × vote@{n} "
        f"| wall s | × vote@{n} | Δ accuracy vs vote@{n} [95% paired CI] |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    # the offline prediction on this pool, for the live adaptive rows above
    replayed = replay_points(load_signals(store, pool, stats=True))
    print(f"\nReplayed on the vote@{n} pool (prediction for the live rows):\n")
    print(
        "| rule | samples / problem | tokens / problem (prompt not cached + generated) "
        "| accuracy [95% CI] |"
    )
    print("|---|---|---|---|")
    for r in replayed:
        q = r.point
        print(
            f"| {r.label} | {r.samples.mean():.2f} | {q.tokens:,.0f} | {100 * q.accuracy:.1f}% "
            f"[{100 * q.low:.1f}, {100 * q.high:.1f}] |"
        )
    store.close()


def pool_of(store: Store, answer_with: str = "reasoning", restate: bool = False) -> Group:
    """The store's largest pool of samples answered with `answer_with` (reasoning: plain
    chain of thought); with `restate`, read as ponder reads samples today (stated answers)."""
    every = load_groups(store, restate=restate)
    pools = [g for g in every if g.kind == "pool" and g.answer_with == answer_with]
    if not pools:
        raise SystemExit(
            f"error: {store.path} holds no pool of --answer-with {answer_with} samples "
            f"(ponder bench -s vote --answer-with {answer_with})"
        )
    return max(pools, key=lambda g: (int(g.sizes.max()), len(g.pids)))


def refuse_shared(train: Store, test: Store, path: Path) -> None:
    """Exit when a problem of the test store (at `path`) is in the train store."""
    question = "SELECT question FROM problems"
    shared = {q for (q,) in train.db.execute(question)} & {q for (q,) in test.db.execute(question)}
    if shared:
        raise SystemExit(f"error: {len(shared)} problems of {path} are in the train store")


def tune(args: argparse.Namespace) -> None:
    train_store, test_store = Store(args.train, readonly=True), Store(args.test, readonly=True)
    refuse_shared(train_store, test_store, args.test)
    train = load_signals(
        train_store, pool_of(train_store, args.answer_with, args.restate), stats=True
    )
    test = load_signals(test_store, pool_of(test_store, args.answer_with, args.restate), stats=True)
    reference = None
    if args.reference != args.answer_with:  # judged against another pool's majority vote
        reference = Reference(
            load_signals(train_store, pool_of(train_store, args.reference, args.restate)),
            load_signals(test_store, pool_of(test_store, args.reference, args.restate)),
        )
    t = tune_stopping(train, test, n=args.n, tolerance=args.tolerance, reference=reference)
    tv, sv = t.train_vote, t.test_vote
    vote = f"majority@{t.vote_n}" + (f" of {t.reference}" if t.reference else "")
    print(
        f"Train: {tv.point.problems} problems ({args.train}); test: {sv.point.problems} "
        f"({args.test}); settings on {train.group.label} with at most {t.n} samples; "
        f"{len(t.tried)} settings tried; a setting is kept when its train accuracy is within "
        f"{100 * t.tolerance:g} point(s) of train {vote} ({100 * tv.point.accuracy:.1f}%), and "
        "the kept one writing fewest tokens is chosen.\n"
    )
    print(
        f"| family | chosen on train | kept | train acc. | train generated × {vote} "
        f"| test acc. [95% CI] | Δ vs test {vote} [95% paired CI] | test samples "
        f"| test generated × {vote} | test tokens × {vote} |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {vote} | — | — | {100 * tv.point.accuracy:.1f}% | 1.00 "
        f"| {100 * sv.point.accuracy:.1f}% [{100 * sv.point.low:.1f}, {100 * sv.point.high:.1f}] "
        f"| — | {t.vote_n} | 1.00 ({sv.generated:,.0f}) | 1.00 ({sv.tokens:,.0f}) |"
    )
    for c in t.chosen:
        d, lo, hi = c.difference(sv)
        q = c.test.point
        print(
            f"| {c.setting.family} | {c.setting.label} | {c.kept} "
            f"| {100 * c.train.point.accuracy:.1f}% "
            f"| {c.train.generated.mean() / tv.generated:.2f} "
            f"| {100 * q.accuracy:.1f}% [{100 * q.low:.1f}, {100 * q.high:.1f}] "
            f"| {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {c.test.samples.mean():.1f} "
            f"| {c.test.generated.mean() / sv.generated:.2f} | {q.tokens / sv.tokens:.2f} |"
        )
    ks = [k for k in (8, 16) if k <= t.n]
    if ks and train.has_signals and test.has_signals:
        selection(train, test, ks)
    else:
        print(f"\nNo selection at k = 8 or 16: pools of {t.n}, or samples without logprobs.")
    train_store.close()
    test_store.close()


def selection(train: PoolSignals, test: PoolSignals, ks: list[int]) -> None:
    """Per k and family, the selection rule chosen on train, judged on test."""
    print(
        "\nSelection at equal samples: per k and family, the rule, parameter and signal most "
        "accurate at k on train, judged on test beside majority@k.\n"
    )
    print(
        "| k | family | chosen on train | train acc. (vote) | test acc. [95% CI] "
        "| test vote@k [95% CI] | Δ vs vote@k [95% paired CI] |"
    )
    print("|---|---|---|---|---|---|---|")
    for sel in tune_selection(train, test, ks=ks):
        d, lo, hi = sel.difference()
        a, v = sel.test, sel.test_vote
        print(
            f"| {sel.k} | {sel.selector.family} | {sel.selector.label} "
            f"| {100 * sel.train.accuracy:.1f}% ({100 * sel.train_vote.accuracy:.1f}%) "
            f"| {100 * a.accuracy:.1f}% [{100 * a.low:.1f}, {100 * a.high:.1f}] "
            f"| {100 * v.accuracy:.1f}% [{100 * v.low:.1f}, {100 * v.high:.1f}] "
            f"| {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |"
        )


# -- a selector learned on train pools ---------------------------------------------------------
def answer_features(
    pool: PoolSignals, row: int, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per answer class among the samples `idx` of problem `row` (first-seen order): features
    (vote share, log count, leads the count, and per signal the supporters' mean and best
    confidence as z-scores within the subset), whether the class is right, its count. None
    when no sample answered."""
    g = pool.group
    classes, right = g.classes[row, idx], g.correct[row, idx]
    answered = classes >= 0
    if not answered.any():
        return None
    votes = {c: int((classes == c).sum()) for c in dict.fromkeys(classes[answered].tolist())}
    top = max(votes.values())
    rows, labels = [], []
    for c, count in votes.items():
        mine = classes == c
        f = [count / answered.sum(), np.log(count), float(count == top)]
        for signal in SIGNALS:
            v = pool.signals[signal][row, idx]
            known = answered & np.isfinite(v)
            if not (mine & known).any():
                f += [0.0, 0.0]
                continue
            centre, spread = v[known].mean(), v[known].std() + 1e-6
            theirs = v[mine & known]
            f += [(theirs.mean() - centre) / spread, (theirs.max() - centre) / spread]
        rows.append(f)
        labels.append(bool(right[mine][0]))
    return np.array(rows), np.array(labels), np.array(list(votes.values()))


def subsets_of(m: int, k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random k-subsets of m samples (in pool order), or the pool itself when k = m."""
    if k == m:
        return np.arange(m)[None, :]
    return np.sort(np.array([rng.choice(m, k, replace=False) for _ in range(count)]), axis=1)


Subset = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # (problem row, features, labels, counts)


def learned_data(
    pool: PoolSignals, ks: list[int], count: int, seed: int
) -> list[tuple[int, Subset | None]]:
    """Per subset at each k of each problem: its row and what `answer_features` reads (None:
    no sample of the subset answered, so no pick can be right)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, Subset | None]] = []
    for k in ks:
        for row in range(len(pool.group.pids)):
            m = int(pool.group.sizes[row])
            if m < k:
                continue
            for idx in subsets_of(m, k, count, rng):
                got = answer_features(pool, row, idx)
                out.append((row, None if got is None else (row, *got)))
    return out


def choices(model: Any, data: list[Subset]) -> np.ndarray:
    """Per subset, (learned pick right, majority right); a tie goes to the class seen first."""
    out = np.zeros((len(data), 2))
    if not data:
        return out
    scores = [counts for *_, counts in data]
    if model is not None:  # one call for every subset's answers, split back per subset
        whole = model.decision_function(np.vstack([x for _, x, _, _ in data]))
        scores = np.split(whole, np.cumsum([len(c) for c in scores])[:-1])
    for i, ((_, _, y, counts), score) in enumerate(zip(data, scores, strict=True)):
        out[i] = (y[int(np.argmax(score))], y[int(np.argmax(counts))])
    return out


def learned(args: argparse.Namespace) -> None:
    """An answer-level selector (logistic regression over each answer's vote share and its
    supporters' confidences) fitted on a train pool, judged on test pools beside majority@k."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    train_store = Store(args.train, readonly=True)
    tests = [(path, Store(path, readonly=True)) for path in args.test]
    for path, store in tests:
        refuse_shared(train_store, store, path)
    train = load_signals(train_store, pool_of(train_store, args.answer_with, args.restate))
    fitted_ks = [k for k in (4, 8, 16) if k <= train.group.sizes.max()]
    if not fitted_ks or len(train.group.pids) < 10:
        raise SystemExit("error: the train pool needs 10 problems or more with 4 samples or more")
    data = [got for _, got in learned_data(train, fitted_ks, args.subsets, args.seed) if got]
    groups = np.array([row for row, *_ in data])
    x, y = np.vstack([d[1] for d in data]), np.concatenate([d[2] for d in data])
    sizes = [len(d[2]) for d in data]
    per_row = np.repeat(groups, sizes)

    def fit(c: float, rows: np.ndarray) -> LogisticRegression:
        keep = np.isin(per_row, rows)
        if len(set(y[keep].tolist())) < 2:
            raise SystemExit("error: train answers all right or all wrong: too few problems")
        return LogisticRegression(C=c, max_iter=5000).fit(x[keep], y[keep])

    folds = GroupKFold(n_splits=5)
    unique = np.unique(groups)
    cv: dict[float, float] = {}
    for c in (0.01, 0.1, 1.0, 10.0):
        right = []
        for fit_rows, held_rows in folds.split(unique, groups=unique):
            model = fit(c, unique[fit_rows])
            held_set = set(unique[held_rows].tolist())
            held = [d for d in data if d[0] in held_set]
            right.append(choices(model, held)[:, 0].mean())
        cv[c] = float(np.mean(right))
    best = max(cv, key=lambda c: cv[c])
    model = fit(best, unique)
    print(
        f"Train: {len(unique)} problems ({args.train}), {len(data)} subsets at k = "
        f"{', '.join(map(str, fitted_ks))}; "
        f"C by 5-fold cross-validation over train problems: "
        + ", ".join(f"{c:g}: {100 * a:.1f}%" for c, a in cv.items())
        + f" (majority at the same subsets {100 * choices(None, data)[:, 1].mean():.1f}%)"
        f" → C = {best:g}.\n"
    )
    print("| test pool | k | problems | learned [95% CI] | majority@k | Δ [95% paired CI] |")
    print("|---|---|---|---|---|---|")
    for path, store in tests:
        test = load_signals(store, pool_of(store, args.answer_with, args.restate))
        for k in args.ks:
            subsets = learned_data(test, [k], args.subsets, args.seed + 1)
            picks = iter(choices(model, [got for _, got in subsets if got]))
            per: dict[int, list[np.ndarray]] = {}
            for row, got in subsets:
                # a subset where nothing answered is wrong for both
                per.setdefault(row, []).append(next(picks) if got else np.zeros(2))
            if not per:
                print(f"| {path.name} | {k} | 0 (no problem has {k} samples) | | | |")
                continue
            mean = np.array([np.mean(v, axis=0) for v in per.values()])
            a, lo_a, hi_a = bootstrap_mean_ci(mean[:, 0])
            d, lo, hi = bootstrap_mean_ci(mean[:, 0] - mean[:, 1])
            print(
                f"| {path.name} | {k} | {len(per)} | {100 * a:.1f}% [{100 * lo_a:.1f}, "
                f"{100 * hi_a:.1f}] | {100 * mean[:, 1].mean():.1f}% "
                f"| {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |"
            )
        store.close()
    train_store.close()


def rolling(args: argparse.Namespace) -> None:
    """Waves against rolling, replayed on a stored pool: tokens and a problem's latency."""
    store = Store(args.pool, readonly=True)
    g = pool_of(store)
    pool = load_signals(store, g)
    n = args.n or int(g.sizes.max())
    rows = [r for r in range(len(g.pids)) if g.sizes[r] >= n]
    rules = {
        "beta (0.95, at least 2)": BetaStop(),
        "beta (0.6, at least 2)": BetaStop(threshold=0.6, min_samples=2),
        "esc (3 in a row)": ESC(window=3),
    }
    print(
        f"{len(rows)} problems with {n} samples ({args.pool}); each replayed in {args.orders} "
        "orders; latency: the steps (tokens written one after another) until the rule stopped, "
        "every sample writing one token per step.\n"
    )
    print(
        "| rule | wave | tokens: waves | rolling | latency: waves | rolling "
        "| accuracy: waves | rolling |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, rule in rules.items():
        for wave in args.waves:
            got = {}
            for mode in (False, True):
                tok = lat = acc = 0.0
                for r in rows:
                    right = {
                        int(c)
                        for c, ok in zip(g.classes[r, :n], g.correct[r, :n], strict=True)
                        if ok
                    }
                    obs = [
                        Observation(None if g.classes[r, j] < 0 else int(g.classes[r, j]),
                                    int(pool.completion[r, j]))
                        for j in range(n)
                    ]  # fmt: skip
                    e = expected(rule, obs, n, wave, args.orders, int(g.pids[r]), rolling=mode)
                    tok, lat, acc = tok + e.tokens, lat + e.steps, acc + e.accuracy(right)
                got[mode] = (tok / len(rows), lat / len(rows), acc / len(rows))
            (tw, lw, aw), (tr, lr, ar) = got[False], got[True]
            print(
                f"| {label} | {wave} | {tw:,.0f} | {tr:,.0f} ({tr / tw - 1:+.1%}) | {lw:,.0f} "
                f"| {lr:,.0f} ({lr / lw - 1:+.1%}) | {100 * aw:.1f}% | {100 * ar:.1f}% |"
            )
    store.close()


def against(args: argparse.Namespace) -> None:
    """Another pool of the same problems (e.g. TIR samples) at every k, and the stopping rules
    with their default settings replayed on it, against the chain-of-thought pool's
    majority@n: accuracy, generated tokens, paired difference."""
    store = Store(args.pool, readonly=True)
    ref, other = pool_of(store), pool_of(store, args.answer_with)
    n, m = int(ref.sizes.max()), int(other.sizes.max())
    ref_rows = {int(p): r for r, p in enumerate(ref.pids) if ref.sizes[r] >= n}
    other_rows = {int(p): r for r, p in enumerate(other.pids) if other.sizes[r] >= m}
    common = sorted(set(ref_rows) & set(other_rows))
    rr = np.array([ref_rows[p] for p in common])
    ro = np.array([other_rows[p] for p in common])
    ref_tokens = load_signals(store, ref).completion[rr, :n].sum(axis=1)
    other_signals = load_signals(store, other)
    other_completion = other_signals.completion[ro, :m]

    def pools(g: Group, rows: np.ndarray, size: int) -> Pools:
        return Pools(
            keys=g.classes[rows, :size],
            scores=g.scores[rows, :size],
            correct=g.correct[rows, :size],
            sizes=np.full(len(rows), size),
        )

    base = majority_at(pools(ref, rr, n), n)
    print(
        f"{len(common)} problems with {n} {ref.label} samples and {m} {other.label} samples "
        f"({args.pool}). Reference: majority@{n} of the first, {100 * base.mean():.1f}% at "
        f"{ref_tokens.mean():,.0f} generated tokens a problem. Votes are the mean over "
        f"k-subsets; stopping rules (default settings) replayed in {args.orders} orders.\n"
    )
    print(f"| method | accuracy | generated tokens | × majority@{n} | Δ [95% paired CI] |")
    print("|---|---|---|---|---|")

    def row(label: str, acc: np.ndarray, tokens: np.ndarray) -> None:
        d, lo, hi = bootstrap_mean_ci(acc - base)
        print(
            f"| {label} | {100 * acc.mean():.1f}% | {tokens.mean():,.0f} "
            f"| {tokens.mean() / ref_tokens.mean():.2f} | {100 * d:+.1f} [{100 * lo:+.1f}, "
            f"{100 * hi:+.1f}] |"
        )

    other_pools = pools(other, ro, m)
    for k in range(1, m + 1):
        row(f"{other.label} vote@{k}", majority_at(other_pools, k), k * other_completion.mean(1))
    for label, rule in STOPPING[:3]:
        for wave in (2, 4):
            got = replay_rule(other_signals, label, rule, n=m, wave=wave, orders=args.orders)
            at = np.searchsorted(got.point.pids, common)  # its rows: every full pool, by pid
            acc, tokens = got.point.per_problem[at], got.generated[at]
            row(f"{other.label} {label}@{m}, waves of {wave}", acc, tokens)
    store.close()


def versus(args: argparse.Namespace) -> None:
    """Live bench runs (any strategy, one unit per problem) beside the chain-of-thought pool's
    majority@n on the same problems: accuracy, generated tokens and wall time per problem
    (each unit's share of its run segment's wall, by tokens, on both sides)."""
    pool_store, live_store = Store(args.pool, readonly=True), Store(args.live, readonly=True)
    ref = load_signals(pool_store, pool_of(pool_store))
    g = ref.group
    n = args.n or int(g.sizes.max())
    name = pool_store.problem_names()
    full = {name[int(p)]: r for r, p in enumerate(g.pids) if g.sizes[r] >= n}
    pools = Pools(keys=g.classes, scores=g.scores, correct=g.correct, sizes=g.sizes)
    vote, vote_generated = majority_at(pools, n), ref.completion[:, :n].sum(axis=1)
    vote_seconds = g.cost["seconds"] * np.minimum(g.sizes, n)
    live_name = live_store.problem_names()
    print(
        f"Live runs in {args.live} beside majority@{n} of {g.label} in {args.pool}, on the "
        "problems both have (wall: each unit's share of its run segment's wall, by tokens).\n"
    )
    print(
        f"| method | problems | accuracy [95% CI] | Δ vs majority@{n} [95% paired CI] "
        f"| generated tokens / problem | × majority@{n} | wall s | × majority@{n} |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for live in (x for x in load_groups(live_store) if x.kind == "direct"):
        mine = [(r, full[live_name[int(p)]]) for r, p in enumerate(live.pids)
                if live_name[int(p)] in full]  # fmt: skip
        if not mine:
            continue
        lr, rr = (np.array(x) for x in zip(*mine, strict=True))
        (point,) = points(live)
        acc, base = point.per_problem[lr], vote[rr]
        _, per_pid = direct_outcomes(live_store, live)
        generated = np.array([per_pid[int(p)] for p in live.pids[lr]])
        seconds = live.cost["seconds"][lr] * live.sizes[lr]
        m, lo, hi = bootstrap_mean_ci(acc)
        d, dlo, dhi = bootstrap_mean_ci(acc - base)
        b, blo, bhi = bootstrap_mean_ci(base)
        print(
            f"| majority@{n} (the pool) | {len(rr)} | {100 * b:.1f}% [{100 * blo:.1f}, "
            f"{100 * bhi:.1f}] | — | {vote_generated[rr].mean():,.0f} | 1.00 "
            f"| {vote_seconds[rr].sum():,.0f} | 1.00 |"
        )
        print(
            f"| {live.label} | {len(lr)} | {100 * m:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] "
            f"| {100 * d:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}] | {generated.mean():,.0f} "
            f"| {generated.mean() / vote_generated[rr].mean():.2f} | {seconds.sum():,.0f} "
            f"| {seconds.sum() / vote_seconds[rr].sum():.2f} |"
        )
    pool_store.close()
    live_store.close()


def online_grid(args: argparse.Namespace) -> None:
    """DeepConf online replayed over windows × warm-ups × percentiles on the train pool; the
    settings within `--tolerance` of train majority@n, cheapest first, and the cheapest of
    them replayed on test beside test majority@n (paired)."""
    train_store, test_store = Store(args.train, readonly=True), Store(args.test, readonly=True)
    refuse_shared(train_store, test_store, args.test)
    train = load_signals(train_store, pool_of(train_store, "reasoning", args.restate), stats=True)
    test = load_signals(test_store, pool_of(test_store, "reasoning", args.restate), stats=True)
    n = args.n
    base = {"train": baseline(train, n), "test": baseline(test, n)}
    tried = []
    for window in args.windows:
        for warmup in args.warmups:
            for pct in args.percentiles:
                r = replay_online(
                    train,
                    "",
                    n=n,
                    wave=2,
                    orders=args.orders,
                    resamples=200,
                    warmup=warmup,
                    percentile=pct,
                    consensus=args.consensus,
                    window=window,
                )
                ratio = float(r.generated.mean()) / base["train"].generated
                tried.append((window, warmup, pct, r.point.accuracy, ratio))
    vote = base["train"].point.accuracy
    kept = sorted((t for t in tried if t[3] >= vote - args.tolerance), key=lambda t: t[4])
    print(
        f"Train majority@{n} {100 * vote:.1f}% ({base['train'].point.problems} problems); "
        f"{len(tried)} settings (consensus {args.consensus}, waves of 2), {len(kept)} within "
        f"{100 * args.tolerance:g} point(s). Cheapest kept, and cheapest of all:\n"
    )
    print("| window | warm-up | percentile | train acc. | train generated × majority |")
    print("|---|---|---|---|---|")
    for w, warm, pct, acc, ratio in [*kept[:5], min(tried, key=lambda t: t[4])]:
        print(f"| {w} | {warm} | {pct:g} | {100 * acc:.1f}% | {ratio:.2f} |")
    if not kept:
        return
    w, warm, pct, _, _ = kept[0]
    r = replay_online(
        test,
        "",
        n=n,
        wave=2,
        orders=args.orders,
        warmup=warm,
        percentile=pct,
        consensus=args.consensus,
        window=w,
    )
    t = base["test"]
    d, lo, hi = paired(r.point, t.point)
    print(
        f"\nOn test (window {w}, warm-up {warm}, percentile {pct:g}): "
        f"{100 * r.point.accuracy:.1f}% [{100 * r.point.low:.1f}, {100 * r.point.high:.1f}], "
        f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] against majority@{n} "
        f"({100 * t.point.accuracy:.1f}%), at {float(r.generated.mean()) / t.generated:.2f}× "
        "its generated tokens"
    )


def main() -> None:
    tune_gc()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("live", help="vote@n, adaptive and deepconf on the same problems")
    run.add_argument("--task", default="gsm8k")
    run.add_argument("--split", default=None)
    run.add_argument("--problems", type=int, default=30)
    run.add_argument("--offset", type=int, default=0)
    run.add_argument("--n", type=int, default=16)
    run.add_argument(
        "--rule", default="beta", choices=[r.split("=")[1].rstrip(")") for r, _ in STOPPING]
    )
    run.add_argument("--adaptive", nargs="*", default=[], help="adaptive's KEY=VALUE settings")
    run.add_argument("--deepconf", nargs="*", default=[], help="deepconf's KEY=VALUE settings")
    run.add_argument("--model", default=None)
    run.add_argument("--base-url", default=None)
    run.add_argument("--slots", type=int, default=8)
    run.add_argument("--max-tokens", type=int, default=512)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--store", type=Path, default=Path("benchmarks/out/adaptive.sqlite"))
    show = sub.add_parser("table", help="ratios and paired differences from a live store")
    show.add_argument("--store", type=Path, default=Path("benchmarks/out/adaptive.sqlite"))
    tn = sub.add_parser("tune", help="stopping settings chosen on a train pool, judged on test")
    tn.add_argument("--train", type=Path, required=True, help="a store with a train pool")
    tn.add_argument("--test", type=Path, required=True, help="a store with a test pool")
    tn.add_argument("--n", type=int, default=None, help="the budget [the smaller pool's size]")
    tn.add_argument("--tolerance", type=float, default=TOLERANCE)
    tn.add_argument(
        "--answer-with",
        default="reasoning",
        help="the pools the settings run on (tir: tool-integrated samples)",
    )
    tn.add_argument(
        "--reference",
        default="reasoning",
        help="the pools whose majority vote the settings must match on train and are judged "
        "against on test [reasoning: chain of thought; the --answer-with mode: the same pools]",
    )
    ro = sub.add_parser("rolling", help="waves against rolling, replayed on a stored pool")
    ro.add_argument("--pool", type=Path, required=True, help="a store with a pool")
    ro.add_argument("--n", type=int, default=None, help="the budget [the pool's size]")
    ro.add_argument("--waves", type=int, nargs="+", default=[2, 4])
    ro.add_argument("--orders", type=int, default=8)
    vs = sub.add_parser("versus", help="live bench runs beside the pool's majority@n")
    vs.add_argument("--pool", type=Path, required=True, help="a store with a CoT pool")
    vs.add_argument("--live", type=Path, required=True, help="a store with live runs")
    vs.add_argument("--n", type=int, default=None, help="the vote's samples [the pool's size]")
    ag = sub.add_parser("against", help="another pool's votes and stopping vs CoT majority@n")
    ag.add_argument("--pool", type=Path, required=True, help="a store with both pools")
    ag.add_argument("--answer-with", default="tir", help="the other pool's answer mode")
    ag.add_argument("--orders", type=int, default=16)
    le = sub.add_parser("learned", help="a selector fitted on a train pool, judged on test")
    le.add_argument("--train", type=Path, required=True, help="a store with a train pool")
    le.add_argument("--test", type=Path, nargs="+", required=True, help="stores with test pools")
    le.add_argument("--ks", type=int, nargs="+", default=[8, 16])
    le.add_argument("--subsets", type=int, default=30, help="random k-subsets per problem")
    le.add_argument("--seed", type=int, default=0)
    le.add_argument("--answer-with", default="reasoning", help="the pools' answer mode")
    og = sub.add_parser("online-grid", help="DeepConf online over windows and warm-ups")
    og.add_argument("--train", type=Path, required=True, help="a store with a train pool")
    og.add_argument("--test", type=Path, required=True, help="a store with a test pool")
    og.add_argument("--n", type=int, default=16)
    og.add_argument("--windows", type=int, nargs="+", default=[16, 32, 64])
    og.add_argument("--warmups", type=int, nargs="+", default=[3, 4, 6, 8])
    og.add_argument("--percentiles", type=float, nargs="+", default=[10, 50, 60, 70, 80, 90])
    og.add_argument("--consensus", type=float, default=0.95)
    og.add_argument("--orders", type=int, default=4)
    og.add_argument("--tolerance", type=float, default=TOLERANCE)
    for parser in (tn, le, og):
        parser.add_argument(
            "--restate",
            action="store_true",
            help="read the pools' samples as ponder reads them today (stated answers only)",
        )
    args = ap.parse_args()
    if args.command == "online-grid":
        online_grid(args)
    elif args.command == "learned":
        learned(args)
    elif args.command == "against":
        against(args)
    elif args.command == "versus":
        versus(args)
    elif args.command == "rolling":
        rolling(args)
    elif args.command == "live":
        asyncio.run(live(args))
    elif args.command == "tune":
        tune(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
