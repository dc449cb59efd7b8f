"""The scheduler: all generation goes through here.

It owns concurrency, retries with exponential backoff for transient failures, and charging the
ledger. Strategies await it; they never call a backend.

Concurrency is counted in sequences: a request with n choices holds n units. The backend gets
`queue_factor` × its slots in units, so when one sequence finishes the backend's own queue
already holds the next one and no slot idles while the scheduler reacts.

A backend that pins requests to slots (llama.cpp) gets a `SlotRouter` instead of its own
queue: each request is placed on the slot whose prefix cache holds the most of its prompt
(slots.py). A `Lease` holds one such slot across consecutive calls, so a step and then its
judgement run on the slot that holds the step.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from ponder.errors import BackendError, BudgetExceeded, TransientError
from ponder.lm.cache import prompt_key
from ponder.lm.protocol import Capabilities, LanguageModel, Watch, probe_taker
from ponder.runtime.budget import Ledger, estimate
from ponder.runtime.slots import SlotRouter
from ponder.types import USAGE_FIELDS, Generation, GenRequest, Usage

T = TypeVar("T")
A = TypeVar("A")


class WeightedSemaphore:
    """A FIFO semaphore whose holders take several units at once (a request with n choices)."""

    def __init__(self, units: int) -> None:
        self.units = units
        self.free = units
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        """Units asked for by callers still waiting for them."""
        return sum(weight for weight, _ in self._waiters)

    def take(self, weight: int) -> bool:
        """Take the units now if they are free and nobody waits (no await needed)."""
        if weight > self.units:  # (no min(): this runs on every call)
            weight = self.units
        if self._waiters or self.free < weight:
            return False
        self.free -= weight
        return True

    async def acquire(self, weight: int) -> None:
        if self.take(weight):
            return
        weight = min(weight, self.units)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((weight, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.free += weight  # granted and cancelled at once: give the units back
                self._wake()
            elif (weight, fut) in self._waiters:  # (_wake may have dropped it already)
                self._waiters.remove((weight, fut))
            raise

    def release(self, weight: int) -> None:
        self.free += weight if weight < self.units else self.units
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        # FIFO: a large request at the head is not starved by small ones behind it.
        while self._waiters and self._waiters[0][0] <= self.free:
            weight, fut = self._waiters.popleft()
            if not fut.done():
                self.free -= weight
                fut.set_result(None)


@dataclass(slots=True)
class _Backend:
    """A prepared backend: what it can do, its units, its router if it pins slots, and how
    to take what it spent preparing if it spends to prepare."""

    lm: LanguageModel
    caps: Capabilities
    units: WeightedSemaphore
    router: SlotRouter | None
    take_probe: Callable[[], Usage] | None


class Lease:
    """One slot of a backend held across consecutive single-sequence calls (a step, then
    its judgement), so each call finds the one before it in that slot's prefix cache. The
    slot is taken by the first call and given back when the lease closes. Calls to other
    backends, calls with n > 1 and backends that do not pin slots go the usual way."""

    def __init__(self, scheduler: Scheduler, lm: LanguageModel) -> None:
        self.scheduler = scheduler
        self.lm = lm
        self.slot: int | None = None
        self.text: str | None = None  # what the slot holds after the last call

    def covers(self, lm: LanguageModel, req: GenRequest) -> bool:
        return lm is self.lm and req.n == 1 and id(lm) in self.scheduler._routers

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.slot is not None:
            self.scheduler._routers[id(self.lm)].release([self.slot], self.text)
            self.scheduler.slots_for(self.lm).release(1)
            self.slot = None


class Scheduler:
    def __init__(
        self,
        *,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_max_s: float = 30.0,
        request_timeout_s: float | None = None,
        queue_factor: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        seed: int = 0,
        slot_router: Callable[[int], SlotRouter | None] = SlotRouter,
    ) -> None:
        """`slot_router(slots)` places requests on the slots of a backend that pins them;
        returning None leaves placement to the backend (to compare, or for a backend whose
        caches the router's model does not describe)."""
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.request_timeout_s = request_timeout_s
        self.queue_factor = queue_factor
        self._sleep = sleep
        self._slot_router = slot_router
        self._jitter = random.Random(seed)
        self._slots: dict[int, WeightedSemaphore] = {}
        # Backends that pin requests to slots, with the router that places them.
        self._routers: dict[int, SlotRouter] = {}
        # Backends already prepared (held, so their ids stay theirs), with what they can do.
        self._ready: dict[int, _Backend] = {}

    def slots_for(self, lm: LanguageModel) -> WeightedSemaphore:
        key = id(lm)
        if key not in self._slots:
            units = round(lm.capabilities.slots * self.queue_factor)
            self._slots[key] = WeightedSemaphore(max(1, units))
        return self._slots[key]

    def idle_slots(self, lm: LanguageModel) -> int:
        """Backend slots that no request holds or waits for right now (none while any request
        waits): what a strategy may take without taking it from another problem."""
        sem = self._slots.get(id(lm))
        if sem is None:
            return lm.capabilities.slots
        if sem.waiting:
            return 0
        return max(0, lm.capabilities.slots - (sem.units - sem.free))

    def lease(self, lm: LanguageModel) -> Lease:
        """`with scheduler.lease(lm) as lease:` — calls given `lease=lease` share one slot."""
        return Lease(self, lm)

    async def sibling_leases(
        self, lm: LanguageModel, req: GenRequest, ledger: Ledger, n: int
    ) -> list[Lease]:
        """Leases that `n` siblings like `req` (one parent's children) take turns on, one
        after another on each: as many slots as are spare now (at most n − 1, each placed for
        `req`'s prompt), plus one lease that waits for a slot as usual.

        Why: a slot holds one sequence, so a sibling written on a second slot evaluates the
        parent's whole path again, which on a saturated CPU costs as much as writing it; on a
        busy backend the siblings therefore take turns on one slot, each finding the parent's
        path in its cache, and spread only to slots that would otherwise idle."""
        leases: list[Lease] = []
        while len(leases) < n - 1:
            spare = await self.spare_lease(lm, req, ledger)
            if spare is None:
                break
            leases.append(spare)
        leases.append(self.lease(lm))
        return leases

    async def spare_lease(self, lm: LanguageModel, req: GenRequest, ledger: Ledger) -> Lease | None:
        """A lease already holding a slot that is spare now (free while no request waits for
        one), placed for `req`'s prompt; None when the backend does not pin slots or none is
        spare. For work that can run on a slot it already holds instead (a node's siblings):
        it takes more slots only while they would idle."""
        ready = self._ready.get(id(lm))
        if ready is None:
            ready = await self._prepare(lm, ledger)
        if ready.router is None or not ready.units.take(1):
            return None
        slot = ready.router.take_spare(prompt_key(req))
        if slot is None:
            ready.units.release(1)
            return None
        lease = Lease(self, lm)
        lease.slot = slot
        return lease

    async def generate(
        self,
        lm: LanguageModel,
        req: GenRequest,
        ledger: Ledger,
        lease: Lease | None = None,
        watch: Callable[[], Watch] | None = None,
    ) -> Generation:
        """Run one request: reserve its worst case, wait for slots, retry transient failures,
        charge what it really cost. Raises BudgetExceeded (nothing spent) or BackendError.

        A backend without native n gets n single requests with distinct seeds, each retried
        and charged on its own, so a failure of one never loses what the others computed.

        `watch` (a single choice only) makes a fresh watch for each attempt, told of every
        token as it is written; when it says stop, a backend that streams stops generating
        and only what was written is charged. A backend that cannot stream writes the whole
        choice (all charged), and the watch reads its tokens afterwards: the choice is then
        marked stopped where the watch would have stopped it."""
        if watch is not None and req.n != 1:
            raise ValueError(f"a watched request has one choice (n={req.n})")
        ready = self._ready.get(id(lm))
        if ready is None:
            ready = await self._prepare(lm, ledger)
        if not ledger.capped:  # an uncapped ledger reserves nothing (the engine's hot path)
            return await self._dispatch(ready, req, ledger, lease, watch)
        native = ready.caps.native_n(req)
        reservation = ledger.reserve(estimate(req, lm.info, native_n=native))
        try:
            return await self._dispatch(ready, req, ledger, lease, watch)
        finally:
            ledger.release(reservation)

    async def prepared(self, lm: LanguageModel, ledger: Ledger) -> Capabilities:
        """What `lm` can do, once it is prepared (probed once, with retries, on first need)."""
        ready = self._ready.get(id(lm))
        if ready is None:
            ready = await self._prepare(lm, ledger)
        return ready.caps

    async def _prepare(self, lm: LanguageModel, ledger: Ledger) -> _Backend:
        """A backend's capabilities, asked once (failures are retried like any call's). A
        probe is several requests, each under the backend's own timeout, so the per-request
        limit does not bound the whole of it."""
        caps = await self._retrying(lm, ledger, lambda _: lm.prepare(), None, timed=False)
        if id(lm) in self._ready:  # prepared meanwhile by a concurrent first call
            return self._ready[id(lm)]
        take = probe_taker(lm)
        if take is not None:
            charge_probe(lm, take, ledger)  # a probe's tokens go on the bill that waited
        router = self._slot_router(caps.slots) if caps.pin_slots else None
        if router is not None:
            self._routers[id(lm)] = router
        ready = self._ready[id(lm)] = _Backend(lm, caps, self.slots_for(lm), router, take)
        return ready

    def _dispatch(
        self,
        ready: _Backend,
        req: GenRequest,
        ledger: Ledger,
        lease: Lease | None,
        watch: Callable[[], Watch] | None = None,
    ) -> Awaitable[Generation]:
        """The call (or calls) a request becomes: on a lease's slot, placed by the router,
        on the backend's units, or as n singles (a plain function handing back what to
        await: no coroutine frame of its own on the engine's hottest path)."""
        if lease is not None and lease.covers(ready.lm, req):
            return self._run_leased(lease, req, ledger, watch)
        if ready.caps.native_n(req):
            return self._run(ready, req, ledger, watch)
        return self._singles(ready, req, ledger)

    async def _singles(self, ready: _Backend, req: GenRequest, ledger: Ledger) -> Generation:
        singles = [
            replace(req, n=1, seed=None if req.seed is None else req.seed + i) for i in range(req.n)
        ]
        # Wait for every single, even after one fails: their cost must land in the ledger
        # before the reservation that covers them is released.
        outcomes = await asyncio.gather(
            *(self._run(ready, r, ledger) for r in singles), return_exceptions=True
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
            reasoning_tokens=sum(p.reasoning_tokens for p in parts),
        )

    def _run(
        self,
        ready: _Backend,
        req: GenRequest,
        ledger: Ledger,
        watch: Callable[[], Watch] | None = None,
    ) -> Awaitable[Generation]:
        """One call on the backend's units, placed by its router if it has one."""
        if ready.router is None:
            return self._call(ready.lm, req, ledger, ready.units, watch)
        return self._routed(ready.router, ready.lm, req, ledger, watch)

    async def _routed(
        self,
        router: SlotRouter,
        lm: LanguageModel,
        req: GenRequest,
        ledger: Ledger,
        watch: Callable[[], Watch] | None = None,
    ) -> Generation:
        slots = self.slots_for(lm)
        await slots.acquire(req.n)
        try:
            key = prompt_key(req)
            placed = await router.acquire(key, req.n)
            text = None
            try:
                if req.n == 1:
                    req = replace(req, slot=placed[0])
                gen = await self._call(lm, req, ledger, None, watch)
                text = key + gen.choices[0].text if req.n == 1 and gen.choices else None
                return gen
            finally:
                router.release(placed, text)
        finally:
            slots.release(req.n)

    async def _run_leased(
        self,
        lease: Lease,
        req: GenRequest,
        ledger: Ledger,
        watch: Callable[[], Watch] | None = None,
    ) -> Generation:
        lm, router = lease.lm, self._routers[id(lease.lm)]
        key = prompt_key(req)
        if lease.slot is None:  # the lease's first call takes its slot, kept until it closes
            units = self.slots_for(lm)
            await units.acquire(1)
            try:
                (lease.slot,) = await router.acquire(key)
            except BaseException:
                units.release(1)
                raise
        else:
            router.holding(lease.slot, key)
        lease.text = key  # what the slot holds if the call fails midway (at least a guess)
        gen = await self._call(lm, replace(req, slot=lease.slot), ledger, None, watch)
        lease.text = key + gen.choices[0].text if gen.choices else key
        return gen

    async def _call(
        self,
        lm: LanguageModel,
        req: GenRequest,
        ledger: Ledger,
        units: WeightedSemaphore | None = None,
        watch: Callable[[], Watch] | None = None,
    ) -> Generation:
        """The call itself, retried and charged; with `units`, once req.n of them are free
        (held until it returns)."""
        if units is not None and not units.take(req.n):
            await units.acquire(req.n)
        call: Callable[[GenRequest], Awaitable[Generation]] = lm.generate
        if watch is not None:
            call = self._watched(lm, watch)
        try:
            started = time.monotonic()
            if self.request_timeout_s is None and ledger.budget.seconds is None:
                # no time limit on the call: its first attempt needs no timeout scope (the
                # common case, and the hottest path in the engine)
                try:
                    gen = await call(req)
                except TransientError as failed:
                    ledger.failed_attempts += 1
                    gen = await self._retrying(lm, ledger, call, req, failed)
            else:
                gen = await self._retrying(lm, ledger, call, req)
            # the call's Usage, as its field values in order (the ledger keeps lines so)
            p, c, k, info = gen.prompt_tokens, gen.cached_tokens, gen.completion_tokens, lm.info
            seconds = time.monotonic() - started
            r = k if req.reasoning else gen.reasoning_tokens
            ledger.record(
                req.role,
                info.name,
                (1, p, c, k, seconds, info.flops(p, c, k), info.dollars(p, c, k), r),
            )
            take = self._ready[id(lm)].take_probe
            if take is not None:  # a backend may prepare again (a replica back up): its
                charge_probe(lm, take, ledger)  # probe goes on the bill of the call after it
            return gen
        finally:
            if units is not None:
                units.release(req.n)

    def _watched(
        self, lm: LanguageModel, watch: Callable[[], Watch]
    ) -> Callable[[GenRequest], Awaitable[Generation]]:
        """How a watched request is made: streamed, a fresh watch per attempt, where the
        backend streams; otherwise written whole and read by the watch afterwards."""
        if self._ready[id(lm)].caps.stream:
            return lambda r: lm.stream(r, watch())

        async def whole(r: GenRequest) -> Generation:
            return watched_afterwards(await lm.generate(r), watch())

        return whole

    async def _retrying(
        self,
        lm: LanguageModel,
        ledger: Ledger,
        call: Callable[[A], Awaitable[T]],
        arg: A,
        failed: TransientError | None = None,
        *,
        timed: bool = True,
    ) -> T:
        """`call(arg)`, retried (the call and its one argument, not a closure: one per call
        would be made otherwise); `failed`: how a first attempt, made already, failed;
        `timed`: each attempt bounded by the request timeout (the budget's seconds always)."""
        last = failed
        for attempt in range(0 if failed is None else 1, self.max_attempts):
            if attempt:
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
                delay *= 0.5 + self._jitter.random()
                if last is not None and last.retry_after is not None:
                    # the server said when to come back (a 429's or 503's Retry-After): not
                    # sooner, and not longer than retry_after_max_s
                    delay = max(delay, min(last.retry_after, self.retry_after_max_s))
                await self._sleep(delay)
            timeout, left = self.request_timeout_s if timed else None, ledger.seconds_left()
            if left is not None and (timeout is None or left < timeout):
                timeout = left
            try:
                if timeout is None:
                    return await call(arg)
                async with asyncio.timeout(timeout):
                    return await call(arg)
            except TimeoutError as e:
                if ledger.seconds_left() == 0:
                    ledger.cut = True  # (what was cut, an unscored sample, says "budget")
                    raise BudgetExceeded("budget cap 'seconds' reached during the call") from e
                last = TransientError(
                    f"{lm.info.name}: request timed out (limit {timeout} s)", failure="timeout"
                )
            except TransientError as e:
                last = e
            ledger.failed_attempts += 1
        gave_up = f"gave up after {self.max_attempts} attempts: {last}"
        raise BackendError(gave_up) if last is None else last.retried(gave_up)


# `_call` records a call's usage in this order
assert USAGE_FIELDS == (
    "calls",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "seconds",
    "flops",
    "dollars",
    "reasoning_tokens",
)


def charge_probe(lm: LanguageModel, take: Callable[[], Usage], ledger: Ledger) -> None:
    """What `lm` spent preparing and no bill carries yet, on `ledger` as role "probe"
    (priced like any call)."""
    spent = take()
    if spent.calls:
        p, c, k, info = spent.prompt_tokens, spent.cached_tokens, spent.completion_tokens, lm.info
        flops, dollars = info.flops(p, c, k), info.dollars(p, c, k)
        ledger.record("probe", info.name, (spent.calls, p, c, k, spent.seconds, flops, dollars, 0))


def watched_afterwards(gen: Generation, watch: Watch) -> Generation:
    """A whole choice read by `watch` after the fact (a backend that cannot stop midway): if
    the watch would have stopped it, it is marked "stopped" (it was written and is charged
    whole; a strategy treats it as stopped, e.g. it does not vote)."""
    for choice in gen.choices:
        for token in choice.logprobs or ():
            if watch(token):
                choice.finish_reason = "stopped"
                break
    return gen
