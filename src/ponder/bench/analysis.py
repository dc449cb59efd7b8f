"""From a store to numbers: accuracy against compute, with intervals, per method and k.

Runs that differ only in their seed are one *group*: a pooled group's pool for a problem is every
sample of every seed; a direct group's accuracy for a problem is its mean over seeds. Costs are
per problem: tokens (prompt not served from cache + generated, policy and verifier), FLOPs,
dollars, and wall seconds (each unit's share of its run segment's wall time, by tokens, so
concurrency is not counted twice).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ponder.answers import canonical, equivalent, read_answer
from ponder.bench.estimators import (
    Pools,
    best_of_at,
    bootstrap_mean_ci,
    majority_at,
    pass_at,
    weighted_at,
)
from ponder.bench.store import NO_ANSWER, Classes, Run, Store, known_class
from ponder.lm import Price
from ponder.types import AnswerWith

COSTS = ("tokens", "flops", "dollars", "seconds")
# the rule that evaluates each pooled method from the pool
# Votes over k-subsets are exact while problems × C(n, k) × k stays within this many element
# operations, else averaged over shared random subsets (at least 64 per problem); with
# thousands of problems the Monte Carlo error of the mean is far below the bootstrap interval.
VOTE_WORK = 2e7
POOL_RULES: dict[str, Callable[[Pools, int], np.ndarray]] = {
    "pass@k": pass_at,
    "vote": lambda pools, k: majority_at(pools, k, max_work=VOTE_WORK),
    "weighted_vote": lambda pools, k: weighted_at(pools, k, max_work=VOTE_WORK),
    "best_of_n": best_of_at,
}
_UNSCORED = -9e99  # a NULL score in SQL, NaN in numpy


@dataclass
class Group:
    """Runs that differ only by seed, and their units as per-problem arrays (P × n)."""

    task: str
    model: str
    kind: str
    label: str
    config: dict[str, Any]
    runs: list[Run]
    pids: np.ndarray  # (P,)
    classes: np.ndarray  # (P, n) int, -1 no answer, -2 padding
    scores: np.ndarray  # (P, n) float, NaN unscored/padding
    correct: np.ndarray  # (P, n) bool
    sizes: np.ndarray  # (P,)
    cost: dict[str, np.ndarray] = field(default_factory=dict)  # per problem, mean per unit

    @property
    def scored(self) -> bool:
        return bool(np.isfinite(self.scores).any())

    @property
    def answer_with(self) -> AnswerWith:
        """How the group's samples answer (reasoning: plain chain of thought)."""
        mode: AnswerWith = self.config.get("unit", {}).get("answer_with", "reasoning")
        return mode

    def take(self, rows: np.ndarray) -> Group:
        """The same group on the problem rows `rows` only (in that order)."""
        return replace(
            self,
            pids=self.pids[rows],
            classes=self.classes[rows],
            scores=self.scores[rows],
            correct=self.correct[rows],
            sizes=self.sizes[rows],
            cost={name: values[rows] for name, values in self.cost.items()},
        )

    def methods(self) -> list[str]:
        if self.kind == "direct":
            return [self.label]
        return ["pass@k", "vote", *(["weighted_vote", "best_of_n"] if self.scored else [])]

    def ks(self) -> list[int]:
        n = int(self.sizes.max()) if len(self.sizes) else 0
        ks = [k for k in (2**i for i in range(20)) if k <= n]
        return ks + ([n] if n and n not in ks else [])


@dataclass
class Point:
    task: str
    model: str
    method: str
    group: str
    k: int
    problems: int
    accuracy: float
    low: float
    high: float
    tokens: float
    flops: float
    dollars: float
    seconds: float
    per_problem: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    pids: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=int))


def group_label(run: Run) -> str:
    unit = run.config.get("unit", {})
    if run.kind == "pool":
        bits = [f"T={unit.get('temperature')}"]
        if v := unit.get("verifier"):
            bits.append(f"verifier={v.get('name')}")
        if unit.get("answer_with", "reasoning") != "reasoning":
            bits.append(f"answer_with={unit['answer_with']}")
        return "pool(" + ", ".join(bits) + ")"
    extra = {
        k: v
        for k, v in unit.items()
        if k not in ("name", "answer_with") and v not in (None, "reasoning")
    }
    prompting = run.config.get("prompting") or {}
    for key in ("think_budget", "think_min"):
        if prompting.get(key):
            extra[key] = prompting[key]
    if "system" in prompting:
        extra["system"] = "custom"
    budget = run.config.get("budget")
    if budget:
        extra["budget"] = {k: v for k, v in budget.items() if v is not None}
    if unit.get("answer_with", "reasoning") != "reasoning":
        extra["answer_with"] = unit["answer_with"]
    inner = ", ".join(f"{k}={v}" for k, v in extra.items())
    return f"{unit.get('name')}" + (f"({inner})" if inner else "")


def load_groups(store: Store, price: Price | None = None, *, restate: bool = False) -> list[Group]:
    """Every group in the store. With `price`, dollars are recomputed from the stored tokens at
    that price (what the run would have cost on a priced API) instead of the stored dollars.
    With `restate`, a pool's samples are read again as they would be today (`read_answer`: the
    answer a sample states), for replaying pools stored before stated answers; direct runs'
    answers stay as stored (their strategy chose them).

    Costs are summed per (run, problem) in SQL; only class, correctness and score come back
    per sample, so a million samples load in about a second."""
    runs = {r.rid: r for r in store.runs()}
    db = store.db
    # each unit's wall seconds: its tokens at its segment's measured rate (segment wall time /
    # segment tokens), so concurrent units are not counted twice; summed per (run, problem)
    db.execute("CREATE TEMP TABLE IF NOT EXISTS rates (sid INTEGER PRIMARY KEY, rate REAL)")
    db.execute("DELETE FROM rates")
    db.execute(
        "INSERT INTO rates SELECT sid, CASE WHEN tokens > 0 THEN"
        " MAX(0.0, COALESCE(ended, started) - started) / tokens ELSE 0.0 END FROM segments"
    )
    per = _floats(
        db.execute(
            "SELECT rid, pid, COUNT(*), SUM(policy_prompt + verifier_prompt),"
            " SUM(policy_cached + verifier_cached), SUM(policy_completion + verifier_completion),"
            " SUM(flops), SUM(dollars), SUM((policy_prompt - policy_cached + policy_completion"
            " + verifier_prompt - verifier_cached + verifier_completion) * COALESCE(r.rate, 0.0))"
            " FROM units LEFT JOIN rates r USING (sid) GROUP BY rid, pid ORDER BY rid, pid"
        ).fetchall(),
        9,
    )
    if not len(per):
        return []
    rid, pid, count, prompt, cached, completion, flops, dollars, seconds = per.T
    tokens = prompt - cached + completion
    if price is not None:
        cached_price = price.prompt if price.cached is None else price.cached
        dollars = (
            (prompt - cached) * price.prompt + cached * cached_price + completion * price.completion
        ) / 1e6
    # per sample, in the same (run, problem, unit) order: class and correctness in one integer
    flat = _floats(
        db.execute(
            "SELECT class * 2 + correct, COALESCE(score, ?) FROM units ORDER BY rid, pid, unit",
            (_UNSCORED,),
        ).fetchall(),
        2,
    )
    cls = np.floor_divide(flat[:, 0], 2)
    ok = flat[:, 0] - 2 * cls
    if restate:
        cls, ok = restated(store, runs, cls, ok)
    score = flat[:, 1]
    score[score == _UNSCORED] = np.nan
    counts_i = count.astype(np.int64)
    sample_rid = np.repeat(rid.astype(np.int64), counts_i)
    sample_pid = np.repeat(pid.astype(np.int64), counts_i)

    by_identity: dict[str, list[int]] = {}
    for r in runs.values():
        identity = {k: v for k, v in r.config.items() if k != "seed"}
        by_identity.setdefault(json.dumps(identity, sort_keys=True), []).append(r.rid)

    groups = []
    for rids in by_identity.values():
        mask = np.isin(sample_rid, rids)
        if not mask.any():
            continue
        first = runs[rids[0]]
        # pool: one row per problem holding every seed's samples; direct: the same (its
        # per-problem accuracy is then the mean over seeds)
        order = np.argsort(sample_pid[mask], kind="stable")
        p = sample_pid[mask][order]
        uniq, start, counts = np.unique(p, return_index=True, return_counts=True)
        pos = np.arange(len(p)) - np.repeat(start, counts)
        row = np.repeat(np.arange(len(uniq)), counts)
        at = np.flatnonzero(mask)[order]  # this group's units, problem by problem
        cells = (row, pos, (len(uniq), int(counts.max())))
        # costs: the (run, problem) sums of this group, per problem, per unit
        mine = np.isin(rid, rids)
        where = np.searchsorted(uniq, pid[mine].astype(np.int64))
        cost = {
            name: np.bincount(where, weights=values[mine], minlength=len(uniq)) / counts
            for name, values in (
                ("tokens", tokens),
                ("flops", flops),
                ("dollars", dollars),
                ("seconds", seconds),
            )
        }
        groups.append(
            Group(
                task=first.task,
                model=first.model,
                kind=first.kind,
                label=group_label(first),
                config=first.config,
                runs=[runs[r] for r in rids],
                pids=uniq,
                classes=_grid(cls[at], cells, -2, np.int32),
                scores=_grid(score[at], cells, np.nan, np.float64),
                correct=_grid(ok[at], cells, 0, bool),
                sizes=counts,
                cost=cost,
            )
        )
    return groups


def restated(
    store: Store, runs: dict[int, Run], cls: np.ndarray, ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every pool sample's class and correctness (in the units' order) as `read_answer` reads
    its text: the stored class where the stated answer is the one stored, no answer where it
    states none, else the class of its key (graded against the gold once, as a bench does)."""
    cls, ok = cls.copy(), ok.copy()
    pools = {rid for rid, r in runs.items() if r.kind == "pool"}
    rows = store.db.execute(
        "SELECT u.rid, u.pid, c.text, p.gold, p.kind FROM units u"
        " JOIN problems p USING (pid) LEFT JOIN candidates c"
        " ON c.rid = u.rid AND c.pid = u.pid AND c.unit = u.unit AND c.idx = 0"
        " ORDER BY u.rid, u.pid, u.unit"
    ).fetchall()
    known: dict[int, Classes] = {}
    for i, (rid, pid, text, gold, kind) in enumerate(rows):
        kind = kind or "math"
        if rid not in pools or text is None or kind == "code":  # (code: graded in a sandbox)
            continue
        answer = read_answer(text, kind)[0]
        key = canonical(answer, kind)
        if answer is None or key is None:
            cls[i], ok[i] = NO_ANSWER, 0
            continue
        classes = known.get(pid)
        if classes is None:
            classes = known[pid] = store.classes(pid)
        found = known_class(classes, key, answer, kind)
        if found is None:  # a key no sample had: a class of its own, graded once
            fresh = max((c for c, _, _ in classes.values()), default=NO_ANSWER) + 1
            found = (fresh, gold is not None and equivalent(answer, gold, kind))
        if key not in classes:  # a new class, or an alias of one math-verify proved equal
            classes[key] = (*found, answer)
        cls[i], ok[i] = found
    return cls, ok


def _floats(rows: list[tuple[Any, ...]], width: int) -> np.ndarray:
    """SQL rows as a float array (rows × width), without a Python object per cell."""
    flat = np.fromiter(
        itertools.chain.from_iterable(rows), dtype=np.float64, count=len(rows) * width
    )
    return flat.reshape(len(rows), width)


def _grid(
    values: np.ndarray, cells: tuple[np.ndarray, np.ndarray, tuple[int, int]], fill: Any, dtype: Any
) -> np.ndarray:
    """Per-unit values laid out as (problem, position in its pool), padded with `fill`."""
    row, pos, shape = cells
    g = np.full(shape, fill, dtype=dtype)
    g[row, pos] = values
    return g


def direct_outcomes(store: Store, d: Group) -> tuple[dict[int, float], dict[int, float]]:
    """A direct group's mean correctness and generated tokens (policy and verifier) per
    problem id, over its seeds."""
    marks = ",".join(str(r.rid) for r in d.runs)
    acc: dict[int, float] = {}
    gen: dict[int, float] = {}
    for pid, ok, tokens in store.db.execute(
        f"SELECT pid, AVG(correct), AVG(policy_completion + verifier_completion) FROM units"
        f" WHERE rid IN ({marks}) GROUP BY pid"
    ):
        acc[int(pid)] = float(ok)
        gen[int(pid)] = float(tokens)
    return acc, gen


def points(group: Group, *, resamples: int = 2000) -> list[Point]:
    """Accuracy with a 95% bootstrap interval over problems, and mean cost per problem: for a
    pool, at every k for every rule; for a direct run, once."""
    out = []
    if group.config.get("workload"):
        # one budget spent over the set: each problem's answer is the vote over its samples
        per_problem = np.full(len(group.pids), np.nan)
        pools = Pools(
            keys=group.classes, scores=group.scores, correct=group.correct, sizes=group.sizes
        )
        for size in np.unique(group.sizes):
            rows = group.sizes == size
            per_problem[rows] = majority_at(pools, int(size))[rows]
        p = point_of(
            group,
            "workload (vote per problem)",
            round(float(group.sizes.mean())),
            per_problem,
            1.0,
            resamples,
        )
        for c in COSTS:  # each problem's own samples, not k of them
            setattr(p, c, float((group.cost[c] * group.sizes).mean()))
        out.append(p)
        return out
    if group.kind == "direct":
        per_problem = np.nanmean(np.where(group.classes >= -1, group.correct, np.nan), axis=1)
        out.append(point_of(group, group.label, 1, per_problem, 1.0, resamples))
        return out
    pools = Pools(keys=group.classes, scores=group.scores, correct=group.correct, sizes=group.sizes)
    for method in group.methods():
        for k in group.ks():
            per_problem = POOL_RULES[method](pools, k)
            out.append(point_of(group, method, k, per_problem, float(k), resamples))
    return out


def point_of(
    group: Group, method: str, k: int, per_problem: np.ndarray, units: float, resamples: int
) -> Point:
    ok = np.isfinite(per_problem)
    mean, low, high = bootstrap_mean_ci(per_problem[ok], resamples=resamples)
    return Point(
        task=group.task,
        model=group.model,
        method=method,
        group=group.label,
        k=k,
        problems=int(ok.sum()),
        accuracy=mean,
        low=low,
        high=high,
        per_problem=per_problem[ok],
        pids=group.pids[ok],
        **{c: float(group.cost[c][ok].mean() * units) for c in COSTS},
    )


def auroc(scores: np.ndarray, correct: np.ndarray) -> float | None:
    """Mann-Whitney AUROC with ties counted one half; None without both classes."""
    pos, neg = int(correct.sum()), int((~correct).sum())
    if not pos or not neg:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    mid_rank = upper - (counts - 1) / 2.0  # mean 1-based rank of each distinct value
    u = mid_rank[inverse][correct].sum() - pos * (pos + 1) / 2
    return float(u / (pos * neg))


@dataclass
class VerifierQuality:
    task: str
    model: str
    group: str
    samples: int
    auroc: float | None
    false_positive_rate: float | None
    missed: int  # problems with a right scored sample where the top-scored one was wrong
    coverage: int


def verifier_quality(group: Group) -> VerifierQuality:
    """As `ponder.verify.selection_quality`, vectorized: AUROC of scores against correctness,
    and the false-positive rate at best-of-n's selection point over the whole pool."""
    s, c = group.scores, group.correct
    scored = np.isfinite(s)
    filled = np.where(scored, s, -np.inf)
    best = np.argmax(filled, axis=1)  # the earliest top score, as best_of_n picks
    has = scored.any(axis=1)
    top = filled[np.arange(len(s)), best]
    best_right = c[np.arange(len(s)), best] & has
    covered = (c & scored).any(axis=1)
    wrong = scored & ~c
    above = wrong & (filled >= top[:, None])
    n_wrong = int(wrong[has].sum())
    return VerifierQuality(
        task=group.task,
        model=group.model,
        group=group.label,
        samples=int(scored.sum()),
        auroc=auroc(s[scored], c[scored]),
        false_positive_rate=float(above[has].sum() / n_wrong) if n_wrong else None,
        missed=int((covered & ~best_right).sum()),
        coverage=int(covered.sum()),
    )


def difficulty(groups: Sequence[Group], store: Store) -> dict[tuple[str, str], dict[int, str]]:
    """(task, model) -> pid -> difficulty bucket: the problem's level when the data gives one
    (MATH levels), else quintile-style buckets of the model's own pass rate over its largest
    pool (Snell et al.): 'solved 80-100%' is easiest."""
    levels = {
        pid: level
        for pid, level in store.db.execute("SELECT pid, level FROM problems WHERE level NOT NULL")
    }
    out: dict[tuple[str, str], dict[int, str]] = {}
    for g in sorted(groups, key=lambda g: -int(g.sizes.max()) if g.kind == "pool" else 0):
        if g.config.get("workload"):
            continue  # its samples went where they were predicted to help: a biased rate
        key = (g.task, g.model)
        if key in out:
            continue
        if all(int(p) in levels for p in g.pids):
            out[key] = {int(p): f"level {levels[int(p)]}" for p in g.pids}
        elif g.kind == "pool":
            valid = g.classes >= -1
            rate = (g.correct & valid).sum(axis=1) / valid.sum(axis=1)
            edges = [0.2, 0.4, 0.6, 0.8]
            names = ["0-20%", "20-40%", "40-60%", "60-80%", "80-100%"]
            out[key] = {
                int(p): f"solved {names[int(np.searchsorted(edges, r, side='right'))]}"
                for p, r in zip(g.pids, rate, strict=True)
            }
    return out
