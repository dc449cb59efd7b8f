"""A sweep's units over Ray actors (the `[ray]` extra): `ponder bench --ray [ADDRESS]`.

Each worker is a Ray actor holding an Engine over its own backend (the embedded model with
its own threads, a server's client, or a fake). The harness in the driver hands units out
and stays the store's only writer: workers return Results, the driver grades and stores
them, so resume, idempotence and Ctrl-C work as on one machine. Units are seeded by (seed,
problem, unit), so which worker computes one does not change it.

- Every unit of a problem goes to the worker that got the problem's first unit (its prefix
  cache holds the question); a new problem goes to the worker with the fewest units in flight.
- A worker that dies (its process killed, its node lost) is dropped: its units in flight are
  computed again on the others, and its problems move with them. Nothing it computed was
  stored twice, since only the units it returned were stored, and those exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ponder.bench.harness import LocalUnits, Plan
from ponder.errors import ModelError, PonderError
from ponder.lm.config import BackendConfig
from ponder.lm.remote import check_room, connect, first_line, worker_resources
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.types import Problem, Result, Usage


class WorkersLost(PonderError):
    """Every worker died: the sweep cannot go on (what was stored is kept)."""


class UnitWorker:
    """A Ray actor: one engine, computing whole units in its own event loop."""

    def __init__(self, config: BackendConfig, prompting: Prompting) -> None:
        self.units = LocalUnits(Engine.open(config, prompting=prompting))

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.units.model,
            "slots": self.units.slots,
            "pid": os.getpid(),
            "node": socket.gethostname(),
        }

    async def solve(self, problem: Problem, plan: Plan, seed: int) -> Result:
        return await self.units.solve(problem, plan, seed)

    async def prepare(self) -> Usage:
        return await self.units.prepare()

    async def aclose(self) -> None:
        await self.units.engine.aclose()


@dataclass
class Worker:
    index: int
    actor: Any
    pid: int = 0
    node: str = ""
    slots: int = 1
    alive: bool = True
    in_flight: int = 0
    done: int = 0  # units it returned
    problems: set[str] = field(default_factory=set)

    def name(self) -> str:
        return f"Ray worker {self.index} (pid {self.pid} on {self.node})"


class RayUnits:
    """Units computed by `workers` Ray actors, each holding the backend `config` names."""

    def __init__(
        self,
        config: BackendConfig,
        prompting: Prompting,
        *,
        workers: int = 2,
        address: str | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        ray = self._ray = connect(address)
        self._prompting = prompting
        self._warn = warn or (lambda message: None)
        config, cpus = worker_resources(config, workers)
        check_room(ray, cpus, workers)
        actor_class = ray.remote(UnitWorker).options(num_cpus=cpus, max_concurrency=1000)
        self.workers = [Worker(i, actor_class.remote(config, prompting)) for i in range(workers)]
        self.started = time.monotonic()
        try:
            described = ray.get([w.actor.describe.remote() for w in self.workers])
        except ray.exceptions.RayError as e:
            self._kill()
            raise ModelError(f"a Ray worker could not open its backend: {first_line(e)}") from None
        for w, d in zip(self.workers, described, strict=True):
            w.pid, w.node, w.slots = d["pid"], d["node"], d["slots"]
        self._model = str(described[0]["model"])
        self._of: dict[str, Worker] = {}  # problem → the worker that has it

    # -- Units ---------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._model

    @property
    def prompting(self) -> Prompting:
        return self._prompting

    @property
    def slots(self) -> int:
        return sum(w.slots for w in self.workers)

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    async def prepare(self) -> Usage:
        """Each worker's backend readied; what their probes spent, together (a worker that
        fails here is left to `solve`, which moves its problems to the others)."""
        asked = [w.actor.prepare.remote() for w in self.alive()]
        spent = await asyncio.gather(*asked, return_exceptions=True)
        return Usage.total_of(u for u in spent if isinstance(u, Usage))

    async def solve(self, problem: Problem, plan: Plan, seed: int) -> Result:
        """One unit on the worker that has the problem; on another if that one dies."""
        key = f"{problem.id}\x00{problem.question}"
        while True:
            worker = self._worker_for(key)
            worker.in_flight += 1
            try:
                result: Result = await worker.actor.solve.remote(problem, plan, seed)
            except self._ray.exceptions.RayActorError as e:
                self._lost(worker, e)
                continue  # computed again elsewhere; it was never stored
            finally:
                worker.in_flight -= 1
            worker.done += 1
            return result

    def _worker_for(self, key: str) -> Worker:
        held = self._of.get(key)
        if held is not None and held.alive:
            return held
        alive = self.alive()
        if not alive:
            raise WorkersLost(
                f"all {len(self.workers)} Ray workers died; the units stored so far are kept "
                "(run the same command to resume)"
            )
        worker = min(alive, key=lambda w: (w.in_flight / w.slots, len(w.problems), w.index))
        self._of[key] = worker
        worker.problems.add(key)
        return worker

    def _lost(self, worker: Worker, e: BaseException) -> None:
        if not worker.alive:
            return
        worker.alive = False
        left = len(self.alive())
        self._warn(
            f"{worker.name()} died ({first_line(e)}); its units run again on the {left} left"
        )

    # -- lifetime ------------------------------------------------------------------------------
    def _kill(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):  # already gone
                self._ray.kill(w.actor)

    async def aclose(self) -> None:
        for w in self.alive():
            with contextlib.suppress(self._ray.exceptions.RayError):
                await w.actor.aclose.remote()
        self._kill()

    async def __aenter__(self) -> RayUnits:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
