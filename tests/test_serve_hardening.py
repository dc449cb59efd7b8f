"""`ponder serve` against careless and hostile clients and an upstream that misbehaves: the
limits a deployment sets, cancellation of any request whose client goes away, upstream errors
passed through faithfully, request ids, case-insensitive auth."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_server import ERRORS, marked, upstream
from helpers import no_sleep
from ponder.lm.openai import OpenAILM
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.serve import Keys, Limits, create_app
from ponder.serve.guards import BodyLimit
from serving import running
from test_serve import MODEL, ask, reply, scripted, wait_for

H = {"Authorization": "Bearer sk-a"}


def keys_file(tmp_path: Path, text: str) -> Keys:
    f = tmp_path / "keys"
    f.write_text(text)
    return Keys.from_file(f, Limits())


def chat(url: str, model: str = MODEL, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    body = {"model": model, "messages": ask(), **kw}
    return httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=30)


def health(url: str) -> dict[str, Any]:
    r = httpx.get(url.removesuffix("/v1") + "/health")
    assert r.status_code == 200
    return dict(r.json())


# -- the body-size limit -------------------------------------------------------------------


async def test_the_body_limit_refuses_before_the_body_is_read_in_full() -> None:
    reached: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append((await receive())["body"])
        assert (await receive())["type"] == "http.disconnect"  # then the server's own

    guard = BodyLimit(app, max_bytes=64 * 1024)
    sent: list[dict[str, Any]] = []
    pulled = 0

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def endless() -> dict[str, Any]:  # a client that never stops sending
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 16384, "more_body": True}

    # a Content-Length over the limit: refused before a byte of the body is read
    declared = {"type": "http", "headers": [(b"content-length", b"52428800")]}
    await guard(declared, endless, send)
    assert pulled == 0 and reached == [] and sent[0]["status"] == 413
    assert b"max_body_bytes" in sent[1]["body"] and b"52428800 bytes" in sent[1]["body"]
    # no length (chunked): refused as soon as the count passes the limit (4 chunks fill it)
    sent.clear()
    await guard({"type": "http", "headers": []}, endless, send)
    assert pulled == 5 and reached == [] and sent[0]["status"] == 413
    assert b"65536 bytes (max_body_bytes)" in sent[1]["body"]

    # a Content-Length that is not a number
    sent.clear()
    await guard({"type": "http", "headers": [(b"content-length", b"12x")]}, endless, send)
    assert pulled == 5 and sent[0]["status"] == 400 and b"Content-Length" in sent[1]["body"]

    # within the limit: the app gets the whole body, then the server's next message
    messages = iter(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"cd", "more_body": False},
            {"type": "http.disconnect"},
        ]
    )

    async def polite() -> dict[str, Any]:
        return next(messages)

    sent.clear()
    await guard({"type": "http", "headers": [(b"content-length", b"4")]}, polite, send)
    assert reached == [b"abcd"] and sent == []


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_20_concurrent_oversized_requests_are_all_413_and_never_held(declared: bool) -> None:
    engine, lm = scripted()
    size, limit = 8 << 20, 64 << 10  # 8 MiB each against a 64 KiB limit
    chunk = b"x" * (64 << 10)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    async def one(client: httpx.AsyncClient, url: str) -> tuple[int, float, str, str]:
        headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
        if declared:
            headers["Content-Length"] = str(size)
        started = time.perf_counter()
        r = await client.post(f"{url}/chat/completions", content=body(), headers=headers)
        return (
            r.status_code,
            time.perf_counter() - started,
            r.json()["error"]["message"],
            r.headers.get("x-request-id", ""),
        )

    async def twenty(url: str) -> list[tuple[int, float, str, str]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=20)) as c:
            return list(await asyncio.gather(*(one(c, url) for _ in range(20))))

    peak, stop = [rss_bytes()], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(rss_bytes())
            time.sleep(0.005)

    with running(create_app(engine, max_body_bytes=limit)) as url:
        before = rss_bytes()
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            results = asyncio.run(twenty(url))
        finally:
            stop.set()
            sampler.join()
        assert health(url)["in_flight"] == 0
    assert [r[0] for r in results] == [413] * 20
    assert all("max_body_bytes" in r[2] and r[3].startswith("req-") for r in results)
    assert max(r[1] for r in results) < 30  # generous: each was refused, none timed out
    # 160 MiB were sent: the server held none of it (the peak stays well under one body's
    # worth per request)
    assert max(peak) - before < 64 << 20, f"RSS grew {(max(peak) - before) >> 20} MiB"
    assert lm.calls == []


def test_a_body_within_the_limit_is_served_and_the_default_follows_the_context() -> None:
    engine, _ = scripted()
    app = create_app(engine)
    assert app.state.ponder.max_body_bytes == 1 << 20  # 64 B × 4096 tokens < 1 MiB floor
    with running(create_app(engine, max_body_bytes=2000)) as url:
        assert chat(url).status_code == 200
        r = chat(url, messages=[{"role": "user", "content": "x" * 3000}])
        assert (
            r.status_code == 413 and "2000 bytes (max_body_bytes)" in r.json()["error"]["message"]
        )


# -- prompt tokens, requests at once and a minute ----------------------------------------


def test_prompt_tokens_are_counted_by_the_backends_tokenizer(tmp_path: Path) -> None:
    engine, lm = scripted()
    keys = keys_file(tmp_path, "sk-a max_prompt_tokens=50\nsk-b\n")
    with running(create_app(engine, keys=keys)) as url:
        # 40 words in 400 bytes: over 50 bytes, under 50 tokens: counted, and served
        words = " ".join(["abcdefghi"] * 40)
        fits = chat(url, headers=H, messages=[{"role": "user", "content": words}])
        assert fits.status_code == 200
        long = " ".join(["word"] * 60)
        for model in (MODEL, f"vote-2/{MODEL}"):
            r = chat(url, model, headers=H, messages=[{"role": "user", "content": long}])
            assert r.status_code == 413, r.text
            err = r.json()["error"]
            assert err["code"] == "prompt_too_long" and err["param"] == "messages"
            assert (
                "60 tokens" in err["message"]
                and "50 prompt tokens (max_prompt_tokens)" in (err["message"])
            )
        r = httpx.post(
            f"{url}/completions", json={"model": MODEL, "prompt": long, "max_tokens": 4}, headers=H
        )
        assert r.status_code == 413 and r.json()["error"]["param"] == "prompt"
        # another key: the default, the model's context length (4096 tokens)
        other = {"Authorization": "Bearer sk-b"}
        assert chat(url, headers=other, messages=[{"role": "user", "content": long}]).is_success
        huge = " ".join(["word"] * 5000)
        r = chat(url, headers=other, messages=[{"role": "user", "content": huge}])
        assert r.status_code == 413 and "4096 prompt tokens" in r.json()["error"]["message"]
    assert len(lm.calls) == 2  # the two served; the rest refused before any work


def test_without_a_tokenizer_the_prompt_is_bounded_by_its_bytes() -> None:
    with upstream() as up:
        engine = Engine(OpenAILM(up.url), scheduler=Scheduler(sleep=no_sleep))
        with running(create_app(engine, limits=Limits(max_prompt_tokens=100))) as url:
            served = httpx.get(f"{url}/models").json()["data"][0]["id"]
            ok = chat(url, served, messages=[{"role": "user", "content": "x" * 100}])
            assert ok.status_code == 200
            r = chat(url, served, messages=[{"role": "user", "content": "x" * 101}])
            assert r.status_code == 413
            assert "101 tokens (estimated by its UTF-8 bytes" in r.json()["error"]["message"]


def test_a_keys_requests_at_once_are_limited_streams_included(tmp_path: Path) -> None:
    engine, lm = scripted(latency=30.0)
    keys = keys_file(tmp_path, "sk-a max_concurrent=1\nsk-b\n")
    with running(create_app(engine, keys=keys)) as url:
        body = {"model": f"vote-2/{MODEL}", "messages": ask(), "stream": True}
        with httpx.stream(
            "POST", f"{url}/chat/completions", json=body, headers=H, timeout=30
        ) as held:
            lines = held.iter_lines()  # (kept: a generator dropped closes the connection)
            next(lines)  # the stream has begun: sk-a's one place is taken
            wait_for(lambda: lm.in_flight > 0, 5.0)
            r = chat(url, headers=H)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            err = r.json()["error"]
            assert err["type"] == "rate_limit_error" and "1 requests at once" in err["message"]
            assert "(max_concurrent)" in err["message"]
            # another key is not held back by sk-a's
            other = {"Authorization": "Bearer sk-b"}
            with httpx.stream(
                "POST", f"{url}/chat/completions", json=body, headers=other, timeout=30
            ) as s:
                assert s.status_code == 200 and next(s.iter_lines()).startswith("data: ")
        wait_for(lambda: health(url)["in_flight"] == 0 and lm.in_flight == 0, 5.0)
    assert lm.cancelled >= 1


def test_a_keys_requests_a_minute_are_limited_with_retry_after(tmp_path: Path) -> None:
    engine, _ = scripted()
    keys = keys_file(tmp_path, "sk-a max_rpm=2\nsk-b\n")
    with running(create_app(engine, keys=keys)) as url:
        assert chat(url, headers=H).status_code == 200
        assert httpx.get(f"{url}/models", headers=H).status_code == 200
        r = chat(url, headers=H)
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        err = r.json()["error"]
        assert (
            err["code"] == "rate_limit_exceeded"
            and "2 requests a minute (max_rpm)" in (err["message"])
        )
        assert chat(url, headers={"Authorization": "Bearer sk-b"}).status_code == 200


def test_the_servers_own_limit_names_itself_and_says_when_to_retry() -> None:
    engine, lm = scripted(latency=30.0)
    with running(create_app(engine, max_in_flight=1)) as url:
        body = {"model": MODEL, "messages": ask(), "stream": True}
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30) as held:
            lines = held.iter_lines()
            next(lines)
            wait_for(lambda: lm.in_flight > 0, 5.0)
            r = chat(url)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert "(max_in_flight)" in r.json()["error"]["message"]
        wait_for(lambda: health(url)["in_flight"] == 0 and lm.in_flight == 0, 5.0)


# -- a client that goes away ---------------------------------------------------------------


def fanned_out(latency: float) -> tuple[Engine, ScriptedLM]:
    """A backend without native n: vote-8 is 8 calls, each seen cancelled on its own."""
    caps = Capabilities(slots=8, n=False, raw_prefix=True)
    lm = ScriptedLM(reply, capabilities=caps, latency_s=latency)
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep)), lm


@pytest.mark.parametrize("model", [f"vote-8/{MODEL}", MODEL])
def test_a_non_streaming_request_whose_client_goes_away_is_cancelled(
    model: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine, lm = fanned_out(latency=30.0)  # every call would take 30 s
    calls = 8 if model.startswith("vote") else 3
    rid = f"gone-{calls}"
    body: dict[str, Any] = {"model": model, "messages": ask()}
    if calls == 3:
        body["n"] = 3
    caplog.set_level(logging.INFO, logger="ponder.serve")
    with running(create_app(engine)) as url:

        async def leave() -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                sent = asyncio.create_task(
                    client.post(f"{url}/chat/completions", json=body, headers={"x-request-id": rid})
                )
                await asyncio.to_thread(wait_for, lambda: lm.in_flight == calls, 5.0)
                assert health(url)["slots"]["busy"] == calls
                sent.cancel()  # the client gives up: its connection closes
                with pytest.raises(asyncio.CancelledError):
                    await sent

        asyncio.run(leave())
        left = time.monotonic()
        # the backend sees every call cancelled, and the server's counts go back to 0
        wait_for(lambda: lm.in_flight == 0, 1.0, lambda: f"(in flight {lm.in_flight})")
        assert time.monotonic() - left < 1.0
        assert lm.cancelled == calls
        wait_for(lambda: health(url)["in_flight"] == 0, 1.0)
        assert health(url)["slots"] == {"units": 16, "busy": 0, "waiting": 0}
        wait_for(lambda: any(rid in r.getMessage() for r in caplog.records), 5.0)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "ponder.serve"]
    assert rid in line and "went away" in line and "cancelled" in line
    # the request's own log line: its id, the 499 of a client gone, what it spent
    wait_for(lambda: any(r.name == "ponder.serve.requests" for r in caplog.records), 5.0)
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "ponder.serve.requests"]
    assert logged.startswith(f"{rid} 127.0.0.1:") and " 499 " in logged


@pytest.mark.parametrize("model", [f"vote-4/{MODEL}", MODEL])
def test_a_stream_whose_client_goes_away_is_logged_and_counted_as_499(
    model: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine, lm = fanned_out(latency=30.0)  # every call would take 30 s
    rid = f"gone-stream-{model.partition('/')[0]}"
    caplog.set_level(logging.INFO, logger="ponder.serve")
    with running(create_app(engine)) as url:
        body = {"model": model, "messages": ask(), "stream": True}
        with httpx.stream(
            "POST", f"{url}/chat/completions", json=body, headers={"x-request-id": rid}, timeout=30
        ) as r:
            lines = r.iter_lines()  # (kept: a dropped iterator closes the stream)
            assert r.status_code == 200 and next(lines).startswith("data: ")  # sent: 200, a chunk
            wait_for(lambda: lm.in_flight > 0, 5.0)  # the work reached the backend
        wait_for(lambda: lm.in_flight == 0, 1.0)  # its work cancelled
        wait_for(lambda: any(r.name == "ponder.serve.requests" for r in caplog.records), 5.0)
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics").text
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "ponder.serve.requests"]
    assert logged.startswith(f"{rid} 127.0.0.1:") and " 499 " in logged
    strategy = "vote" if model.startswith("vote") else "none"
    labels = f'endpoint="/v1/chat/completions",strategy="{strategy}"'
    assert f'ponder_requests_total{{{labels},status="499"}} 1' in metrics
    assert 'status="200"' not in metrics


async def test_a_stream_cut_short_while_a_chunk_is_sent_is_gone_at_once() -> None:
    """A client that goes away while a chunk is being sent (its socket full) leaves the stream
    waiting at a `yield`, not in its work: the response closes it as it ends, so its work
    stops and the request is counted as gone before the accounting logs it."""
    from ponder.serve.app import Admitted, Outcome, Shape, events
    from ponder.serve.guards import Gate, spent_tally
    from ponder.serve.metrics import Served

    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work(observe: Any, tokens: Any) -> Outcome:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("not cancelled")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # the first chunk never drains

    async def receive() -> dict[str, Any]:
        await started.wait()
        return {"type": "http.disconnect"}

    gate = Gate(4)
    served = Served("k", MODEL, "vote", spent_tally()[0])
    response = Admitted(gate.admit("k", 4), events(Shape("chat", MODEL), work, print, served))
    scope = {"type": "http", "asgi": {"spec_version": "2.3"}}  # (uvicorn's)
    await asyncio.wait_for(response(scope, receive, send), 5.0)  # type: ignore[arg-type]
    assert served.gone and gate.in_flight == 0
    await asyncio.wait_for(cancelled.wait(), 1.0)

    async def done(observe: Any, tokens: Any) -> Outcome:
        return Outcome([], {})

    served = Served("k", MODEL, "vote", spent_tally()[0])
    chunks = [c async for c in events(Shape("chat", MODEL), done, print, served)]
    assert chunks[-1] == b"data: [DONE]\n\n" and not served.gone  # a whole stream: its 200


def open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


async def test_requests_cancelled_midway_leave_no_connection_behind() -> None:
    """httpcore can leave a cancelled request's entry and connection in its pool for good:
    cancelled while connecting (encode/httpcore#1093), or while its response is being closed
    (its clean-up is shielded from anyio's cancellation only). ponder releases both, so
    clients that keep going away cannot use up the server's sockets or its pool of
    connections to the upstream."""
    from ponder.runtime.budget import Ledger
    from ponder.types import GenRequest, Message

    rng = random.Random(5)
    with upstream(lambda i, path, body: "slow") as up:  # every answer takes 0.2 s
        lm = OpenAILM(up.url, timeout_s=5)
        scheduler = Scheduler(max_attempts=1)
        await scheduler.prepared(lm, Ledger())
        before = open_fds()

        async def gone(i: int, after: tuple[float, float]) -> None:
            req = GenRequest(messages=[Message(role="user", content=f"q{i}")], max_tokens=4)
            call = asyncio.create_task(scheduler.generate(lm, req, Ledger()))
            await asyncio.sleep(rng.uniform(*after))
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call

        # cancelled while connecting, and about when the answer comes (0.2 s)
        for after in [(0.0, 0.01)] * 5 + [(0.19, 0.23)] * 5:
            await asyncio.gather(*(gone(i, after) for i in range(40)))
        for _ in range(100):  # (the reaping runs beside)
            await asyncio.sleep(0.01)
        pool = lm._client._transport._pool  # type: ignore[attr-defined]
        assert pool._requests == []  # no entry of a call that is over
        assert [c for c in pool.connections if not c.is_idle()] == []
        assert open_fds() <= before
        # and the pool still serves
        gen = await scheduler.generate(lm, GenRequest(prompt="x", max_tokens=4), Ledger())
        assert gen.choices
        await lm.aclose()


# -- an upstream's errors ------------------------------------------------------------------


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[str, str]]:
    """ponder serve over an upstream that fails as each request asks (`fault:ACTION`)."""
    with upstream(marked) as up:
        lm = OpenAILM(up.url, timeout_s=0.5)
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
        with running(create_app(engine)) as url:
            served = httpx.get(f"{url}/models").json()["data"][0]["id"]
            yield url, served


def faulty(url: str, model: str, action: str) -> httpx.Response:
    messages = [{"role": "user", "content": f"What is 2 + 2? fault:{action}"}]
    return httpx.post(
        f"{url}/chat/completions", json={"model": model, "messages": messages}, timeout=30
    )


@pytest.mark.parametrize("status", [400, 404, 422])
def test_an_upstreams_refusal_reaches_the_client_as_it_was(
    flaky: tuple[str, str], status: int
) -> None:
    url, served = flaky
    r = faulty(url, served, str(status))
    assert r.status_code == status
    err = r.json()["error"]
    sent = ERRORS[status]
    assert err["message"] == sent["message"] and err["type"] == sent["type"]
    assert err["param"] == sent.get("param") and err["code"] == sent.get("code")
    assert r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("action", "status", "code"),
    [
        ("429", 429, None),
        ("401", 502, "upstream_auth_failed"),
        ("500", 502, "bad_upstream_response"),
        ("garbage", 502, "bad_upstream_response"),
        ("truncate", 502, "bad_upstream_response"),
        ("503", 503, "backend_unavailable"),
        ("reset", 503, "backend_unavailable"),
        ("hang", 504, "upstream_timeout"),
    ],
)
def test_an_upstream_that_is_bad_down_or_slow_is_502_503_504(
    flaky: tuple[str, str], action: str, status: int, code: str | None
) -> None:
    url, served = flaky
    r = faulty(url, served, action)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    if status in (429, 503):
        # the upstream's own Retry-After (7 s) where it gave one
        assert r.headers["retry-after"] == ("7" if action in ("429", "503") else "5")
    assert "Traceback" not in r.text
    assert "127.0.0.1" not in r.text  # the upstream's address is the server's own business


def test_an_upstream_that_is_gone_is_503_and_comes_back() -> None:
    with upstream() as up:
        engine = Engine(OpenAILM(up.url, timeout_s=5), scheduler=Scheduler(sleep=no_sleep))
        with running(create_app(engine)) as url:
            served = httpx.get(f"{url}/models").json()["data"][0]["id"]
            assert chat(url, served).status_code == 200
            up.down()
            r = chat(url, served)
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert r.json()["error"]["code"] == "backend_unavailable"
            assert "unreachable" in r.json()["error"]["message"]
            up.up()
            assert chat(url, served).status_code == 200


# -- HTTP details --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "beARer"])
def test_the_auth_scheme_is_case_insensitive(tmp_path: Path, scheme: str) -> None:
    keys = keys_file(tmp_path, "sk-a\n")
    assert keys.check(f"{scheme} sk-a") is not None
    assert keys.check(f"{scheme}  sk-a ") is not None
    for bad in (f"{scheme}", f"{scheme} ", f"{scheme} sk-b", f"{scheme}sk-a", "Basic sk-a"):
        assert keys.check(bad) is None, bad


def test_every_response_carries_a_request_id(tmp_path: Path) -> None:
    engine, _ = scripted()
    keys = keys_file(tmp_path, "sk-a max_rpm=100\n")
    with running(create_app(engine, keys=keys, max_body_bytes=10_000)) as url:
        root = url.removesuffix("/v1")
        responses = [
            httpx.get(f"{root}/health"),
            httpx.get(f"{url}/models", headers={"Authorization": "bearer sk-a"}),
            chat(url, headers=H),
            chat(url, headers={"Authorization": "Bearer nope"}),  # 401
            chat(url, "nope", headers=H),  # 404
            chat(url, headers=H, messages=[{"role": "user", "content": "x" * 20_000}]),  # 413
            httpx.post(f"{url}/chat/completions", content=b"{oops", headers=H),  # 400
            chat(url, f"vote-2/{MODEL}", headers=H, stream=True),
        ]
        assert [r.status_code for r in responses] == [200, 200, 200, 401, 404, 413, 400, 200]
        ids = [r.headers.get("x-request-id") for r in responses]
        assert all(i and i.startswith("req-") for i in ids) and len(set(ids)) == len(ids)
        # a sane id of the client's own is kept; anything else is replaced
        mine = chat(url, headers={**H, "x-request-id": "client-42.a_b:c"})
        assert mine.headers["x-request-id"] == "client-42.a_b:c"
        for insane in ("has space", "x" * 200, "<script>", ""):
            r = chat(url, headers={**H, "x-request-id": insane})
            assert r.headers["x-request-id"].startswith("req-"), insane
