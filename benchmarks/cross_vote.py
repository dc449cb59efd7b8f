"""`cross_vote` priced on stored runs: a chain-of-thought pool (a `vote` bench run) and a greedy
program run (`-s greedy --answer-with program`, or `tir`) on the same problems, paired by
problem id. At each k, k chains are drawn from the pool (every subset, or `--orders` random
ones) and the program's answer joins them as `cross_vote` (n=k, programs=1) would count it:
an answer both a program and a chain reached wins, else the majority. Beside it: majority@k of
the same chains, majority@(k+1) (about the same tokens), and the program alone; differences with
95% paired bootstrap intervals over problems.

Then `cross_vote` as it runs by default (`stop_early`: chains in waves of `--wave`, none more
once one reaches the program's answer), replayed exactly on the pool with
ponder.consensus.replay at each budget k, against majority over the whole pool (the issue's
"majority@16"): accuracy, and tokens (the program's included) as a share of the majority's.

With `--otherwise "RULE KEY=VALUE ..."` (a stopping rule of ponder.consensus, e.g. "esc
window=2"), the early-stopped replay also stops a problem whose program no chain has backed
once that rule says its chains are settled (an experiment: see benchmarks/RESULTS.md).

With `--live STORE` (a `ponder bench -s cross_vote` run on problems of the pool), the live run
beside the pool's majority on the same problems: accuracy (paired), generated tokens and wall
time (the pool's wall apportioned to those problems by their share of each resumed segment's
samples), and the replay's prediction for the live run's budget and wave.

    .venv/bin/python benchmarks/cross_vote.py --pool benchmarks/reports/gsm8k-pool16.sqlite \\
        --partner benchmarks/reports/gsm8k-tir.sqlite [--partner-with program] [--k 4 8 16] \\
        [--live benchmarks/reports/cross-vote-65-100.sqlite]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ponder.answers import cluster
from ponder.bench.estimators import bootstrap_mean_ci
from ponder.bench.store import Store
from ponder.consensus import (
    STOPPING_RULES,
    CrossCheck,
    Observation,
    StoppingRule,
    expected,
)
from ponder.plugins import parse_options
from ponder.search.cross_vote import CrossVote, cross_tally
from ponder.search.vote import tally
from ponder.types import Candidate


@dataclass
class Sample:
    answer: str | None
    correct: bool
    tokens: int
    kind: str  # the problem's answer kind (how answers are compared)


def pool_of(path: Path, first: int = 1) -> dict[str, list[Sample]]:
    """problem id → the samples of the store's chain-of-thought pool, in the order drawn, for
    the problems at position `first` (1-based) and after."""
    store = Store(path, readonly=True)
    runs = [
        rid
        for rid, config in store.db.execute("SELECT rid, config FROM runs WHERE kind = 'pool'")
        if json.loads(config)["unit"].get("answer_with", "reasoning") == "reasoning"
    ]
    if not runs:
        raise SystemExit(f"error: {path} holds no chain-of-thought pool")
    out: dict[str, list[Sample]] = {}
    rows = store.db.execute(
        "SELECT p.task || '/' || p.problem_id, c.answer, c.correct, c.completion_tokens, "
        "coalesce(p.kind, 'math') FROM candidates c JOIN problems p USING (pid) "
        "WHERE c.rid = ? AND p.position >= ? ORDER BY c.pid, c.unit, c.idx",
        (runs[0], first - 1),
    )
    for pid, answer, correct, tokens, kind in rows:
        out.setdefault(pid, []).append(Sample(answer, bool(correct), int(tokens), kind))
    store.close()
    return out


def partner_of(path: Path, how: str) -> dict[str, Sample]:
    """problem id → the greedy run's answer, answering with `how` (program or tir)."""
    store = Store(path, readonly=True)
    for rid, config in store.db.execute("SELECT rid, config FROM runs WHERE kind = 'direct'"):
        unit = json.loads(config)["unit"]
        if unit.get("name") == "greedy" and unit.get("answer_with") == how:
            rows = store.db.execute(
                "SELECT p.task || '/' || p.problem_id, u.answer, u.correct, "
                "u.policy_completion, coalesce(p.kind, 'math') "
                "FROM units u JOIN problems p USING (pid) WHERE u.rid = ?",
                (rid,),
            )
            out = {pid: Sample(a, bool(c), int(t), kind) for pid, a, c, t, kind in rows}
            store.close()
            return out
    raise SystemExit(f"error: {path} holds no greedy run answering with {how}")


@dataclass
class Live:
    """A live `cross_vote` bench run: per problem id its correctness, generated tokens and
    chains; the run's strategy (its options, as stored) and its wall time in seconds (every
    segment, resumed or not)."""

    correct: dict[str, bool]
    generated: dict[str, int]
    chains: dict[str, int]
    strategy: CrossVote
    wall: float


def live_of(path: Path) -> Live:
    store = Store(path, readonly=True)
    for rid, config in store.db.execute("SELECT rid, config FROM runs WHERE kind = 'direct'"):
        unit = json.loads(config)["unit"]
        if unit.get("name") != "cross_vote":
            continue
        rows = store.db.execute(
            "SELECT p.task || '/' || p.problem_id, u.correct, u.policy_completion, u.info "
            "FROM units u JOIN problems p USING (pid) WHERE u.rid = ?",
            (rid,),
        ).fetchall()
        (wall,) = store.db.execute(
            "SELECT SUM(COALESCE(ended, started) - started) FROM segments WHERE rid = ?", (rid,)
        ).fetchone()
        store.close()
        return Live(
            correct={pid: bool(c) for pid, c, _, _ in rows},
            generated={pid: int(t) for pid, _, t, _ in rows},
            chains={pid: int(json.loads(info).get("chains", 0)) for pid, _, _, info in rows},
            strategy=CrossVote.model_validate({k: v for k, v in unit.items() if k != "name"}),
            wall=float(wall or 0.0),
        )
    store.close()
    raise SystemExit(f"error: {path} holds no cross_vote run")


def pool_wall(path: Path, pids: set[str]) -> float:
    """The chain-of-thought pool's wall time apportioned to the problems `pids`: each segment
    (one invocation of the resumable bench) contributes its wall times the share of its samples
    that belong to those problems. Other pools in the store (tool-integrated samples) are not
    counted."""
    store = Store(path, readonly=True)
    rows = store.db.execute(
        "SELECT s.started, COALESCE(s.ended, s.started), "
        "SUM(p.task || '/' || p.problem_id IN (SELECT value FROM json_each(?))), COUNT(*) "
        "FROM segments s JOIN units u USING (sid) JOIN problems p ON p.pid = u.pid "
        "JOIN runs r ON r.rid = u.rid WHERE r.kind = 'pool' "
        "AND COALESCE(json_extract(r.config, '$.unit.answer_with'), 'reasoning') = 'reasoning' "
        "GROUP BY s.sid",
        (json.dumps(sorted(pids)),),
    ).fetchall()
    store.close()
    return float(sum((end - start) * mine / every for start, end, mine, every in rows))


def compare_live(
    live: Live, pool: dict[str, list[Sample]], partner: dict[str, Sample], path: Path, full: int
) -> None:
    """The live run beside majority@full over the pool on the same problems, and the replay's
    prediction of the live run."""
    ids = sorted(p for p in live.correct if len(pool.get(p, [])) >= full and p in partner)
    if not ids:
        raise SystemExit(f"error: no problem of the live run has {full} pool samples")
    mine = {p: pool[p] for p in ids}
    budget, wave = live.strategy.n, live.strategy.wave
    e = early(mine, partner, budget, full, wave, orders=100, seed=0)
    acc = np.asarray([float(live.correct[p]) for p in ids])
    generated = np.asarray([float(live.generated[p]) for p in ids])
    wall_pool = pool_wall(path, set(ids))
    print(
        f"\nLive `cross_vote` (n={budget}, wave={wave}) on {len(ids)} problems of the pool, "
        f"beside majority@{full} over the pool on the same problems (accuracy [95% CI]; Δ "
        "[95% paired bootstrap CI]; generated tokens per problem, the program's included; wall "
        "seconds of the whole run, the pool's apportioned):\n"
    )
    print(
        "| method | accuracy | Δ vs majority | generated tokens / problem | × majority "
        "| chains / problem | wall s | × majority |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base_tokens = e["majority tokens"].mean()
    print(
        f"| majority@{full} (pool) | {ci(e['majority'])} | — | {base_tokens:,.0f} | 1.00 "
        f"| {full} | {wall_pool:,.0f} | 1.00 |"
    )
    print(
        f"| cross_vote, replayed on the pool | {ci(e['accuracy'])} "
        f"| {diff(e['accuracy'], e['majority'])} | {e['tokens'].mean():,.0f} "
        f"| {e['tokens'].mean() / base_tokens:.2f} | {e['chains'].mean():.1f} | — | — |"
    )
    chains = np.mean([live.chains[p] for p in ids])
    print(
        f"| cross_vote, live | {ci(acc)} | {diff(acc, e['majority'])} "
        f"| {generated.mean():,.0f} | {generated.mean() / base_tokens:.2f} | {chains:.1f} "
        f"| {live.wall:,.0f} | {live.wall / wall_pool:.2f} |"
    )
    if len(ids) < len(live.correct):
        print(f"\n({len(live.correct) - len(ids)} live problems lack a full pool: left out.)")


class CrossThenSettled(CrossCheck):
    """`CrossCheck`, and while no chain backs a program, `otherwise`'s own stop on the votes
    (chains and programs): hard problems whose program is unbacked stop once their chains
    agree, instead of running the whole budget."""

    otherwise: StoppingRule

    def check(
        self, observations: Sequence[Observation], votes: dict[int, float]
    ) -> tuple[bool, str]:
        stop, reason = super().check(observations, votes)
        if stop:
            return stop, reason
        if len(observations) < self.otherwise.min_samples:
            return False, "no backed answer, too few chains to settle"
        return self.otherwise.check(observations, votes)


def settle_rule(spec: str) -> StoppingRule:
    """ "NAME KEY=VALUE ..." → that stopping rule of ponder.consensus."""
    name, *pairs = spec.split()
    if name not in STOPPING_RULES:
        raise SystemExit(f"error: --otherwise: no rule {name!r} (one of {sorted(STOPPING_RULES)})")
    return STOPPING_RULES[name].model_validate(parse_options(pairs, "--otherwise"))


def subsets(m: int, k: int, orders: int, rng: random.Random) -> list[list[int]]:
    if k == m:
        return [list(range(m))]
    return [rng.sample(range(m), k) for _ in range(orders)]


def evaluate(
    pool: dict[str, list[Sample]], partner: dict[str, Sample], k: int, orders: int, seed: int
) -> dict[str, np.ndarray]:
    """Per problem (those with k + 1 pool samples and a partner answer), each method's expected
    correctness and tokens over the drawn subsets."""
    rng = random.Random(seed)
    ids = sorted(p for p in pool if len(pool[p]) > k and p in partner)
    out: dict[str, list[float]] = {}
    for pid in ids:
        samples, program = pool[pid], partner[pid]
        # the correctness of an answer class, read from the store's grading of its spellings
        every = [*samples, program]
        kind = program.kind
        classes = cluster([s.answer for s in every], kind)
        right = {c: s.correct for c, s in zip(classes, every, strict=True) if c is not None}
        truth = {s.answer: right[c] for c, s in zip(classes, every, strict=True) if c is not None}
        acc: dict[str, list[float]] = {}
        for sub in subsets(len(samples), k, orders, rng):
            chains = [samples[i] for i in sub]
            spare = next(i for i in rng.sample(range(len(samples)), len(samples)) if i not in sub)
            cands = [Candidate(text="", answer=s.answer) for s in chains]
            prog = Candidate(text="", answer=program.answer)
            cross, _, _ = cross_tally([prog], cands, kind)
            vote = tally(cands, [1.0] * k, kind)[0]
            more = [*chains, samples[spare]]
            vote_more = tally(
                [Candidate(text="", answer=s.answer) for s in more], [1.0] * len(more), kind
            )[0]
            acc.setdefault("cross", []).append(float(truth.get(cross, False)))
            acc.setdefault("vote", []).append(float(truth.get(vote, False)))
            acc.setdefault("vote+1", []).append(float(truth.get(vote_more, False)))
            chain_tokens = sum(s.tokens for s in chains)
            acc.setdefault("tokens cross", []).append(chain_tokens + program.tokens)
            acc.setdefault("tokens vote", []).append(chain_tokens)
            acc.setdefault("tokens vote+1", []).append(chain_tokens + samples[spare].tokens)
        for name, xs in acc.items():
            out.setdefault(name, []).append(float(np.mean(xs)))
        out.setdefault("program", []).append(float(program.correct))
        out.setdefault("tokens program", []).append(float(program.tokens))
    return {name: np.asarray(xs) for name, xs in out.items()}


def early(
    pool: dict[str, list[Sample]],
    partner: dict[str, Sample],
    budget: int,
    full: int,
    wave: int,
    orders: int,
    seed: int,
    otherwise: StoppingRule | None = None,
) -> dict[str, np.ndarray]:
    """Per problem with `full` pool samples: early-stopped cross_vote at `budget` chains
    (expected over `orders` orders; with `otherwise`, also stopped when an unbacked problem's
    chains are settled) and majority over the `full` samples."""
    out: dict[str, list[float]] = {}
    for pid in sorted(p for p in pool if len(pool[p]) >= full and p in partner):
        samples, program = pool[pid][:full], partner[pid]
        every = [*samples, program]
        classes = cluster([s.answer for s in every], program.kind)
        right = {c for c, s in zip(classes, every, strict=True) if c is not None and s.correct}
        chains = [Observation(c, s.tokens) for c, s in zip(classes, samples, strict=False)]
        rule = (
            CrossCheck(programs=(classes[-1],))
            if otherwise is None
            else CrossThenSettled(programs=(classes[-1],), otherwise=otherwise)
        )
        run = expected(rule, chains, budget, wave, orders, seed)
        out.setdefault("accuracy", []).append(run.accuracy(right))
        out.setdefault("tokens", []).append(run.tokens + program.tokens)
        out.setdefault("chains", []).append(run.samples)
        cands = [Candidate(text="", answer=s.answer) for s in samples]
        vote = tally(cands, [1.0] * full, program.kind)[0]
        out.setdefault("majority", []).append(
            float(any(s.correct for s in samples if s.answer == vote))
        )
        out.setdefault("majority tokens", []).append(float(sum(s.tokens for s in samples)))
    return {name: np.asarray(xs) for name, xs in out.items()}


def ci(x: np.ndarray) -> str:
    _, lo, hi = bootstrap_mean_ci(x)
    return f"{100 * x.mean():.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def diff(a: np.ndarray, b: np.ndarray) -> str:
    _, lo, hi = bootstrap_mean_ci(a - b)
    return f"{100 * (a - b).mean():+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pool", type=Path, required=True, help="a store with a CoT pool")
    ap.add_argument("--partner", type=Path, required=True, help="a store with a greedy program run")
    ap.add_argument("--partner-with", default="program", choices=("program", "tir"))
    ap.add_argument("--k", type=int, nargs="+", default=[4, 8, 15])
    ap.add_argument("--orders", type=int, default=200, help="random subsets per problem")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wave", type=int, default=4, help="chains launched at once (early stop)")
    ap.add_argument("--full", type=int, default=16, help="the majority compared against")
    ap.add_argument(
        "--first", type=int, default=1, help="only the pool's problems from this position on"
    )
    ap.add_argument(
        "--otherwise",
        default=None,
        help='a stopping rule for problems no chain has backed, e.g. "esc window=2"',
    )
    ap.add_argument(
        "--live", type=Path, default=None, help="a store with a live cross_vote bench run"
    )
    args = ap.parse_args()
    pool, partner = pool_of(args.pool, args.first), partner_of(args.partner, args.partner_with)
    print(
        f"Pool: {args.pool} (problems {args.first}–); partner: greedy {args.partner_with} in "
        f"{args.partner}. Accuracy [95% CI]; Δ [95% paired bootstrap CI] over problems.\n"
    )
    print(
        "| k | problems | majority@k | cross_vote (k chains + 1 program) | Δ vs majority@k "
        "| majority@(k+1) | Δ vs majority@(k+1) | program alone "
        "| tokens: vote@k / cross / vote@(k+1) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for k in args.k:
        r = evaluate(pool, partner, k, args.orders, args.seed)
        if not len(r.get("cross", [])):
            print(f"| {k} | 0 | — |")
            continue
        print(
            f"| {k} | {len(r['cross'])} | {ci(r['vote'])} | {ci(r['cross'])} "
            f"| {diff(r['cross'], r['vote'])} | {ci(r['vote+1'])} "
            f"| {diff(r['cross'], r['vote+1'])} "
            f"| {ci(r['program'])} | {r['tokens vote'].mean():,.0f} / "
            f"{r['tokens cross'].mean():,.0f} / {r['tokens vote+1'].mean():,.0f} |"
        )

    otherwise = settle_rule(args.otherwise) if args.otherwise else None
    also = f"; unbacked problems also stopped by {otherwise!r}" if otherwise else ""
    print(
        f"\nEarly-stopped (waves of {args.wave}, replayed over {args.orders} orders{also}) "
        f"against majority@{args.full} on the problems with {args.full} pool samples:\n"
    )
    print(
        f"| budget | problems | majority@{args.full} | cross_vote, early-stopped | Δ "
        f"| chains / problem | tokens × majority@{args.full} |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in args.k:
        e = early(pool, partner, k, args.full, args.wave, args.orders, args.seed, otherwise)
        if not len(e.get("accuracy", [])):
            continue
        share = e["tokens"].mean() / e["majority tokens"].mean()
        print(
            f"| {k} | {len(e['accuracy'])} | {ci(e['majority'])} | {ci(e['accuracy'])} "
            f"| {diff(e['accuracy'], e['majority'])} | {e['chains'].mean():.1f} "
            f"| {share:.2f} ({e['tokens'].mean():,.0f} / {e['majority tokens'].mean():,.0f}) |"
        )
    if args.live is not None:
        compare_live(live_of(args.live), pool, partner, args.pool, args.full)


if __name__ == "__main__":
    main()
