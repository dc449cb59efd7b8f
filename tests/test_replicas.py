"""Replicas behind one router: prefix affinity, health checks, failover, a replica down at
start (in process, and `ponder serve` with several --upstream servers)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fake_server import FakeOpenAIServer
from helpers import no_sleep
from ponder.errors import TransientError
from ponder.lm.protocol import Capabilities
from ponder.lm.replicas import Replica, ReplicaLM
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.types import GenRequest, Message, Usage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import scale


class Switch:
    """A replica's health, and its backend failing while it is off."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.checks = 0

    async def check(self) -> None:
        self.checks += 1
        if not self.up:
            raise TransientError("connection refused")

    def fail(self, call: int, req: GenRequest) -> Exception | None:
        return None if self.up else TransientError("connection refused")


def replica(name: str, switch: Switch, **kw: object) -> tuple[Replica, ScriptedLM]:
    lm = ScriptedLM(
        ["\\boxed{4}"],
        fail=switch.fail,
        capabilities=Capabilities(slots=2, n=False, n_with_stop=True),
        **kw,  # type: ignore[arg-type]
    )
    return Replica(name, lm, switch.check), lm


def ask(question: str, seed: int = 0) -> GenRequest:
    return GenRequest(
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content=question),
        ],
        seed=seed,
    )


async def test_prefix_affinity_evaluates_about_what_one_replica_does() -> None:
    """A small `benchmarks/scale.py replicas` (the full one is in RESULTS.md)."""
    rows = await scale.replicas(questions=17, rounds=3, n=4, slots=4, latency=0.01)
    one, affinity, round_robin = rows
    assert one["routing"] == "one replica" and affinity["routing"] == "affinity"
    assert affinity["vs_one_replica"] <= 1.2
    assert round_robin["vs_one_replica"] >= 1.5  # each replica prefills each question
    assert min(affinity["per_replica"]) > 0  # both replicas served


async def test_a_hot_question_swamping_its_replica_spills_to_an_idle_one() -> None:
    a, lm_a = replica("a", Switch(), latency_s=0.01)
    b, lm_b = replica("b", Switch(), latency_s=0.01)
    router = ReplicaLM([a, b], check_every=0)
    engine = Engine(router, scheduler=Scheduler(sleep=no_sleep))
    result = await engine.solve("one hot question", "vote", n=32, seed=1)
    assert len(result.candidates) == 32
    assert router.spilled >= 1 and lm_a.calls and lm_b.calls  # both worked on it
    await engine.aclose()


async def test_same_question_same_replica_new_questions_spread() -> None:
    a, lm_a = replica("a", Switch())
    b, lm_b = replica("b", Switch())
    router = ReplicaLM([a, b], check_every=0)
    for i in range(6):
        for seed in range(3):
            await router.generate(ask(f"question {i}", seed))
    asked = [{c.messages[-1].content for c in lm.calls if c.messages} for lm in (lm_a, lm_b)]
    assert asked[0] and asked[1] and not asked[0] & asked[1]  # each question on one replica
    assert len(lm_a.calls) + len(lm_b.calls) == 18
    # a raw prompt continuing a rendering goes where its conversation went
    rendered = await router.render(ask("question 0").messages or [])
    holder = lm_a if any(c.messages[-1].content == "question 0" for c in lm_a.calls) else lm_b
    before = len(holder.calls)
    await router.generate(GenRequest(prompt=rendered + "Step 1:"))
    assert len(holder.calls) == before + 1


async def test_a_replica_down_at_start_is_named_and_the_others_serve() -> None:
    warned: list[str] = []
    down, up = Switch(up=False), Switch()
    a, lm_a = replica("http://127.0.0.1:9/v1", down, latency_s=0.01)
    b, lm_b = replica("http://127.0.0.1:8/v1", up, latency_s=0.01)
    router = ReplicaLM([a, b], check_every=0.05, warn=warned.append)
    engine = Engine(router, scheduler=Scheduler(sleep=no_sleep))
    results = await asyncio.gather(*(engine.solve(f"q{i}", "vote", n=3) for i in range(4)))
    assert all(r.error is None and r.answer == "4" for r in results)
    assert len(lm_a.calls) == 0 and len(lm_b.calls) == 12
    assert len(warned) == 1 and "http://127.0.0.1:9/v1 is down at start" in warned[0]
    assert "\n" not in warned[0]
    # it comes back: the health check finds it, and new questions go there again
    down.up = True
    for _ in range(100):
        if a.up:
            break
        await asyncio.sleep(0.02)
    assert a.up and any("is back" in w for w in warned)
    await asyncio.gather(*(engine.solve(f"new {i}", "vote", n=3) for i in range(8)))
    assert len(lm_a.calls) > 0
    await engine.aclose()


class ProbingLM(ScriptedLM):
    """A scripted backend whose every prepare spends a probe (as a server's does)."""

    PROBE = Usage(calls=3, prompt_tokens=44, completion_tokens=9)

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.probes = 0
        self._pending = Usage()

    async def prepare(self) -> Capabilities:
        self.probes += 1
        self._pending += self.PROBE
        return self.capabilities

    def take_probe_usage(self) -> Usage:
        spent, self._pending = self._pending, Usage()
        return spent


async def test_a_replica_back_up_has_its_probe_on_the_next_bill() -> None:
    """Every probe is on some bill: the one at start on the first solve's, a replica's
    probe when it comes back on the bill of the call after it, none twice."""
    down = Switch(up=False)
    lms = [
        ProbingLM(["\\boxed{4}"], fail=s.fail, capabilities=Capabilities(slots=2, n=False))
        for s in (down, Switch())
    ]
    a, b = Replica("a", lms[0], down.check), Replica("b", lms[1], Switch().check)
    router = ReplicaLM([a, b], check_every=0.02, warn=lambda m: None)
    engine = Engine(router, scheduler=Scheduler(sleep=no_sleep))
    first = await engine.solve("q0", "vote", n=2)
    assert first.usage["probe"].completion_tokens == 9 and lms[0].probes == 0
    down.up = True
    for _ in range(100):
        if a.up:
            break
        await asyncio.sleep(0.02)
    assert a.up and lms[0].probes == 1
    later = [await engine.solve(f"q{i}", "vote", n=2) for i in range(1, 4)]
    probes = [r.usage["probe"] for r in later if "probe" in r.usage]
    assert len(probes) == 1 and probes[0].calls == 3 and probes[0].prompt_tokens == 44
    assert later[0].usage.get("probe") == probes[0]  # the first call after it carries it
    await engine.aclose()


async def test_a_replica_that_dies_fails_over_and_nothing_is_lost() -> None:
    warned: list[str] = []
    sa, sb = Switch(), Switch()
    a, _ = replica("a", sa, latency_s=0.02)
    b, lm_b = replica("b", sb, latency_s=0.02)
    router = ReplicaLM([a, b], check_every=0, warn=warned.append)
    engine = Engine(router, scheduler=Scheduler(sleep=no_sleep))

    async def kill_a() -> None:
        await asyncio.sleep(0.05)
        sa.up = False

    results, _ = await asyncio.gather(
        asyncio.gather(*(engine.solve(f"q{i}", "vote", n=4) for i in range(8))), kill_a()
    )
    assert all(r.error is None and len(r.candidates) == 4 for r in results)
    assert not a.up and any("replica a is down" in w for w in warned)
    assert len(lm_b.calls) > 16  # a's questions moved to b
    await engine.aclose()


async def test_every_replica_down_is_an_error_naming_them() -> None:
    a, _ = replica("a", Switch(up=False))
    b, _ = replica("b", Switch(up=False))
    router = ReplicaLM([a, b], check_every=0, warn=lambda m: None)
    try:
        await router.prepare()
    except Exception as e:
        assert "no replica is up" in str(e) and "a:" in str(e) and "b:" in str(e)
    else:
        raise AssertionError("expected an error")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_with_a_replica_down_at_start_warns_naming_it_and_serves() -> None:
    async with FakeOpenAIServer() as srv:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        port = free_port()
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once; the fake server is this loop's)
            [
                sys.executable,
                "-m",
                "ponder",
                "serve",
                "--port",
                str(port),
                "--model",
                "fake-model",
                "--upstream",
                f"{srv.url}/v1",
                "--upstream",
                dead,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(timeout=10) as client:
                deadline = time.monotonic() + 60
                while True:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    try:
                        health = (await client.get(f"{url}/health")).json()
                        break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.2)
                up = {r["name"]: r["up"] for r in health["replicas"]}
                assert up == {f"{srv.url}/v1": True, dead: False}
                resp = await client.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "fake-model", "messages": [{"role": "user", "content": "q"}]},
                )
                assert resp.status_code == 200, resp.text
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=30)
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and dead in warnings[0] and "down at start" in warnings[0]
