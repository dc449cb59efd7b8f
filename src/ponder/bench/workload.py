"""One token budget over a whole problem set (`ponder bench ... --budget-tokens-total B`),
spent where the next sample is predicted to buy the most accuracy per token.

    every problem gets one sample (the probe, round robin)
    then, while the budget affords another sample:
        for each problem: gain ← (1 − P(its leader stays the leader))     the Beta posterior
                                 / (tokens a sample of it costs · √samples so far)
        sample the problems with the highest gain (a window at a time, one each)
    each problem's answer: the vote over its samples so far

The gain is the chance the vote can still change, per token, damped as a problem's samples
grow (one more sample moves a vote of many less than a vote of few): the budget leaves
problems whose answers agree and goes to open ones, cheap ones first. A router's predicted
vote curves were the other gain tried; replayed on the stored pools they ranked problems no
better than uniform allocation (benchmarks/RESULTS.md, "workload.py"), so a router given to a
workload sets only how samples answer and their temperature.

Anytime: every sample is stored as it finishes, in the order it was bought; stopped at any
moment, each problem's answer is the vote over what it has, and the report draws accuracy
against the total spent from that order. The budget is never exceeded: every sample runs on a
ledger over the whole set (`Ledger(parent=...)`) that reserves each call's worst case, and a
sample is started only while the worst case fits what is left.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from ponder.answers import READING
from ponder.bench.harness import Harness, LocalUnits, unit_seed, versions
from ponder.bench.router import opened_pool
from ponder.bench.store import Run, Store
from ponder.consensus.stopping import unsettled_per_token
from ponder.errors import UsageError
from ponder.runtime.budget import Budget, Ledger, estimate
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import make_strategy
from ponder.types import AnswerWith, GenRequest, ModelInfo, Problem

# Samples each problem gets first: 1, chosen on three train pools (GSM8K chain of thought and
# tool-integrated, MATH) against 2-4 by `benchmarks/workload.py`: the leader-settling rule then
# decides from the second sample on.
GREEDY_PROBE = 1
# The gain's damping by samples so far (gain / samples^DAMPING): 0.5, chosen on the same three
# train pools against 0 (none), 0.25, 0.75, 1 and 2.
DAMPING = 0.5


class Workload(BaseModel):
    """A workload run's settings (its identity in the store, with the task, model and seed)."""

    tokens_total: int  # the budget over the whole set: prompt + completion tokens
    max_n: int = 16  # samples per problem at most
    probe: int = GREEDY_PROBE  # samples every problem gets first (round robin)
    damping: float = DAMPING  # a problem's gain is divided by (its samples)^damping
    temperature: float = 0.7
    answer_with: AnswerWith = "reasoning"  # how every sample answers (a router's own mode)
    router_sha256: str | None = None  # the router that chose answer_with and temperature
    problems: int = 0  # the set's size (set by run_workload)


class WorkloadProgress(BaseModel):
    done: int = 0
    spent: int = 0  # tokens charged (prompt + completion) to stored samples, before included
    failed: int = 0  # samples the backend failed this invocation (not stored: a re-run retries)
    lost: int = 0  # the tokens those were charged before they failed (spent on the budget too)
    total: int = 0  # the budget
    correct: int = 0  # problems whose vote is right now
    problems: int = 0


@dataclass
class _State:
    problem: Problem
    pid: int
    classes: list[int | None] = field(default_factory=list)
    right: list[bool] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.classes)

    def add(self, cls: int | None, right: bool, completion: int) -> None:
        """One more sample: its answer's class (None: no answer), whether it is right and the
        tokens it generated."""
        self.classes.append(cls)
        self.right.append(right)
        self.tokens.append(completion)

    def vote_right(self) -> bool:
        return vote_right(self.classes, self.right)


def vote_counts(classes: Sequence[int | None]) -> dict[int, int]:
    """Votes per answer class, in the order first seen (None: no answer, no vote)."""
    votes: dict[int, int] = {}
    for c in classes:
        if c is not None:
            votes[c] = votes.get(c, 0) + 1
    return votes


def vote_right(classes: Sequence[int | None], right: Sequence[bool]) -> bool:
    """Whether the vote over samples (their answers' classes, None: no answer; in the order
    bought) picks a right answer; the first seen wins a tie."""
    votes = vote_counts(classes)
    if not votes:
        return False
    top = max(votes.values())
    lead = next(c for c in votes if votes[c] == top)
    return any(r for c, r in zip(classes, right, strict=True) if c == lead)


@dataclass
class WorkloadOutcome:
    run: Run
    progress: WorkloadProgress
    interrupted: bool
    seconds: float


def local_engine(harness: Harness) -> Engine:
    """The engine a workload samples with: one budget is spent here, not over workers."""
    if not isinstance(harness.units, LocalUnits):
        raise UsageError("a token budget over a whole set runs on a local engine, not over Ray")
    return harness.units.engine


def open_workload_run(harness: Harness, task: str, workload: Workload, seed: int) -> Run:
    engine = local_engine(harness)
    unit = {
        "name": "sample",
        "n": 1,
        "temperature": workload.temperature,
        "answer_with": workload.answer_with,
    }
    identity = {
        "task": task,
        "model": engine.policy.info.name,
        "model_sha256": harness.model_sha256,
        "kind": "pool",
        "unit": unit,
        "budget": None,
        # (the answer mode is the unit's, as in every pool)
        "workload": workload.model_dump(mode="json", exclude={"answer_with"}),
        "prompting": engine.prompting.model_dump(mode="json", exclude_defaults=True),
        "reading": READING,
        "seed": seed,
    }
    return harness.store.run(
        identity,
        task=task,
        model=engine.policy.info.name,
        model_sha256=harness.model_sha256,
        kind="pool",
        strategy="sample",
        scored=False,
        seed=seed,
        versions=versions(),
    )


async def run_workload(
    harness: Harness,
    task: str,
    problems: Sequence[Problem],
    workload: Workload,
    *,
    seed: int = 0,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[WorkloadProgress], None] | None = None,
) -> WorkloadOutcome:
    """Spend `workload.tokens_total` over `problems` (resuming what the store holds)."""
    started = time.monotonic()
    store, engine = harness.store, local_engine(harness)
    workload = workload.model_copy(update={"problems": len(problems)})
    run = open_workload_run(harness, task, workload, seed)
    pids = store.add_problems(task, problems)
    states = [_State(p, pid) for p, pid in zip(problems, pids, strict=True)]
    by_pid = {s.pid: s for s in states}
    spent, order = _resume(store, run.rid, by_pid)
    ledger = Ledger(Budget(tokens=max(0, workload.tokens_total - spent)))
    sample = make_strategy(
        "sample", n=1, temperature=workload.temperature, answer_with=workload.answer_with
    )
    progress = WorkloadProgress(
        spent=spent,
        total=workload.tokens_total,
        problems=len(states),
        correct=sum(s.vote_right() for s in states),
    )
    stop = stop or asyncio.Event()
    window = harness.window_for_pool()
    worst = {
        s.pid: worst_case(engine.prompting, engine.policy.info, s.problem, workload.answer_with)
        for s in states
    }
    sid = store.open_segment(run.rid)

    async def one(state: _State, rank: float) -> None:
        nonlocal order
        u = state.count
        t0 = time.monotonic()
        result = await engine.solve(
            state.problem,
            sample,
            seed=unit_seed(seed, state.problem.id, u),
            workload=ledger,
        )
        total = result.total
        charged = total.prompt_tokens + total.completion_tokens
        if result.error is not None or not (result.candidates or charged):
            # not stored: a re-run retries it; what it was charged is still spent
            progress.failed += int(result.error is not None)
            progress.lost += charged
            return
        # (no candidate but tokens charged: a tool-integrated sample whose later round the
        # budget refused; stored unanswered, so its tokens count here and on a resume)
        progress.spent += charged
        cand = result.candidates[0] if result.candidates else None
        graded = [
            await harness.classify(state.pid, state.problem, c.answer) for c in result.candidates
        ]
        chosen = await harness.classify(state.pid, state.problem, result.answer)
        result.info["workload"] = {"order": order, "gain": rank}
        order += 1
        before = state.vote_right()
        state.add(
            None if not graded or graded[0][0] < 0 else graded[0][0],
            bool(graded) and graded[0][1],
            total.completion_tokens if cand is None else cand.completion_tokens,
        )
        store.add_unit(run.rid, state.pid, u, sid, result, graded, chosen, time.monotonic() - t0)
        progress.correct += int(state.vote_right()) - int(before)
        progress.done += 1
        if on_progress:
            on_progress(progress)

    try:
        while not stop.is_set():
            # what the ledger has not charged: stored samples, failed ones and any call a
            # result's own total leaves out alike (nothing is in flight between batches)
            left = (ledger.budget.tokens or 0) - ledger.spent.total_tokens
            chosen = _choose(states, workload, window, worst, left)
            if not chosen:
                break
            stored = progress.done
            await asyncio.gather(*(one(s, r) for s, r in chosen))
            if progress.done == stored:
                # nothing came back: the budget refused every first round (a tool-integrated
                # prompt, rendered, may cost more than `worst` guessed) or the backend failed;
                # picking the same samples again would spin (a re-run retries)
                break
    finally:
        store.close_segment(sid)
    return WorkloadOutcome(
        run=run,
        progress=progress,
        interrupted=stop.is_set(),
        seconds=time.monotonic() - started,
    )


def worst_case(
    prompting: Prompting, info: ModelInfo, problem: Problem, answer_with: AnswerWith
) -> int:
    """The most one sample's first call can cost (prompt + completion tokens); a
    tool-integrated sample's later rounds reserve theirs on the same ledger as they go."""
    req = GenRequest(
        messages=prompting.messages(problem, answer_with), max_tokens=prompting.max_tokens
    )
    return estimate(req, info).total_tokens


def _choose(
    states: list[_State],
    workload: Workload,
    window: int,
    worst: dict[int, int],
    left: int,
) -> list[tuple[_State, float]]:
    """The next picks whose worst cases fit together in what is `left`."""
    chosen: list[tuple[_State, float]] = []
    for state, rank in _pick(states, workload, window):
        need = worst[state.pid]
        if need <= left:
            chosen.append((state, rank))
            left -= need
    return chosen


def _resume(store: Store, rid: int, by_pid: dict[int, _State]) -> tuple[int, int]:
    """The samples a run already holds, into the states; (tokens spent, next order)."""
    spent, order = 0, 0
    for pid, sample, info in _stored_samples(store, rid):
        spent += sample.cost
        order = max(order, int(json.loads(info).get("workload", {}).get("order", -1)) + 1)
        state = by_pid.get(pid)
        if state is not None:
            state.add(sample.cls, sample.right, sample.completion)
    return spent, order


def _stored_samples(store: Store, rid: int) -> Iterator[tuple[int, PooledSample, str]]:
    """A run's samples in (problem, unit) order: (pid, the sample, its unit's info JSON)."""
    for pid, cls, ok, cost, completion, info in store.db.execute(
        "SELECT u.pid, u.class, u.correct, u.policy_prompt + u.policy_completion"
        " + u.verifier_prompt + u.verifier_completion,"
        " COALESCE(c.completion_tokens, u.policy_completion), u.info"
        " FROM units u LEFT JOIN candidates c ON c.rid = u.rid AND c.pid = u.pid"
        " AND c.unit = u.unit AND c.idx = 0 WHERE u.rid = ? ORDER BY u.pid, u.unit",
        (rid,),
    ).fetchall():
        sample = PooledSample(None if cls < 0 else int(cls), bool(ok), int(cost), int(completion))
        yield int(pid), sample, info


def _pick(states: list[_State], workload: Workload, window: int) -> list[tuple[_State, float]]:
    """The next samples to buy, best first: the probe round robin, then by gain (problems with
    nothing to gain get none)."""
    short = [s for s in states if s.count < min(workload.probe, workload.max_n)]
    if short:
        least = min(s.count for s in short)
        return [(s, math.inf) for s in short if s.count == least][:window]
    ranked = []
    for s in states:
        if s.count >= workload.max_n:
            continue
        gain = _gain(s, workload)
        if gain > 0:
            ranked.append((gain, s.pid, s))
    ranked.sort(key=lambda g: (-g[0], g[1]))
    return [(s, g) for g, _, s in ranked[:window]]


def _gain(state: _State, workload: Workload) -> float:
    """What one more sample of this problem promises: the chance its vote can still change,
    per generated token, damped by the samples it has (`unsettled_per_token`)."""
    votes = vote_counts(state.classes).values()
    per = float(np.mean(state.tokens)) if state.tokens else 1.0
    return unsettled_per_token(votes, per, state.count, workload.damping)


# -- reading a workload run back ------------------------------------------------------------
def anytime(
    store: Store, rids: Sequence[int], problems: int | None = None
) -> list[tuple[float, float]]:
    """(total tokens spent, accuracy over the set) after each sample, in the order bought:
    the anytime curve. Problems without a sample count as wrong; `problems`: the set's size
    (default: the problems with a sample)."""
    marks = ",".join(str(r) for r in rids)
    rows = store.db.execute(
        "SELECT pid, class, correct, policy_prompt + policy_completion + verifier_prompt"
        f" + verifier_completion, info FROM units WHERE rid IN ({marks})"
    ).fetchall()
    rows.sort(key=lambda r: json.loads(r[4]).get("workload", {}).get("order", 0))
    states: dict[int, _State] = {}
    size = problems or len({r[0] for r in rows}) or 1
    right = 0
    spent = 0.0
    out: list[tuple[float, float]] = []
    for pid, cls, ok, tokens, _ in rows:
        s = states.setdefault(int(pid), _State(Problem(question=""), int(pid)))
        before = s.vote_right()
        s.add(None if cls < 0 else int(cls), bool(ok), 0)
        right += int(s.vote_right()) - int(before)
        spent += float(tokens)
        out.append((spent, right / size))
    return out


# -- a workload replayed on a stored pool ------------------------------------------------------
@dataclass(frozen=True)
class PooledSample:
    """One stored sample as a workload buys it."""

    cls: int | None  # its answer's class (None: no answer)
    right: bool
    cost: int  # prompt + completion tokens charged: what a workload's budget counts
    completion: int  # tokens generated


@dataclass
class StoredPool:
    """A pool's samples per problem in unit order. Unit u has the seed a workload run with the
    pool's seed and settings gives that problem's u-th sample: on a deterministic backend a
    replay buys exactly what the live run would, elsewhere samples of the same distribution."""

    path: Path
    rid: int  # the pool's run in that store
    problems: list[Problem]
    samples: list[list[PooledSample]]
    worst: list[int]  # each problem's first-call worst case, as a live run reserves it
    answer_with: AnswerWith
    temperature: float
    restated: bool = False  # read as today (stated answers), not as stored

    def take(self, rows: Sequence[Sequence[int]]) -> StoredPool:
        """The same pool with each problem's samples in another order: rows[i] lists problem
        i's unit indices (a permutation, or a prefix of one)."""
        return replace(
            self, samples=[[s[j] for j in r] for s, r in zip(self.samples, rows, strict=True)]
        )

    def only(self, ids: Sequence[str]) -> StoredPool:
        """The pool's problems with these ids (in the pool's order)."""
        wanted = set(ids)
        keep = [i for i, p in enumerate(self.problems) if p.id in wanted]
        return replace(
            self,
            problems=[self.problems[i] for i in keep],
            samples=[self.samples[i] for i in keep],
            worst=[self.worst[i] for i in keep],
        )


def stored_pool(
    path: Path,
    *,
    task: str | None = None,
    answer_with: AnswerWith | None = None,
    restate: bool = False,
) -> StoredPool:
    """The largest pool in a store (of samples answered `answer_with`, where given), problems
    with fewer samples than the largest left out; with `restate`, its samples read as today
    (`load_groups`)."""
    with opened_pool(path, task, answer_with, restate=restate) as (store, _, g):
        if len(g.runs) != 1:
            raise UsageError(f"{path}: the pool spans {len(g.runs)} seeds; a workload runs one")
        run = g.runs[0]
        prompting = Prompting(**run.config.get("prompting", {}))
        info = ModelInfo(name=run.model)
        samples: dict[int, list[PooledSample]] = {}
        row_of = {int(p): i for i, p in enumerate(g.pids)}
        for pid, sample, _ in _stored_samples(store, run.rid):
            mine = samples.setdefault(pid, [])
            if restate:  # the group's classes are read again; its order is the units'
                cls = int(g.classes[row_of[pid], len(mine)])
                right = bool(g.correct[row_of[pid], len(mine)])
                sample = replace(sample, cls=None if cls < 0 else cls, right=right)
            mine.append(sample)
        n = max(len(v) for v in samples.values())
        pids = [p for p in sorted(samples) if len(samples[p]) == n]
        meta = {
            int(pid): Problem(question=question, id=problem_id, gold=gold, kind=kind)
            for pid, problem_id, question, gold, kind in store.db.execute(
                "SELECT pid, problem_id, question, gold, kind FROM problems"
            )
        }
    problems = [meta[p] for p in pids]
    return StoredPool(
        path=path,
        rid=run.rid,
        problems=problems,
        samples=[samples[p] for p in pids],
        worst=[worst_case(prompting, info, p, g.answer_with) for p in problems],
        answer_with=g.answer_with,
        temperature=float(run.config.get("unit", {}).get("temperature", 0.7)),
        restated=restate,
    )


@dataclass
class Replayed:
    """What a replayed workload bought."""

    curve: list[tuple[int, float]]  # (tokens spent, accuracy over the set) after each sample
    right: list[bool]  # each problem's vote at the end
    samples: list[int]  # samples bought per problem
    generated: list[int]  # tokens generated per problem (the spend without the prompts)

    @property
    def spent(self) -> int:
        return self.curve[-1][0] if self.curve else 0


def replay(
    pool: StoredPool,
    workload: Workload,
    *,
    window: int = 16,
) -> Replayed:
    """What `run_workload` buys when each problem's samples are the pool's, in its order: the
    same picks, window by window, each reserving its worst case against the budget left.
    No model runs; `max_n` is capped at the pool's size."""
    cap = min(workload.max_n, min(len(s) for s in pool.samples))
    workload = workload.model_copy(update={"max_n": cap, "problems": len(pool.problems)})
    states = [_State(p, i) for i, p in enumerate(pool.problems)]
    worst = dict(enumerate(pool.worst))
    spent = right = 0
    generated = [0] * len(states)
    curve: list[tuple[int, float]] = []
    while chosen := _choose(states, workload, window, worst, workload.tokens_total - spent):
        for state, _ in chosen:
            s = pool.samples[state.pid][state.count]
            before = state.vote_right()
            state.add(s.cls, s.right, s.completion)
            right += int(state.vote_right()) - int(before)
            spent += s.cost
            generated[state.pid] += s.completion
            curve.append((spent, right / len(states)))
    return Replayed(curve, [s.vote_right() for s in states], [s.count for s in states], generated)


def is_workload(config: dict[str, Any]) -> bool:
    return bool(config.get("workload"))
