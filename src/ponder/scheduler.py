"""The scheduler: all generation goes through here.

It owns concurrency, retries with exponential backoff for transient failures, and charging the
ledger. Strategies await it; they never call a backend.

Concurrency is counted in sequences: a request with n choices holds n units. The backend gets
`queue_factor` × its slots in units, so when one sequence finishes the backend's own queue
already holds the next one and no slot idles while the scheduler reacts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ponder.budget import Ledger, estimate
from ponder.errors import BackendError, BudgetExceeded, TransientError
from ponder.lm.protocol import Capabilities, LanguageModel
from ponder.types import Generation, GenRequest, Usage

T = TypeVar("T")


class WeightedSemaphore:
    """A FIFO semaphore whose holders take several units at once (a request with n choices)."""

    def __init__(self, units: int) -> None:
        self.units = units
        self.free = units
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, weight: int) -> None:
        weight = min(weight, self.units)
        if not self._waiters and self.free >= weight:
            self.free -= weight
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((weight, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.free += weight  # granted and cancelled at once: give the units back
                self._wake()
            else:
                self._waiters.remove((weight, fut))
            raise

    def release(self, weight: int) -> None:
        self.free += min(weight, self.units)
        self._wake()

    def _wake(self) -> None:
        # FIFO: a large request at the head is not starved by small ones behind it.
        while self._waiters and self._waiters[0][0] <= self.free:
            weight, fut = self._waiters.popleft()
            if not fut.done():
                self.free -= weight
                fut.set_result(None)


class Scheduler:
    def __init__(
        self,
        *,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        request_timeout_s: float | None = None,
        queue_factor: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        seed: int = 0,
    ) -> None:
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.request_timeout_s = request_timeout_s
        self.queue_factor = queue_factor
        self._sleep = sleep
        self._jitter = random.Random(seed)
        self._slots: dict[int, WeightedSemaphore] = {}
        # Backends already prepared (held, so their ids stay theirs), with what they can do.
        self._ready: dict[int, tuple[LanguageModel, Capabilities]] = {}

    def slots_for(self, lm: LanguageModel) -> WeightedSemaphore:
        key = id(lm)
        if key not in self._slots:
            units = round(lm.capabilities.slots * self.queue_factor)
            self._slots[key] = WeightedSemaphore(max(1, units))
        return self._slots[key]

    async def generate(self, lm: LanguageModel, req: GenRequest, ledger: Ledger) -> Generation:
        """Run one request: reserve its worst case, wait for slots, retry transient failures,
        charge what it really cost. Raises BudgetExceeded (nothing spent) or BackendError.

        A backend without native n gets n single requests with distinct seeds, each retried
        and charged on its own, so a failure of one never loses what the others computed."""
        ready = self._ready.get(id(lm))
        if ready is None:  # prepared once; its failures are retried like any call's
            ready = self._ready[id(lm)] = (lm, await self._retrying(lm, ledger, lm.prepare))
        caps = ready[1]
        native = caps.native_n(req)
        reservation = ledger.reserve(estimate(req, lm.info, native_n=native))
        try:
            if native:
                return await self._run(lm, req, ledger)
            singles = [
                req.model_copy(update={"n": 1, "seed": None if req.seed is None else req.seed + i})
                for i in range(req.n)
            ]
            # Wait for every single, even after one fails: their cost must land in the ledger
            # before the reservation that covers them is released.
            outcomes = await asyncio.gather(
                *(self._run(lm, r, ledger) for r in singles), return_exceptions=True
            )
            parts: list[Generation] = []
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
                parts.append(outcome)
            return Generation(
                choices=[p.choices[0] for p in parts],
                prompt_tokens=sum(p.prompt_tokens for p in parts),
                cached_tokens=sum(p.cached_tokens for p in parts),
            )
        finally:
            ledger.release(reservation)

    async def _run(self, lm: LanguageModel, req: GenRequest, ledger: Ledger) -> Generation:
        slots = self.slots_for(lm)
        await slots.acquire(req.n)
        try:
            started = time.monotonic()
            gen = await self._retrying(lm, ledger, lambda: lm.generate(req))
            usage = self._usage(lm, gen, time.monotonic() - started)
            ledger.charge(req.role, lm.info.name, usage)
            return gen
        finally:
            slots.release(req.n)

    async def _retrying(
        self, lm: LanguageModel, ledger: Ledger, call: Callable[[], Awaitable[T]]
    ) -> T:
        last: TransientError | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
                await self._sleep(delay * (0.5 + self._jitter.random()))
            timeout = _min_opt(self.request_timeout_s, ledger.seconds_left())
            try:
                if timeout is None:
                    return await call()
                async with asyncio.timeout(timeout):
                    return await call()
            except TimeoutError as e:
                if ledger.seconds_left() == 0:
                    raise BudgetExceeded("budget cap 'seconds' reached during the call") from e
                last = TransientError(f"{lm.info.name}: request timed out (limit {timeout} s)")
            except TransientError as e:
                last = e
            ledger.failed_attempts += 1
        raise BackendError(f"gave up after {self.max_attempts} attempts: {last}")

    @staticmethod
    def _usage(lm: LanguageModel, gen: Generation, seconds: float) -> Usage:
        p, c, k = gen.prompt_tokens, gen.cached_tokens, gen.completion_tokens
        return Usage.model_construct(  # counts the backend already validated
            calls=1,
            prompt_tokens=p,
            cached_tokens=c,
            completion_tokens=k,
            seconds=seconds,
            flops=lm.info.flops(p, c, k),
            dollars=lm.info.dollars(p, c, k),
        )


def _min_opt(a: float | None, b: float | None) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    return min(vals) if vals else None
