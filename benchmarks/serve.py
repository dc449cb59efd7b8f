"""`ponder serve` benchmarks.

load   200 concurrent streaming requests (vote-4) against a scripted backend (10 ms a call,
       8 slots) on loopback: every stream checked well formed and complete; p50 / p99 latency
       and time to first chunk.
proxy  A pass-through greedy request through `ponder serve --upstream` against the same request
       sent straight to the upstream (llama.cpp's own OpenAI server for the embedded model),
       one question at a time, alternating which goes first (ABBA) so prefix-cache effects
       fall on both sides alike. Target: ratio of total latency ≤ 1.05.

oversize  20 concurrent 50 MB requests against a server in its own process (scripted
       backend, default limits: bodies of at most 1 MiB), with a Content-Length and chunked
       (no length): each must be refused with 413; time to each 413, and the server's RSS
       sampled every 10 ms (target: each within 1 s, RSS under 500 MB).
burst  500 plain streaming requests at once against `ponder serve --max-in-flight 8` (its
       own process, the scripted backend streaming): never more than 8 in flight, the rest
       429, no 5xx, every served stream whole.
disconnect  A non-streaming vote-8 request (8 backend calls) whose client goes away: the
       time until the backend sees all 8 cancelled and the server's in-flight count is 0.
upstream-errors  Pass-through requests to an upstream that answers 400 / 404 / 422 / 429 /
       401 / 500 / 503, garbage, half a response, a dropped connection or nothing: what the
       client gets (status, code, message, Retry-After) and how soon.
soak   Mixed traffic on loopback for --seconds (at most --max-requests), against two servers
       in their own processes: a scripted backend (streams token by token), and `ponder
       serve --upstream` over a flaky fake OpenAI server (2% of its answers a transient
       fault a retry cures; requests marked `fault:X` get that fault on every attempt; it
       stops listening for 3 s every minute). Valid, invalid (unsupported fields included),
       streaming (strategies, and plain requests token by token, with and without usage
       and log-probabilities), cancelled (non-streaming and streaming), oversized (body,
       prompt) and rate-limited requests; every response checked against the status its
       kind should get (an error inside a stream counts as the status it stands for). The
       servers' RSS, open file descriptors, in-flight count and slot use sampled every
       second; idle RSS and descriptors compared after warm-up and at the end.

    .venv/bin/python benchmarks/serve.py load [--requests 200]
    .venv/bin/python benchmarks/serve.py proxy [--questions 20] [--max-tokens 64]
    .venv/bin/python benchmarks/serve.py oversize [--requests 20] [--mb 50]
    .venv/bin/python benchmarks/serve.py burst [--streams 500] [--max-in-flight 8]
    .venv/bin/python benchmarks/serve.py disconnect [--rounds 10]
    .venv/bin/python benchmarks/serve.py upstream-errors
    .venv/bin/python benchmarks/serve.py soak [--seconds 600] [--warmup 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.serve import create_app
from ponder.types import GenRequest
from serving import load, percentile, running, stream_once


def run_load(requests: int) -> None:
    from test_serve import MODEL, ask, reply

    lm = ScriptedLM(reply, capabilities=Capabilities(slots=8, raw_prefix=True), latency_s=0.01)
    with running(create_app(Engine(lm, scheduler=Scheduler()))) as url:
        body = {"model": f"vote-4/{MODEL}", "messages": ask(), "stream": True, "seed": 1}
        started = time.perf_counter()
        checks = asyncio.run(load(url, requests, body))
        wall = time.perf_counter() - started
    bad = [c for c in checks if c.status != 200 or c.problems]
    total = [c.seconds for c in checks]
    first = [c.first_chunk_s for c in checks]
    print(
        f"{requests} concurrent streams in {wall:.2f} s: {len(bad)} bad "
        f"({sum(c.status >= 500 for c in checks)} server errors); latency p50 "
        f"{percentile(total, 0.5):.3f} s, p99 {percentile(total, 0.99):.3f} s; first chunk "
        f"p50 {percentile(first, 0.5):.3f} s, p99 {percentile(first, 0.99):.3f} s; "
        f"{len(lm.calls)} backend calls"
    )
    if bad:
        sys.exit(f"bad streams: {[c.problems for c in bad[:5]]}")


def run_proxy(questions: int, max_tokens: int) -> None:
    from ponder.lm.llamacpp import LlamaCppLM
    from ponder.lm.openai import OpenAILM
    from ponder.lm.registry import DEFAULT_MODEL, Registry
    from ponder.tasks.registry import get_task

    path, info = Registry().resolve(DEFAULT_MODEL)
    upstream = LlamaCppLM(path, info, slots=1)
    direct_url = f"{upstream.http_url}/v1"
    engine = Engine(OpenAILM(direct_url, slots=1), scheduler=Scheduler())
    problems = get_task("gsm8k").load(limit=questions)
    direct: list[float] = []
    proxied: list[float] = []
    with running(create_app(engine)) as ponder_url, httpx.Client(timeout=600) as client:
        served = client.get(f"{ponder_url}/models").json()["data"][0]["id"]

        def timed(url: str, model: str, question: str) -> float:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": question}],
                "temperature": 0.0,
                "max_tokens": max_tokens,
                "seed": 0,
            }
            started = time.perf_counter()
            r = client.post(f"{url}/chat/completions", json=body)
            r.raise_for_status()
            return time.perf_counter() - started

        timed(direct_url, served, "Hi")  # warm both paths once
        timed(ponder_url, served, "Hi")
        for i, p in enumerate(problems):
            order = [(direct_url, direct), (ponder_url, proxied)]
            for url, into in order if i % 2 == 0 else order[::-1]:
                into.append(timed(url, served, p.question))
    upstream.close()
    ratio = sum(proxied) / sum(direct)
    per = [p / d for p, d in zip(proxied, direct, strict=True)]
    print(
        f"{questions} GSM8K questions, greedy, max_tokens {max_tokens}, one at a time: direct "
        f"{sum(direct):.2f} s, through ponder serve {sum(proxied):.2f} s → ratio {ratio:.3f} "
        f"(median per question {statistics.median(per):.3f}; target ≤ 1.05); mean added "
        f"{1000 * (sum(proxied) - sum(direct)) / questions:.1f} ms per request"
    )


# -- servers in their own processes --------------------------------------------------------


def scripted_reply(req: GenRequest, index: int, rng: random.Random) -> str:
    """Three in four samples say 42; a raw prompt is echoed back (as tests/test_serve.py)."""
    if req.prompt is not None and "<assistant>" not in req.prompt:
        return f"echo: {req.prompt[:200]}"
    answer = 42 if rng.random() < 0.75 else 41
    return f"Add them up step by step.\n\nSo the answer is \\boxed{{{answer}}}."


def run_server(port: int, keys: str | None, latency: float, slots: int) -> None:
    """A server over the scripted backend, in this process (for `oversize` and `soak`)."""
    import uvicorn

    from ponder.serve import Keys, Limits

    caps = Capabilities(slots=slots, raw_prefix=True, n_with_stop=True, stream=True)
    lm = ScriptedLM(scripted_reply, capabilities=caps, latency_s=latency, decode_s=0.002)
    # (the fake keeps every request it was sent, for tests; here the last hundred will do, or
    # a long soak would measure the fake's own record growing)
    lm.calls = collections.deque(maxlen=100)  # type: ignore[assignment]
    app = create_app(
        Engine(lm, scheduler=Scheduler()),
        keys=Keys.from_file(Path(keys), Limits()) if keys else None,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server process: its URL, and its RSS and open descriptors read from /proc."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str  # …/v1

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(name: str, args: list[str], log: Path) -> Server:
    """Start a server process (`args` after the interpreter) and wait until it answers."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(name, proc, f"http://127.0.0.1:{port}/v1")
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            sys.exit(f"{name} server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            sys.exit(f"{name} server did not start")
        time.sleep(0.1)


def scripted_server(log: Path, keys: Path | None = None, latency: float = 0.01) -> Server:
    args = [__file__, "server", "--latency", str(latency)]
    return start("scripted", [*args, *(["--keys", str(keys)] if keys else [])], log)


# -- oversize ------------------------------------------------------------------------------


def run_oversize(requests: int, mb: int) -> None:
    """Two clients: one that reads the answer while it sends (as curl does), which sees when
    the server answers, and httpx, which reads only once it has sent the whole body (so its
    time is the upload's: the server discards the rest of a refused body)."""
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        server = scripted_server(Path(tmp) / "server.log")
        try:
            for client in ("reads while sending", "httpx"):
                for declared in (True, False):
                    ok = asyncio.run(oversize_round(server, requests, mb, declared, client))
                    failed = failed or not ok
        finally:
            server.stop()
    if failed:
        sys.exit("FAIL")


async def early(url: str, mb: int, declared: bool) -> tuple[int, str]:
    """A raw HTTP/1.1 request that reads while it sends its body: (status, status line)."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    size = f"Content-Length: {mb << 20}" if declared else "Transfer-Encoding: chunked"
    writer.write(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\n{size}\r\n\r\n".encode()
    )
    chunk = b"x" * (1 << 16)

    async def send() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            for _ in range((mb << 20) // len(chunk)):
                writer.write(chunk if declared else b"10000\r\n" + chunk + b"\r\n")
                await writer.drain()

    sending = asyncio.create_task(send())
    try:
        line = (await reader.readline()).decode().strip()
    finally:
        sending.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await sending
    parts = line.split()
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), line


async def oversize_round(server: Server, requests: int, mb: int, declared: bool, how: str) -> bool:
    chunk = b"x" * (1 << 20)
    size = mb * len(chunk)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(mb):
            yield chunk

    async def one(client: httpx.AsyncClient) -> tuple[int, float, str]:
        started = time.perf_counter()
        if how != "httpx":
            status, line = await early(server.url, mb, declared)
            return status, time.perf_counter() - started, line
        headers = {"Content-Type": "application/json"}
        if declared:
            headers["Content-Length"] = str(size)
        try:
            r = await client.post(f"{server.url}/chat/completions", content=body(), headers=headers)
        except httpx.HTTPError as e:
            return 0, time.perf_counter() - started, f"{type(e).__name__}: {e}"
        return r.status_code, time.perf_counter() - started, r.json()["error"]["message"]

    rss = [server.rss_mb()]
    before = rss[0]
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            rss.append(server.rss_mb())
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    limits = httpx.Limits(max_connections=requests)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        results = await asyncio.gather(*(one(client) for _ in range(requests)))
    wall = time.perf_counter() - started
    done.set()
    await sampler
    statuses = sorted({r[0] for r in results})
    seconds = [r[1] for r in results]
    length = "Content-Length" if declared else "chunked, no length"
    ok = statuses == [413] and max(rss) < 500 and (how == "httpx" or max(seconds) < 1.0)
    print(
        f"{'PASS' if ok else 'FAIL'}  {requests} concurrent {mb} MB requests ({length}; client "
        f"{how}) in {wall:.2f} s: statuses {statuses}; time to the 413 p50 "
        f"{percentile(seconds, 0.5):.3f} s, max {max(seconds):.3f} s; server RSS {before:.0f} "
        f"MB before, peak {max(rss):.0f} MB ({len(rss)} samples); {results[0][2]!r}"
    )
    return ok


# -- burst ---------------------------------------------------------------------------------


def run_burst(streams: int, max_in_flight: int) -> None:
    """`streams` plain streaming requests at once against `ponder serve --max-in-flight N`
    (a process of its own over the scripted backend, each stream 40 tokens 10 ms apart):
    how many were served and refused, the most ever in flight (the server's own count),
    and that no request failed."""
    reply = " ".join(f"w{i}" for i in range(40))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            *("-m", "ponder", "serve", "--backend", "scripted", "--model", "scripted"),
            *("--backend-option", "stream=true", "--backend-option", "decode_s=0.01"),
            *("--backend-option", f"replies={json.dumps([reply])}"),
            *("--max-in-flight", str(max_in_flight), "--no-log-requests"),
        ]
        server = start("burst", args, Path(tmp) / "server.log")
        try:
            body = {"model": "scripted", "messages": [{"role": "user", "content": "Go"}]}
            body["stream"] = True
            started = time.perf_counter()
            checks = asyncio.run(load(server.url, streams, body))
            wall = time.perf_counter() - started
            root = server.url.removesuffix("/v1")
            h = httpx.get(f"{root}/health").json()
            metrics = httpx.get(f"{root}/metrics").text
        finally:
            server.stop()
    statuses: dict[int, int] = {}
    for c in checks:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    served = [c for c in checks if c.status == 200]
    broken = [c for c in served if c.problems]
    peak = h["in_flight_peak"]
    ok = set(statuses) <= {200, 429} and peak <= max_in_flight and not broken
    ok = ok and statuses.get(429, 0) > 0 and h["in_flight"] == 0
    counted = [line for line in metrics.splitlines() if line.startswith("ponder_requests_total")]
    print(
        f"{'PASS' if ok else 'FAIL'}  {streams} concurrent streams against --max-in-flight "
        f"{max_in_flight} in {wall:.2f} s: statuses {dict(sorted(statuses.items()))}; most in "
        f"flight at once {peak}; {len(broken)} served streams malformed; in flight at the end "
        f"{h['in_flight']}; served streams took p50 "
        f"{percentile([c.seconds for c in served], 0.5):.3f} s\n  /metrics: " + "; ".join(counted)
    )
    if not ok:
        sys.exit("FAIL")


# -- disconnect ----------------------------------------------------------------------------


def run_disconnect(rounds: int) -> None:
    """A non-streaming vote-8 request (8 calls of 30 s each on a backend without native n)
    whose client closes its connection once all 8 are running: the time until the backend
    has seen every call cancelled, and until the server counts nothing in flight."""
    from test_serve import MODEL, ask, reply

    caps = Capabilities(slots=8, n=False, raw_prefix=True)
    lm = ScriptedLM(reply, capabilities=caps, latency_s=30.0)
    app = create_app(Engine(lm, scheduler=Scheduler()))
    state = app.state.ponder
    cancelled_s: list[float] = []
    idle_s: list[float] = []
    failed = False

    async def one(url: str) -> tuple[float, float, int]:
        body = {"model": f"vote-8/{MODEL}", "messages": ask()}
        before = lm.cancelled
        async with httpx.AsyncClient(timeout=60) as client:
            sent = asyncio.create_task(client.post(f"{url}/chat/completions", json=body))
            deadline = time.monotonic() + 10
            while lm.in_flight < 8:
                if time.monotonic() > deadline:
                    sys.exit("the 8 calls never ran")
                await asyncio.sleep(0.001)
            sent.cancel()  # the client gives up: its connection closes
            with contextlib.suppress(asyncio.CancelledError):
                await sent
        left = time.monotonic()
        gone = idle = None
        while gone is None or idle is None:
            now = time.monotonic() - left
            if gone is None and lm.in_flight == 0:
                gone = now
            if idle is None and state.in_flight == 0:
                idle = now
            if now > 10:
                break
            await asyncio.sleep(0.001)
        return (
            float("inf") if gone is None else gone,
            float("inf") if idle is None else idle,
            lm.cancelled - before,
        )

    with running(app) as url:
        for i in range(rounds):
            gone, idle, seen = asyncio.run(one(url))
            cancelled_s.append(gone)
            idle_s.append(idle)
            ok = seen == 8 and gone < 1.0 and idle < 1.0
            failed = failed or not ok
            print(
                f"{'PASS' if ok else 'FAIL'}  round {i + 1}: the backend saw {seen}/8 calls "
                f"cancelled {1000 * gone:.1f} ms after the client left; in flight 0 after "
                f"{1000 * idle:.1f} ms"
            )
        h = httpx.get(url.removesuffix("/v1") + "/health").json()
    print(
        f"{rounds} rounds: cancelled within p50 {1000 * statistics.median(cancelled_s):.1f} "
        f"ms, max {1000 * max(cancelled_s):.1f} ms; in flight 0 within max "
        f"{1000 * max(idle_s):.1f} ms; /health at the end: in_flight {h['in_flight']}, "
        f"slots {h['slots']}; {lm.cancelled} calls cancelled in all of {len(lm.calls)}"
    )
    if failed or h["in_flight"] or h["slots"]["busy"]:
        sys.exit("FAIL")


# -- upstream errors -----------------------------------------------------------------------


def run_upstream_errors() -> None:
    """Pass-through requests to a fake upstream that fails as each asks (`fault:ACTION`),
    with the real retry back-off and a 1 s timeout: the status, error code and message the
    client gets, and how long it took."""
    from fake_server import ERRORS, marked, upstream
    from ponder.lm.openai import OpenAILM

    expected = {
        "400": 400,
        "404": 404,
        "422": 422,
        "429": 429,
        "401": 502,
        "500": 502,
        "garbage": 502,
        "truncate": 502,
        "503": 503,
        "reset": 503,
        "hang": 504,
    }
    failed = False
    print("| upstream does | client gets | code | Retry-After | seconds | message |")
    print("|---|---|---|---|---|---|")
    with upstream(marked) as up:
        engine = Engine(OpenAILM(up.url, timeout_s=1.0), scheduler=Scheduler())
        with running(create_app(engine)) as url, httpx.Client(timeout=60) as client:
            served = client.get(f"{url}/models").json()["data"][0]["id"]
            for action, status in expected.items():
                messages = [{"role": "user", "content": f"What is 2 + 2? fault:{action}"}]
                started = time.perf_counter()
                r = client.post(
                    f"{url}/chat/completions", json={"model": served, "messages": messages}
                )
                seconds = time.perf_counter() - started
                err = r.json()["error"]
                ok = r.status_code == status and "Traceback" not in r.text
                if action.isdigit() and int(action) in (400, 404, 422):
                    sent = ERRORS[int(action)]
                    ok = ok and err["message"] == sent["message"] and err["type"] == sent["type"]
                    ok = ok and err.get("param") == sent.get("param")
                    ok = ok and err.get("code") == sent.get("code")
                failed = failed or not ok
                what = action if not action.isdigit() else f"HTTP {action}"
                print(
                    f"| {what} | {r.status_code}{'' if ok else ' (FAIL)'} | {err.get('code')} | "
                    f"{r.headers.get('retry-after', '')} | {seconds:.2f} | "
                    f"{err['message'][:90]} |"
                )
    if failed:
        sys.exit("FAIL")


# -- soak ----------------------------------------------------------------------------------

KEYS = """\
sk-soak
sk-rpm max_rpm=30
sk-tiny max_prompt_tokens=50
"""
# What a pass-through request marked `fault:X` must get (tests/fake_server.py's actions).
FAULTS = {
    "400": 400,
    "404": 404,
    "422": 422,
    "500": 502,
    "garbage": 502,
    "truncate": 502,
    "503": 503,
    "reset": 503,
    "hang": 504,
}
DOWN_EVERY_S, DOWN_FOR_S = 60.0, 3.0


@dataclass
class Record:
    target: str
    kind: str
    status: int | None  # None: no response (a cancelled request, or a client error)
    expected: frozenset[int | None]
    started: float
    ended: float
    problems: list[str] = field(default_factory=list)


@dataclass
class Sample:
    at: float
    target: str
    rss_mb: float
    fds: int
    in_flight: int
    busy: int
    waiting: int


class Soak:
    def __init__(self, servers: dict[str, Server], flaky: Any, seconds: float) -> None:
        self.servers = servers
        self.flaky = flaky  # the FakeOpenAIServer behind the upstream target
        self.seconds = seconds
        self.records: list[Record] = []
        self.samples: list[Sample] = []
        self.down: list[tuple[float, float]] = []
        self.running = True
        self.t0 = time.monotonic()
        self.served: dict[str, str] = {}
        self.rng = random.Random(7)

    # -- the traffic -----------------------------------------------------------------------
    def kinds(self, target: str) -> list[tuple[str, float]]:
        base = [
            ("plain", 4),
            ("completion", 1),
            ("vote", 3),
            ("stream", 2),
            ("plain-stream", 2),
            ("invalid", 3),
            ("cancel", 2),
            ("cancel-stream", 1),
            ("oversize-body", 1),
            ("oversize-prompt", 1),
            ("rate-limited", 1),
        ]
        if target == "upstream":
            base.append(("fault", 2))
        return base

    async def worker(self, target: str, client: httpx.AsyncClient, budget: list[int]) -> None:
        kinds = self.kinds(target)
        names, weights = [k for k, _ in kinds], [w for _, w in kinds]
        while self.running and budget[0] > 0:
            budget[0] -= 1
            kind = self.rng.choices(names, weights)[0]
            started = time.monotonic()
            try:
                record = await getattr(self, "do_" + kind.replace("-", "_"))(target, client)
            except Exception as e:  # (a client error, or a response not as it should be)
                record = Record(target, kind, None, frozenset({200}), started, 0.0)
                record.problems.append(f"client error {type(e).__name__}: {e}")
            record.started, record.ended = started, time.monotonic()
            self.records.append(record)
            await asyncio.sleep(self.rng.uniform(0.01, 0.1))

    def url(self, target: str) -> str:
        return self.servers[target].url

    def headers(self, key: str = "sk-soak") -> dict[str, str]:
        scheme = self.rng.choice(["Bearer", "bearer"])  # either case is fine
        return {"Authorization": f"{scheme} {key}"}

    def question(self) -> list[dict[str, str]]:
        a, b = self.rng.randint(1, 99), self.rng.randint(1, 99)
        return [{"role": "user", "content": f"What is {a} + {b}?"}]

    async def post(
        self,
        target: str,
        client: httpx.AsyncClient,
        kind: str,
        body: Any,
        expected: set[int | None],
        *,
        path: str = "/chat/completions",
        key: str = "sk-soak",
        raw: bytes | None = None,
    ) -> Record:
        headers = self.headers(key)
        if raw is not None:
            headers["Content-Type"] = "application/json"
            r = await client.post(f"{self.url(target)}{path}", content=raw, headers=headers)
        else:
            r = await client.post(f"{self.url(target)}{path}", json=body, headers=headers)
        record = Record(target, kind, r.status_code, frozenset(expected), 0.0, 0.0)
        self.check(record, r)
        return record

    def check(self, record: Record, r: httpx.Response) -> None:
        if not r.headers.get("x-request-id"):
            record.problems.append("no x-request-id")
        if r.status_code in (429, 503) and not r.headers.get("retry-after"):
            record.problems.append(f"{r.status_code} without Retry-After")
        if r.status_code >= 400:
            try:
                error = r.json()["error"]
                assert isinstance(error["message"], str) and error["message"]
            except (ValueError, KeyError, TypeError, AssertionError):
                record.problems.append(f"{r.status_code} not in OpenAI's error shape")

    async def do_plain(self, target: str, client: httpx.AsyncClient) -> Record:
        body = {"model": self.served[target], "messages": self.question(), "max_tokens": 32}
        return await self.post(target, client, "plain", body, {200})

    async def do_completion(self, target: str, client: httpx.AsyncClient) -> Record:
        body = {"model": self.served[target], "prompt": "Once upon a time", "max_tokens": 16}
        return await self.post(target, client, "completion", body, {200}, path="/completions")

    async def do_vote(self, target: str, client: httpx.AsyncClient) -> Record:
        body = {"model": f"vote-4/{self.served[target]}", "messages": self.question()}
        return await self.post(target, client, "vote", body, {200})

    async def do_rate_limited(self, target: str, client: httpx.AsyncClient) -> Record:
        body = {"model": self.served[target], "messages": self.question(), "max_tokens": 8}
        return await self.post(target, client, "rate-limited", body, {200, 429}, key="sk-rpm")

    async def do_invalid(self, target: str, client: httpx.AsyncClient) -> Record:
        served = self.served[target]
        which = self.rng.randrange(7)
        if which == 0:
            body = {"model": "no-such-model", "messages": self.question()}
            return await self.post(target, client, "invalid", body, {404})
        if which == 1:
            return await self.post(target, client, "invalid", None, {400}, raw=b'{"model": "x",')
        if which == 2:
            body = {"model": served, "messages": self.question(), "temperature": 7}
            return await self.post(target, client, "invalid", body, {400})
        if which == 3:
            body = {"model": f"vote-500/{served}", "messages": self.question()}
            return await self.post(target, client, "invalid", body, {413})
        if which == 4:
            body = {"model": served, "messages": self.question()}
            return await self.post(target, client, "invalid", body, {401}, key="sk-wrong")
        if which == 5:
            tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
            body = {"model": served, "messages": self.question(), "tools": tools}
            return await self.post(target, client, "invalid", body, {400})
        body = {"model": f"vote-2/{served}", "messages": [*self.question()] * 2}
        return await self.post(target, client, "invalid", body, {400})

    async def do_oversize_body(self, target: str, client: httpx.AsyncClient) -> Record:
        # 2 MiB against the default 1 MiB limit, with a Content-Length or chunked
        filler = "x" * (2 << 20)
        raw = json.dumps({"model": self.served[target], "messages": self.question(), "pad": filler})
        if self.rng.random() < 0.5:
            return await self.post(target, client, "oversize-body", None, {413}, raw=raw.encode())
        data = raw.encode()

        async def chunked() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 1 << 16):
                yield data[i : i + (1 << 16)]

        headers = {**self.headers(), "Content-Type": "application/json"}
        r = await client.post(
            f"{self.url(target)}/chat/completions", content=chunked(), headers=headers
        )
        record = Record(target, "oversize-body", r.status_code, frozenset({413}), 0.0, 0.0)
        self.check(record, r)
        return record

    async def do_oversize_prompt(self, target: str, client: httpx.AsyncClient) -> Record:
        words = " ".join(["word"] * 80)  # 80 tokens, 399 bytes: over sk-tiny's 50 either way
        body = {"model": self.served[target], "messages": [{"role": "user", "content": words}]}
        return await self.post(target, client, "oversize-prompt", body, {413}, key="sk-tiny")

    async def do_fault(self, target: str, client: httpx.AsyncClient) -> Record:
        action = self.rng.choice(list(FAULTS))
        messages = [{"role": "user", "content": f"What is 1 + 1? fault:{action}"}]
        body = {"model": self.served[target], "messages": messages, "max_tokens": 16}
        return await self.post(target, client, f"fault:{action}", body, {FAULTS[action]})

    async def do_cancel(self, target: str, client: httpx.AsyncClient) -> Record:
        """A non-streaming request the client gives up on after a few tens of ms."""
        body = {"model": f"vote-4/{self.served[target]}", "messages": self.question()}
        # (a client of its own: a request cancelled midway can leave a shared pool short)
        async with httpx.AsyncClient(timeout=60) as own:
            task = asyncio.create_task(
                own.post(f"{self.url(target)}/chat/completions", json=body, headers=self.headers())
            )
            done, _ = await asyncio.wait((task,), timeout=self.rng.uniform(0.005, 0.08))
            if task in done:  # answered first: fine too
                r = task.result()
                record = Record(target, "cancel", r.status_code, frozenset({200}), 0.0, 0.0)
                self.check(record, r)
                return record
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return Record(target, "cancel", None, frozenset({None}), 0.0, 0.0)

    async def do_cancel_stream(self, target: str, client: httpx.AsyncClient) -> Record:
        body = {"model": f"vote-4/{self.served[target]}", "messages": self.question()}
        body["stream"] = True
        async with (
            httpx.AsyncClient(timeout=60) as own,
            own.stream(
                "POST", f"{self.url(target)}/chat/completions", json=body, headers=self.headers()
            ) as r,
        ):
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break  # the first chunk: gone
            record = Record(target, "cancel-stream", r.status_code, frozenset({200}), 0.0, 0.0)
        return record

    async def do_stream(self, target: str, client: httpx.AsyncClient) -> Record:
        body = {"model": f"vote-2/{self.served[target]}", "messages": self.question()}
        body["stream"] = True
        if self.rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
        return self.streamed(target, "stream", await stream_once(client, self.url(target), body))

    async def do_plain_stream(self, target: str, client: httpx.AsyncClient) -> Record:
        """A plain request streamed token by token (log-probabilities asked half the time)."""
        body = {"model": self.served[target], "messages": self.question(), "stream": True}
        body["max_tokens"] = 32
        if self.rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
        if self.rng.random() < 0.5:
            body.update(logprobs=True, top_logprobs=2)
        check = await stream_once(client, self.url(target), body)
        return self.streamed(target, "plain-stream", check)

    def streamed(self, target: str, kind: str, check: Any) -> Record:
        """A stream's record: an error chunk in it (its status was 200 before the failure)
        counts as the status the error would have had, so an upstream down mid-stream is
        the injected 503 it is, and any other error is unexpected."""
        status = check.status
        problems = list(check.problems)
        if check.error is not None:  # (a stream that failed has no answer, finish or usage)
            gone = ("an error chunk", "no content", "no usage chunk before [DONE]")
            problems = [p for p in problems if p not in gone]
            problems = [p for p in problems if not p.startswith("finish reasons")]
            down = check.error.get("code") == "backend_unavailable"
            status = 503 if down else 500
        record = Record(target, kind, status, frozenset({200}), 0.0, 0.0)
        record.problems.extend(problems)
        return record

    # -- the flaky upstream's deaths -------------------------------------------------------
    async def kill_upstream_now_and_then(self) -> None:
        while self.running:
            await asyncio.sleep(DOWN_EVERY_S / 2 if not self.down else DOWN_EVERY_S)
            if not self.running:
                return
            began = time.monotonic()
            try:
                await self.flaky.down()
                await asyncio.sleep(DOWN_FOR_S)
            finally:
                await self.flaky.up()
                self.down.append((began, time.monotonic()))

    # -- sampling --------------------------------------------------------------------------
    async def sample(self, client: httpx.AsyncClient) -> list[Sample]:
        out = []
        for name, server in self.servers.items():
            h = (await client.get(server.url.removesuffix("/v1") + "/health")).json()
            slots = h["slots"]
            out.append(
                Sample(
                    time.monotonic() - self.t0,
                    name,
                    server.rss_mb(),
                    server.fds(),
                    h["in_flight"],
                    slots["busy"],
                    slots["waiting"],
                )
            )
        return out

    async def sampler(self, client: httpx.AsyncClient) -> None:
        while self.running:
            self.samples.extend(await self.sample(client))
            await asyncio.sleep(1.0)

    async def quiet(self, client: httpx.AsyncClient) -> list[Sample]:
        """Wait until nothing is in flight on either server (at most 60 s); a sample then."""
        deadline = time.monotonic() + 60
        while True:
            samples = await self.sample(client)
            if all(s.in_flight == 0 and s.busy == 0 for s in samples):
                return samples
            if time.monotonic() > deadline:
                return samples
            await asyncio.sleep(0.2)

    async def phase(self, seconds: float, workers: int, budget: list[int]) -> None:
        self.running = True
        limits = httpx.Limits(max_connections=4 * workers, max_keepalive_connections=2 * workers)
        auth = {"Authorization": "Bearer sk-soak"}  # (stream_once sends no headers of its own)
        async with httpx.AsyncClient(timeout=60, limits=limits, headers=auth) as client:
            tasks = [
                asyncio.create_task(self.worker(target, client, budget))
                for target in self.servers
                for _ in range(workers)
            ]
            probe = httpx.AsyncClient(timeout=10)
            side = [
                asyncio.create_task(self.sampler(probe)),
                asyncio.create_task(self.kill_upstream_now_and_then()),
            ]
            await asyncio.sleep(seconds)
            self.running = False
            await asyncio.gather(*tasks)
            for t in side:
                t.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            await probe.aclose()


def run_soak(seconds: float, warmup: float, workers: int, max_requests: int) -> None:
    asyncio.run(soak(seconds, warmup, workers, max_requests))


async def soak(seconds: float, warmup: float, workers: int, max_requests: int) -> None:
    from fake_server import FakeOpenAIServer, marked

    faults = random.Random(11)

    def flaky(i: int, path: str, body: dict[str, Any]) -> str:
        asked = marked(i, path, body)
        if asked != "ok":
            return asked
        if faults.random() < 0.02:  # a transient fault on any request: retried away
            # (a stream cut halfway is not retried once its words were sent on: the test
            # suite covers that; here every injected fault is one a retry cures)
            cured = ["500", "503", "reset", "garbage", "slow"]
            return faults.choice(cured if body.get("stream") else [*cured, "truncate"])
        return "ok"

    tmp = Path(tempfile.mkdtemp(prefix="ponder-soak-"))
    keys = tmp / "keys"
    keys.write_text(KEYS)

    class SoakUpstream(FakeOpenAIServer):
        """Keeps no record of the requests it was sent (a long run would pile them up).
        Its answers are all distinct (`\\boxed{seed}`): the worst case for the answer caches
        (ponder.answers keeps up to 65,536 parsed answers)."""

        def completion(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
            self.requests.clear()
            return super().completion(path, body)

    async with SoakUpstream(flaky) as fake:
        servers = {
            "scripted": await asyncio.to_thread(scripted_server, tmp / "scripted.log", keys, 0.02),
            "upstream": await asyncio.to_thread(
                start,
                "upstream",
                [
                    *("-m", "ponder", "serve", "--upstream", fake.url, "--timeout", "1"),
                    *("--slots", "4", "--api-key-file", str(keys)),
                ],
                tmp / "upstream.log",
            ),
        }
        soak = Soak(servers, fake, seconds)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                for name, server in servers.items():
                    r = await client.get(
                        f"{server.url}/models", headers={"Authorization": "Bearer sk-soak"}
                    )
                    soak.served[name] = r.json()["data"][0]["id"]
                budget = [max_requests]
                await soak.phase(warmup, workers, budget)
                after_warmup = await soak.quiet(client)
                main_from = time.monotonic() - soak.t0
                await soak.phase(seconds - warmup, workers, budget)
                await asyncio.sleep(1.0)
                at_end = await soak.quiet(client)
                await asyncio.to_thread(held_open, servers, tmp)
        finally:
            await asyncio.to_thread(lambda: [s.stop() for s in servers.values()])
    report(soak, after_warmup, at_end, main_from, tmp)


def held_open(servers: dict[str, Server], tmp: Path) -> None:
    """What each server holds open at the end (its TCP connections), into the log folder."""
    ss = subprocess.run(["ss", "-tnp"], capture_output=True, text=True, check=False).stdout
    for name, server in servers.items():
        held = [line for line in ss.splitlines() if f"pid={server.proc.pid}," in line]
        (tmp / f"{name}.connections").write_text("\n".join(held) + "\n")


def report(
    soak: Soak, after_warmup: list[Sample], at_end: list[Sample], main_from: float, tmp: Path
) -> None:
    records = soak.records

    def in_down(r: Record) -> bool:
        return any(r.started <= b and r.ended >= a for a, b in soak.down)

    def expected(r: Record) -> bool:
        if r.status in r.expected:
            return True
        return r.target == "upstream" and r.status == 503 and in_down(r)

    print(f"\nsoak: {len(records)} requests in {soak.seconds:.0f} s; logs in {tmp}")
    print("\n| target | kind | requests | statuses | unexpected | problems | p50 s | p99 s |")
    print("|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.target, r.kind), []).append(r)
    for (target, kind), rs in sorted(groups.items()):
        statuses: dict[str, int] = {}
        for r in rs:
            key = "none" if r.status is None else str(r.status)
            statuses[key] = statuses.get(key, 0) + 1
        shown = ", ".join(f"{k}×{v}" for k, v in sorted(statuses.items()))
        seconds = [r.ended - r.started for r in rs]
        print(
            f"| {target} | {kind} | {len(rs)} | {shown} | {sum(not expected(r) for r in rs)} | "
            f"{sum(bool(r.problems) for r in rs)} | {percentile(seconds, 0.5):.3f} | "
            f"{percentile(seconds, 0.99):.3f} |"
        )
    fivexx = [r for r in records if r.status is not None and r.status >= 500]
    injected = [r for r in fivexx if expected(r)]
    unexpected_5xx = [r for r in fivexx if not expected(r)]
    unexpected = [r for r in records if not expected(r)]
    problems = [r for r in records if r.problems]
    print(
        f"\n5xx responses: {len(fivexx)}, all injected: {len(injected)} (marked faults, or the "
        f"upstream down: {len(soak.down)} windows of {DOWN_FOR_S:.0f} s); other 5xx: "
        f"{len(unexpected_5xx)}; responses not as expected: {len(unexpected)}; with problems: "
        f"{len(problems)}"
    )
    for r in (unexpected + problems)[:10]:
        print(
            f"  {r.target} {r.kind}: {r.status} "
            f"(expected {sorted(map(str, r.expected))}) {r.problems}"
        )

    print(
        "\n| target | minute | RSS MB (median) | open fds (median, max) | in flight (max) | "
        "slots busy (max) | waiting (max) |"
    )
    print("|---|---|---|---|---|---|---|")
    by: dict[tuple[str, int], list[Sample]] = {}
    for s in soak.samples:
        by.setdefault((s.target, int(s.at // 60)), []).append(s)
    for (target, minute), ss in sorted(by.items()):
        print(
            f"| {target} | {minute} | {statistics.median(s.rss_mb for s in ss):.1f} | "
            f"{statistics.median(s.fds for s in ss):.0f}, {max(s.fds for s in ss)} | "
            f"{max(s.in_flight for s in ss)} | {max(s.busy for s in ss)} | "
            f"{max(s.waiting for s in ss)} |"
        )
    verdicts = []
    print(
        "\n| target | idle after warm-up: RSS MB, fds | idle at the end: RSS MB, fds, in "
        "flight, slots busy | under load, first vs last minute after warm-up: RSS MB, fds "
        "(medians) |"
    )
    print("|---|---|---|---|")
    for before, after in zip(after_warmup, at_end, strict=True):
        load = [s for s in soak.samples if s.target == before.target and s.at >= main_from]
        first = [s for s in load if s.at < main_from + 60]
        last = [s for s in load if s.at >= load[-1].at - 60] if load else []
        rss0 = statistics.median(s.rss_mb for s in first) if first else float("nan")
        rss1 = statistics.median(s.rss_mb for s in last) if last else float("nan")
        fd0 = statistics.median(s.fds for s in first) if first else float("nan")
        fd1 = statistics.median(s.fds for s in last) if last else float("nan")
        print(
            f"| {before.target} | {before.rss_mb:.1f}, {before.fds} | {after.rss_mb:.1f}, "
            f"{after.fds}, {after.in_flight}, {after.busy} | {rss0:.1f} → {rss1:.1f}, "
            f"{fd0:.0f} → {fd1:.0f} |"
        )
        verdicts += [
            (f"{before.target}: idle RSS within 10%", after.rss_mb <= 1.1 * before.rss_mb),
            (
                f"{before.target}: idle fds within 10%",
                after.fds <= max(1.1 * before.fds, before.fds + 1),
            ),
            (f"{before.target}: RSS under load within 10%", rss1 <= 1.1 * rss0),
            (f"{before.target}: fds under load within 10%", fd1 <= 1.1 * fd0 + 1),
            (
                f"{before.target}: in flight 0 and slots free at the end",
                after.in_flight == 0 and after.busy == 0,
            ),
        ]
    verdicts += [
        ("no 5xx but the injected", not unexpected_5xx),
        ("every response as its kind expects", not unexpected),
        ("no problems (ids, Retry-After, error shape, streams)", not problems),
    ]
    print()
    for what, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    print(f"\nverdict: {'PASS' if all(ok for _, ok in verdicts) else 'FAIL'}")
    if not all(ok for _, ok in verdicts):
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--requests", type=int, default=200)
    pr = sub.add_parser("proxy")
    pr.add_argument("--questions", type=int, default=20)
    pr.add_argument("--max-tokens", type=int, default=64)
    ov = sub.add_parser("oversize")
    ov.add_argument("--requests", type=int, default=20)
    ov.add_argument("--mb", type=int, default=50)
    bu = sub.add_parser("burst")
    bu.add_argument("--streams", type=int, default=500)
    bu.add_argument("--max-in-flight", type=int, default=8)
    di = sub.add_parser("disconnect")
    di.add_argument("--rounds", type=int, default=10)
    sub.add_parser("upstream-errors")
    so = sub.add_parser("soak")
    so.add_argument("--seconds", type=float, default=600)
    so.add_argument("--warmup", type=float, default=60)
    so.add_argument("--workers", type=int, default=4, help="clients per server")
    so.add_argument("--max-requests", type=int, default=200_000)
    se = sub.add_parser("server")  # (the scripted server process `oversize` and `soak` start)
    se.add_argument("--port", type=int, required=True)
    se.add_argument("--keys")
    se.add_argument("--latency", type=float, default=0.01)
    se.add_argument("--slots", type=int, default=8)
    args = ap.parse_args()
    if args.what == "load":
        run_load(args.requests)
    elif args.what == "proxy":
        run_proxy(args.questions, args.max_tokens)
    elif args.what == "oversize":
        run_oversize(args.requests, args.mb)
    elif args.what == "burst":
        run_burst(args.streams, args.max_in_flight)
    elif args.what == "disconnect":
        run_disconnect(args.rounds)
    elif args.what == "upstream-errors":
        run_upstream_errors()
    elif args.what == "soak":
        if not 0 < args.warmup < args.seconds:
            sys.exit("--warmup must be under --seconds")
        run_soak(args.seconds, args.warmup, args.workers, args.max_requests)
    else:
        run_server(args.port, args.keys, args.latency, args.slots)


if __name__ == "__main__":
    main()
