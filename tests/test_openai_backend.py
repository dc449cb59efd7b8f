from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import httpx
import pytest

from fake_server import FakeOpenAIServer
from helpers import no_sleep
from ponder.errors import UsageError
from ponder.lm import BackendConfig, Price, open_backend
from ponder.lm.openai import OpenAILM
from ponder.runtime.budget import Ledger
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.types import GenRequest, Message
from shaped_server import ShapedServer


def chat(n: int = 1, seed: int = 5) -> GenRequest:
    return GenRequest(messages=[Message(role="user", content="q")], n=n, seed=seed)


async def probe_requests(lm: OpenAILM, srv: FakeOpenAIServer) -> int:
    """How many requests the probe made (it runs once: later requests are the test's); what
    it spent is taken, so the test's ledger holds the test's calls only."""
    await lm.prepare()
    assert lm.take_probe_usage().calls > 0
    return len(srv.requests)


async def test_native_n_with_logprobs_counts_every_choice() -> None:
    async with FakeOpenAIServer() as srv:
        lm = OpenAILM(srv.url)
        ledger = Ledger()
        gen = await Scheduler(sleep=no_sleep).generate(lm, chat(n=3), ledger)
        await lm.aclose()
    assert lm.capabilities.n and lm.capabilities.logprobs and lm.model == "fake-model"
    assert [c.completion_tokens for c in gen.choices] == [4, 5, 6]
    # the server's usage says 4 (one choice); the ledger has all three
    policy = ledger.by_role()["policy"]
    assert policy.completion_tokens == 15
    assert policy.prompt_tokens == 7 and policy.cached_tokens == 2
    chat_bodies = [b for p, b in srv.requests if p.endswith("/chat/completions")]
    assert chat_bodies[-1]["n"] == 3 and chat_bodies[-1]["model"] == "fake-model"


async def test_the_probe_is_on_the_bill_of_the_first_solve_and_no_other() -> None:
    async with FakeOpenAIServer() as srv:
        lm = OpenAILM(srv.url)
        scheduler = Scheduler(sleep=no_sleep)
        first, second = Ledger(), Ledger()
        await scheduler.generate(lm, chat(n=3), first)
        probe_posts = [p for p, _ in srv.requests if p not in ("/v1/models", "/props")][:-1]
        await scheduler.generate(lm, chat(), second)
        await lm.aclose()
    # the fake answers every POST with usage 7 prompt (2 cached) + 4 completion tokens; the
    # probe's chat call of n=2 with logprobs lists 4 + 5 tokens, more than its usage says
    assert len(probe_posts) == 6
    probe = first.by_role()["probe"]
    assert probe.calls == 6 and probe.prompt_tokens == 6 * 7 and probe.cached_tokens == 6 * 2
    assert probe.completion_tokens == (4 + 5) + 5 * 4 and probe.seconds > 0
    assert first.by_role()["policy"].completion_tokens == 4 + 5 + 6
    assert set(second.by_role()) == {"policy"}  # charged once
    assert lm.take_probe_usage().calls == 0


async def test_server_without_n_gets_n_distinct_single_requests() -> None:
    async with FakeOpenAIServer(native_n=False, logprobs=False) as srv:
        lm = OpenAILM(srv.url)
        probed = await probe_requests(lm, srv)
        ledger = Ledger()
        gen = await Scheduler(sleep=no_sleep).generate(lm, chat(n=4, seed=20), ledger)
        await lm.aclose()
    assert not lm.capabilities.n
    assert len(gen.choices) == 4 and len({c.text for c in gen.choices}) == 4
    sent = [b for p, b in srv.requests[probed:] if p.endswith("/chat/completions")]
    assert sorted(b["seed"] for b in sent) == [20, 21, 22, 23] and all("n" not in b for b in sent)
    assert ledger.spent.calls == 4 and ledger.spent.completion_tokens == 16


@pytest.mark.parametrize("fault", ["500", "503", "truncate", "reset", "hang"])
async def test_transient_faults_are_retried(fault: str) -> None:
    probed = [10**9]

    def behaviour(i: int, path: str, body: dict[str, object]) -> str:
        # the probe succeeds; the next two requests fail
        return fault if probed[0] <= i < probed[0] + 2 else "ok"

    async with FakeOpenAIServer(behaviour) as srv:
        lm = OpenAILM(srv.url)
        probed[0] = await probe_requests(lm, srv)
        lm._client.timeout = httpx.Timeout(0.3)  # for the calls after the probe
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
        r = await engine.solve("q", "vote", n=2, seed=7)
        await lm.aclose()
    assert r.error is None and r.answer is not None
    assert len(r.candidates) == 2


async def test_client_errors_are_not_retried_and_surface_per_request() -> None:
    probed = [10**9]
    async with FakeOpenAIServer(lambda i, p, b: "400" if i >= probed[0] else "ok") as srv:
        lm = OpenAILM(srv.url)
        probed[0] = await probe_requests(lm, srv)
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
        r = await engine.solve("q", "greedy", seed=1)
        await lm.aclose()
        assert len(srv.requests) == probed[0] + 1  # the probe, then one try
    assert r.answer is None and r.error is not None and "400" in r.error


async def test_unreachable_server_names_the_url_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed as the block ends: nothing listens there
    lm = OpenAILM(f"http://127.0.0.1:{port}")
    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep, max_attempts=3))
    r = await engine.solve("q", "greedy", seed=1)
    await lm.aclose()
    assert r.error is not None
    assert "gave up after 3 attempts" in r.error and f"127.0.0.1:{port}/v1" in r.error


async def test_many_requests_in_flight_against_a_server() -> None:
    async with FakeOpenAIServer() as srv:
        lm = OpenAILM(srv.url, slots=4)
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
        results = await asyncio.gather(
            *(engine.solve(f"q{i}", "vote", n=2, seed=i) for i in range(10))
        )
        await lm.aclose()
    assert all(r.error is None for r in results)
    assert [r.answer for r in results] == [r.candidates[0].answer for r in results]


async def test_stop_strings_with_n_fan_out_so_usage_is_exact() -> None:
    async with FakeOpenAIServer() as srv:
        lm = OpenAILM(srv.url)
        probed = await probe_requests(lm, srv)
        ledger = Ledger()
        req = replace(chat(n=3, seed=40), stop=["```output"])
        gen = await Scheduler(sleep=no_sleep).generate(lm, req, ledger)
        await lm.aclose()
    sent = [b for p, b in srv.requests[probed:] if p.endswith("/chat/completions")]
    assert len(sent) == 3 and all("n" not in b and b["stop"] == ["```output"] for b in sent)
    assert len(gen.choices) == 3 and ledger.spent.calls == 3
    assert ledger.spent.completion_tokens == 3 * 4  # each single's usage


async def test_prices_and_size_given_for_a_server_are_charged() -> None:
    async with FakeOpenAIServer() as srv:
        lm = open_backend(
            BackendConfig(
                model="fake-model",
                base_url=srv.url,
                price=Price.parse("2,8,1"),
                parameters=1000,
            )
        )
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
        r = await engine.solve("q", "greedy", seed=3)
        await lm.aclose()
    u = r.usage["policy"]
    assert (u.prompt_tokens, u.cached_tokens, u.completion_tokens) == (7, 2, 4)
    assert u.dollars == pytest.approx((5 * 2 + 2 * 1 + 4 * 8) / 1e6)
    assert u.flops == 2 * 1000 * (5 + 4)
    assert r.model == "fake-model"
    # the probe's calls are priced as any: 6 answers of 7 prompt (2 cached) and 29 completion
    probe = r.usage["probe"]
    assert probe.dollars == pytest.approx((6 * 5 * 2 + 6 * 2 * 1 + 29 * 8) / 1e6)
    assert r.total.completion_tokens == 4 + 29


def test_bad_price_is_a_usage_error_and_one_number_prices_every_token() -> None:
    for bad in ("1,2,3,4", "abc", "1,", "-1,2"):
        with pytest.raises(UsageError, match=f"bad price '{bad}'"):
            Price.parse(bad)
    # the help says the default is 0: "--price 0" was refused
    assert Price.parse("0") == Price(prompt=0, completion=0)
    assert Price.parse("2.5") == Price(prompt=2.5, completion=2.5)


@pytest.mark.parametrize("accepts", [True, False])
async def test_probe_learns_whether_the_server_continues_a_final_message(accepts: bool) -> None:
    # a chat-only server that continues a final assistant message, or one that ignores it
    faults = set() if accepts else {"ignores-partial"}
    async with ShapedServer("chat-only", faults=faults) as srv:
        lm = OpenAILM(srv.url)
        caps = await lm.prepare()
        partial = GenRequest(
            messages=[Message(role="user", content="q"), Message(role="assistant", content="1.")],
            continue_final=True,
        )
        if accepts:
            await Scheduler(sleep=no_sleep).generate(lm, partial, Ledger())
        await lm.aclose()
    assert caps.continue_final is accepts
    if accepts:
        body = srv.requests[-1][1]
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert body["messages"][-1] == {"role": "assistant", "content": "1."}
    else:
        assert "ignores the partial assistant message" in (caps.continuation_note or "")


def test_continue_final_needs_a_final_assistant_message() -> None:
    with pytest.raises(ValueError, match="ending with an assistant message"):
        GenRequest(messages=[Message(role="user", content="q")], continue_final=True)


async def test_a_server_that_never_answers_ends_the_probe_after_one_timeout() -> None:
    # The probe is not retried on a timeout (each retry would wait the whole timeout again),
    # and the scheduler's per-request limit does not cut the probe's several requests short.
    async with FakeOpenAIServer(lambda i, p, b: "hang") as srv:
        lm = OpenAILM(srv.url, timeout_s=0.3)
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep, request_timeout_s=0.3))
        r = await engine.solve("q", "greedy", seed=1)
        await lm.aclose()
        posts = [p for p, _ in srv.requests if p.endswith("/chat/completions")]
    assert r.answer is None and r.error is not None
    assert "capability probe" in r.error and "0.3 s" in r.error and "--timeout" in r.error
    assert len(posts) == 1
