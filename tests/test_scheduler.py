from __future__ import annotations

import asyncio
import random

import pytest

from helpers import no_sleep, scripted_engine
from ponder.errors import BackendError, TransientError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM, transient_every
from ponder.runtime.budget import Ledger
from ponder.runtime.scheduler import Scheduler, WeightedSemaphore
from ponder.types import GenRequest, Message


def req(n: int = 1, seed: int | None = 1) -> GenRequest:
    return GenRequest(messages=[Message(role="user", content="q")], n=n, seed=seed, max_tokens=50)


@pytest.mark.parametrize("factor", [1.0, 2.0])
async def test_sequences_in_flight_never_exceed_the_cap_and_keep_it_full(factor: float) -> None:
    lm = ScriptedLM(["\\boxed{1}"], latency_s=0.01, capabilities=Capabilities(slots=4))
    sched = Scheduler(sleep=no_sleep, queue_factor=factor)
    ledger = Ledger()
    await asyncio.gather(*(sched.generate(lm, req(n=k % 3 + 1), ledger) for k in range(30)))
    cap = int(4 * factor)
    assert lm.max_in_flight <= cap
    assert lm.max_in_flight >= cap - 1  # many requests in flight at once, not one at a time
    assert ledger.spent.calls == 30


async def test_weighted_semaphore_is_fifo_and_caps_weight() -> None:
    sem = WeightedSemaphore(4)
    await sem.acquire(3)
    order: list[str] = []

    async def take(name: str, w: int) -> None:
        await sem.acquire(w)
        order.append(name)

    big = asyncio.create_task(take("big", 10))  # capped at 4: waits for everything
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 1))  # fits now, but must not jump the queue
    await asyncio.sleep(0)
    assert order == []
    sem.release(3)
    await asyncio.wait_for(big, 1)
    assert order == ["big"]
    sem.release(10)
    await asyncio.wait_for(small, 1)
    assert order == ["big", "small"]


async def test_transient_failures_are_retried_with_backoff() -> None:
    delays: list[float] = []

    async def sleep(d: float) -> None:
        delays.append(d)

    lm = ScriptedLM(
        ["\\boxed{1}"], fail=lambda call, r: TransientError("503") if call < 2 else None
    )
    ledger = Ledger()
    gen = await Scheduler(sleep=sleep, backoff_s=1.0).generate(lm, req(), ledger)
    assert gen.choices[0].text == "\\boxed{1}"
    assert len(delays) == 2 and delays[1] > delays[0] * 1.0  # exponential (with jitter)
    assert ledger.failed_attempts == 2 and ledger.spent.calls == 1


async def test_a_servers_retry_after_is_waited_out_within_a_cap() -> None:
    """A 429 or 503 with Retry-After: the next attempt comes no sooner than the server asked
    (and no later than retry_after_max_s), where the backoff alone would come back at once."""
    delays: list[float] = []

    async def sleep(d: float) -> None:
        delays.append(d)

    asked = [7.0, 600.0]
    lm = ScriptedLM(
        ["\\boxed{1}"],
        fail=lambda call, r: (
            TransientError("429", status=429, retry_after=asked[call]) if call < 2 else None
        ),
    )
    scheduler = Scheduler(sleep=sleep, backoff_s=0.01, retry_after_max_s=30.0)
    gen = await scheduler.generate(lm, req(), Ledger())
    assert gen.choices[0].text == "\\boxed{1}"
    assert delays == [7.0, 30.0]


async def test_gives_up_after_max_attempts_and_says_why() -> None:
    lm = ScriptedLM(["x"], fail=lambda call, r: TransientError("http://h/v1: unreachable"))
    with pytest.raises(BackendError, match=r"gave up after 3 attempts.*http://h/v1"):
        await Scheduler(sleep=no_sleep, max_attempts=3).generate(lm, req(), Ledger())


async def test_hung_backend_times_out_and_is_retried() -> None:
    calls = 0

    class Hang(ScriptedLM):
        async def generate(self, r: GenRequest):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 1:
                await asyncio.Event().wait()  # never answers
            return await super().generate(r)

    lm = Hang(["\\boxed{2}"])
    gen = await Scheduler(sleep=no_sleep, request_timeout_s=0.05).generate(lm, req(), Ledger())
    assert gen.choices[0].text == "\\boxed{2}" and calls == 2


async def test_errors_are_per_request_never_a_crash_of_the_run() -> None:
    # every call whose question mentions "bad" fails for good; the others succeed
    def fail(call: int, r: GenRequest) -> Exception | None:
        return BackendError("refused (400)") if "bad" in r.input_text() else None

    engine, _ = scripted_engine(["\\boxed{4}"], fail=fail)
    results = await asyncio.gather(
        *(engine.solve(q, "vote", n=2, seed=i) for i, q in enumerate(["ok 1", "bad", "ok 2"]))
    )
    assert [r.answer for r in results] == ["4", None, "4"]
    assert results[1].error is not None and "400" in results[1].error
    assert results[0].error is None


async def test_fan_out_without_native_n_returns_n_distinct_choices() -> None:
    def reply(r: GenRequest, index: int, rng: random.Random) -> str:
        return f"seed {r.seed} sample {rng.random():.6f}"

    lm = ScriptedLM(reply, capabilities=Capabilities(n=False, slots=3))
    ledger = Ledger()
    gen = await Scheduler(sleep=no_sleep, queue_factor=1.0).generate(lm, req(n=5, seed=10), ledger)
    assert len(gen.choices) == 5
    assert len({c.text for c in gen.choices}) == 5
    assert all(c.n == 1 for c in lm.calls) and len(lm.calls) == 5
    assert sorted(c.seed for c in lm.calls) == [10, 11, 12, 13, 14]
    assert lm.max_in_flight <= 3
    assert ledger.spent.calls == 5
    assert ledger.spent.completion_tokens == sum(c.completion_tokens for c in gen.choices)


async def test_fan_out_failure_keeps_the_bill_of_what_succeeded() -> None:
    lm = ScriptedLM(
        ["a b c"],
        capabilities=Capabilities(n=False),
        fail=lambda call, r: BackendError("no") if r.seed == 12 else None,
    )
    ledger = Ledger()
    with pytest.raises(BackendError):
        await Scheduler(sleep=no_sleep).generate(lm, req(n=4, seed=10), ledger)
    assert ledger.spent.calls == 3 and ledger.spent.completion_tokens == 9


async def test_transient_every_helper_with_engine() -> None:
    engine, _lm = scripted_engine(["\\boxed{9}"], fail=transient_every(2))
    r = await engine.solve("q", "vote", n=3, seed=0)
    assert r.answer == "9" and r.error is None


async def test_a_waiter_cancelled_just_before_a_release_gives_nothing_back_twice() -> None:
    """Cancelled while waiting, then the units are released before it sees the cancellation
    (release drops its cancelled future from the queue): it must not fail, and the units
    go to nobody else by mistake."""
    sem = WeightedSemaphore(1)
    await sem.acquire(1)
    waiter = asyncio.create_task(sem.acquire(1))
    await asyncio.sleep(0)
    waiter.cancel()
    sem.release(1)  # the cancelled waiter is at the head of the queue
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert sem.free == 1
    await asyncio.wait_for(sem.acquire(1), 1)
