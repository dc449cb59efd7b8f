"""Run strategies over problem sets into a store, resumably.

Pooled strategies (sample, vote, weighted_vote, best_of_n) are run once as a *pool*: n
independent samples per problem, each its own unit (scored by the verifier when one is asked
for), so every smaller k is estimated from the same samples and a pool can grow later. Other
strategies are *direct*: one unit is one whole run of the strategy on a problem.

Units are independent and seeded by (seed, problem, unit), so which units were computed before
a crash does not change what the rest compute: a resumed run ends with the rows of an
uninterrupted one.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import platform
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, Protocol

from pydantic import BaseModel, Field

from ponder.answers import READING, canonical
from ponder.bench.store import NO_ANSWER, Run, Store, known_class
from ponder.errors import BackendError
from ponder.runtime.budget import Budget, Ledger
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import POOLED, SCORED, STRATEGIES, Strategy, make_strategy
from ponder.sandbox import Sandbox
from ponder.tasks.registry import grade
from ponder.types import Problem, Result, Usage


class Plan(BaseModel):
    """One run to execute: the strategy each unit runs, how many units per problem, and the
    methods the report evaluates from it (e.g. a scored pool serves vote, weighted_vote and
    best_of_n)."""

    kind: str  # pool | direct
    unit: dict[str, Any]  # the unit strategy's name and config
    n: int  # units per problem
    methods: list[str]
    budget: Budget | None = None

    def strategy(self) -> Strategy:
        options = {k: v for k, v in self.unit.items() if k != "name"}
        return make_strategy(self.unit["name"], **options)


def plan(strategies: Sequence[Strategy], budget: Budget | None = None) -> list[Plan]:
    """Group strategies into runs: pooled strategies (their units are independent samples)
    with the same sampling settings share one pool of the largest n (scored if any of them
    needs a verifier); the rest run directly, one unit per problem."""
    plans: list[Plan] = []
    pools: list[Plan] = []
    pooled = [s for s in strategies if POOLED in STRATEGIES.get(s.name).capabilities]
    pooled_ids = {id(s) for s in pooled}
    # scored pools first, so an unscored strategy with the same sampling settings joins one
    for s in sorted(pooled, key=lambda s: SCORED not in STRATEGIES.get(s.name).capabilities):
        config = s.config()
        sampling = {"temperature": config["temperature"], "answer_with": config["answer_with"]}
        verifier = config.get("verifier")
        name = "best_of_n" if verifier is not None else "sample"
        unit = {"name": name, "n": 1, **sampling, **({"verifier": verifier} if verifier else {})}
        same = [
            p
            for p in pools
            if {k: p.unit[k] for k in sampling} == sampling
            and (verifier is None or p.unit.get("verifier") == verifier)
        ]
        target = same[0] if same else None
        if target is None:
            target = Plan(kind="pool", unit=unit, n=config["n"], methods=[])
            pools.append(target)
        target.n = max(target.n, config["n"])
        if s.name not in target.methods:
            target.methods.append(s.name)
    plans.extend(pools)
    for d in strategies:
        if id(d) not in pooled_ids:
            unit = {"name": d.name, **d.config()}
            plans.append(Plan(kind="direct", unit=unit, n=1, methods=[d.name], budget=budget))
    return plans


def unit_seed(seed: int, problem_id: str, unit: int) -> int:
    digest = hashlib.sha256(f"{seed}:{problem_id}:{unit}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def versions() -> dict[str, str]:
    from ponder import __version__

    found = {"ponder": __version__, "python": platform.python_version()}
    for dist in ("xllamacpp", "math-verify", "numpy"):
        with suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    return found


class Units(Protocol):
    """Where a harness's units are computed: one engine in this process (`LocalUnits`), or
    workers elsewhere (`ponder.bench.distributed`). Whatever computes them, the harness grades
    and stores every result itself: it is the store's only writer."""

    @property
    def model(self) -> str:
        """The model's name, as the run's identity records it."""
        ...

    @property
    def prompting(self) -> Prompting: ...

    @property
    def slots(self) -> int:
        """Sequences the backends run at once, over all workers (sizes the units in flight)."""
        ...

    async def solve(self, problem: Problem, plan: Plan, seed: int) -> Result:
        """One unit of `plan` on `problem`, seeded by `seed`."""
        ...

    async def prepare(self) -> Usage:
        """The backends readied before any unit: what that spent (a server's capability
        probe), which is then no unit's cost: a run's overhead, as loading a model is."""
        ...


class LocalUnits:
    """Units computed by one engine in this process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._strategies: dict[str, Strategy] = {}

    @property
    def model(self) -> str:
        return self.engine.policy.info.name

    @property
    def prompting(self) -> Prompting:
        return self.engine.prompting

    @property
    def slots(self) -> int:
        return self.engine.policy.capabilities.slots

    async def solve(self, problem: Problem, plan: Plan, seed: int) -> Result:
        return await self.engine.solve(
            problem, strategy_of(plan, self._strategies), seed=seed, budget=plan.budget
        )

    async def prepare(self) -> Usage:
        ledger = Ledger()
        await self.engine.scheduler.prepared(self.engine.policy, ledger)
        return ledger.spent


def strategy_of(plan: Plan, made: dict[str, Strategy]) -> Strategy:
    """The plan's unit strategy, made once per distinct unit config and kept in `made`."""
    key = json.dumps(plan.unit, sort_keys=True, default=str)
    if key not in made:
        made[key] = plan.strategy()
    return made[key]


class Progress(BaseModel):
    """What a progress display needs after each unit."""

    done: int = 0  # units finished and stored in this invocation
    total: int = 0  # units this invocation computes
    skipped: int = 0  # units found already stored
    failed: int = 0  # units whose backend failed (not stored: a re-run retries them)
    tokens: int = 0  # tokens processed (prompt not cached + completion)
    correct: int = 0


class Outcome(BaseModel):
    run: Run
    plan: Plan
    progress: Progress
    interrupted: bool
    seconds: float
    # what readying the backend spent before the first unit (a server's probe), in no unit's
    # cost
    probe: Usage = Field(default_factory=Usage)


class Harness:
    """Executes plans on an engine (or on workers: `Units`), writing each finished unit to
    the store."""

    def __init__(
        self,
        engine: Engine | Units,
        store: Store,
        *,
        model_sha256: str = "",
        window: int | None = None,
        keep_trees: bool = False,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.units: Units = LocalUnits(engine) if isinstance(engine, Engine) else engine
        self.store = store
        self.model_sha256 = model_sha256
        # answers are graded here, where they are stored (code tasks run in this sandbox)
        self.sandbox = sandbox or (engine.sandbox if isinstance(engine, Engine) else Sandbox())
        self.slots = self.units.slots
        self.window = window  # units in flight; None: by the plan (see `window_for`)
        # keep each unit's trace (search tree, refine revisions) in the store's `traces`
        self.keep_trees = keep_trees
        self._locks: dict[int, asyncio.Lock] = {}
        self._classes: dict[int, dict[str, tuple[int, bool, str]]] = {}

    def window_for(self, plan: Plan) -> int:
        """Units in flight: enough to keep every backend slot busy while others are graded.
        A pool unit is one sequence; a direct unit is a whole strategy, which also spends
        time between its calls (a search's step barriers, siblings waiting for their slot),
        so twice as many are started: otherwise the last ones start late and finish alone on
        an idle machine (measured: beam's 20 units ended 181–535 s in with 16 in flight)."""
        if self.window is not None:
            return self.window
        return max(4, (2 if plan.kind == "pool" else 4) * self.slots)

    def window_for_pool(self) -> int:
        """Samples in flight for single-sample units (a pool's, a workload's)."""
        return self.window if self.window is not None else max(4, 2 * self.slots)

    def open_run(self, task: str, plan: Plan, seed: int) -> Run:
        model = self.units.model
        identity = {
            "task": task,
            "model": model,
            "model_sha256": self.model_sha256,
            "kind": plan.kind,
            "unit": plan.unit,
            "budget": plan.budget.model_dump(mode="json") if plan.budget else None,
            # defaults left out: a setting added later with a default that keeps today's
            # behaviour does not orphan the runs already stored
            "prompting": self.units.prompting.model_dump(mode="json", exclude_defaults=True),
            "reading": READING,  # how answers were read (a new reading is a new run)
            "seed": seed,
        }
        return self.store.run(
            identity,
            task=task,
            model=model,
            model_sha256=self.model_sha256,
            kind=plan.kind,
            strategy=plan.unit["name"],
            scored="verifier" in plan.unit,
            seed=seed,
            versions=versions(),
        )

    async def execute(
        self,
        task: str,
        problems: Sequence[Problem],
        plan: Plan,
        *,
        seed: int = 0,
        stop: asyncio.Event | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> Outcome:
        """Compute every unit of `plan` over `problems` not already stored. When `stop` is set,
        no new unit starts; the ones in flight finish and are stored."""
        started = time.monotonic()
        run = self.open_run(task, plan, seed)
        pids = self.store.add_problems(task, problems)
        done = self.store.done_units(run.rid)
        todo = [
            (p, pid, u)
            for p, pid in zip(problems, pids, strict=True)
            for u in range(plan.n)
            if (pid, u) not in done
        ]
        progress = Progress(total=len(todo), skipped=len(pids) * plan.n - len(todo))
        if on_progress:
            on_progress(progress)
        if not todo:
            return Outcome(run=run, plan=plan, progress=progress, interrupted=False, seconds=0.0)
        unit = plan.strategy()  # a bad unit config fails here, before any unit starts
        for problem in {p.kind: p for p, _, _ in todo}.values():
            unit.check_fits(problem)  # so does a strategy that cannot answer the set's kind
        probe = Usage()
        with suppress(BackendError):  # (a backend not there: each unit then says so)
            probe = await self.units.prepare()
        sid = self.store.open_segment(run.rid)
        queue = iter(todo)
        stop = stop or asyncio.Event()

        async def worker() -> None:
            for problem, pid, u in queue:
                if stop.is_set():
                    return
                t0 = time.monotonic()
                result = await self.units.solve(problem, plan, unit_seed(seed, problem.id, u))
                latency = time.monotonic() - t0
                total = result.total
                progress.tokens += total.prompt_tokens - total.cached_tokens
                progress.tokens += total.completion_tokens
                if result.error is not None:
                    # a backend failure is not a result: not stored, so a re-run retries it
                    progress.failed += 1
                else:
                    graded = [
                        await self.classify(pid, problem, c.answer) for c in result.candidates
                    ]
                    chosen = await self.classify(pid, problem, result.answer)
                    self.store.add_unit(
                        run.rid,
                        pid,
                        u,
                        sid,
                        result,
                        graded,
                        chosen,
                        latency,
                        keep_trace=self.keep_trees,
                    )
                    progress.correct += chosen[1]
                    progress.done += 1
                if on_progress:
                    on_progress(progress)

        try:
            await asyncio.gather(*(worker() for _ in range(self.window_for(plan))))
        finally:
            self.store.close_segment(sid)
        return Outcome(
            run=run,
            plan=plan,
            progress=progress,
            # not every unit was attempted (stopped); failed units were attempted, not stored
            interrupted=progress.done + progress.failed < len(todo),
            seconds=time.monotonic() - started,
            probe=probe,
        )

    async def classify(self, pid: int, problem: Problem, answer: str | None) -> tuple[int, bool]:
        """(answer class, correct): equivalent answers share a class; each class is graded
        once per problem, whatever run or unit meets it first."""
        kind = problem.kind or "math"
        key = canonical(answer, kind)
        if answer is None or key is None:
            return NO_ANSWER, False
        lock = self._locks.setdefault(pid, asyncio.Lock())
        async with lock:
            known = self._classes.get(pid)
            if known is None:
                known = self._classes[pid] = self.store.classes(pid)
            found = known_class(known, key, answer, kind)
            if found is not None:
                if key not in known:  # math-verify proved it one of a class: an alias
                    self.store.alias_class(pid, key, *found, answer)
                    known[key] = (*found, answer)
                return found
            ok = await grade(problem, answer, self.sandbox)
            cls = self.store.add_class(pid, key, ok, answer)
            known[key] = (cls, ok, answer)
            return cls, ok
