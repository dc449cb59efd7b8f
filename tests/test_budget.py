from __future__ import annotations

import random
import time
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import run_ponder, scripted_engine
from ponder.errors import BudgetExceeded, UsageError
from ponder.runtime.budget import Budget, Ledger, estimate
from ponder.types import Generation, GenRequest, Message, ModelInfo, Usage


def long_reply(req: GenRequest, index: int, rng: random.Random) -> str:
    words = " ".join(f"w{rng.randrange(100)}" for _ in range(rng.randrange(20, 300)))
    return f"{words} \\boxed{{{rng.randrange(3)}}}"


@settings(max_examples=60, deadline=None)
@given(
    # (best_of_n and weighted_vote: scored pools, which crashed when no sample was affordable)
    strategy=st.sampled_from(["greedy", "sample", "vote", "best_of_n", "weighted_vote"]),
    n=st.integers(1, 12),
    tokens=st.one_of(st.none(), st.integers(0, 3000)),
    calls=st.one_of(st.none(), st.integers(0, 3)),
    max_tokens=st.integers(1, 200),
    seed=st.integers(0, 1000),
)
async def test_no_strategy_exceeds_a_token_or_call_budget(
    strategy: str, n: int, tokens: int | None, calls: int | None, max_tokens: int, seed: int
) -> None:
    engine, lm = scripted_engine(long_reply)
    engine.prompting.max_tokens = max_tokens
    opts = {} if strategy == "greedy" else {"n": n}
    budget = Budget(tokens=tokens, calls=calls)
    result = await engine.solve("How many? " * 5, strategy, seed=seed, budget=budget, **opts)
    spent = result.total
    if tokens is not None:
        assert spent.total_tokens <= tokens
    if calls is not None:
        assert spent.calls <= calls
    # the bill is the sum of what the backend produced, every choice counted (the policy's:
    # a scored pool's judge calls are the verifier's)
    policy = result.usage.get("policy", Usage()).completion_tokens
    assert policy == sum(c.completion_tokens for c in result.candidates)
    assert spent.calls == len(lm.calls)
    if not lm.calls:
        assert result.stopped == "budget" and result.answer is None


async def test_a_misspelt_or_negative_cap_is_named() -> None:
    engine, _ = scripted_engine(long_reply)
    with pytest.raises(UsageError, match=r"budget.token: Extra inputs are not permitted"):
        await engine.solve("q", "vote", n=2, budget={"token": 10})  # (was: no cap at all)
    with pytest.raises(UsageError, match=r"budget.tokens: Input should be greater than"):
        await engine.solve("q", "vote", n=2, budget={"tokens": -1})


def test_tool_integrated_samples_cut_by_a_budget_end_and_leave_nothing_running() -> None:
    # before: the budget's stop was raised while sibling samples (and their sandboxes) ran
    # on, and `asyncio.run` hung at exit waiting for them
    reply = 'replies=["Let me compute.\\n```python\\nprint(6*7)\\n```"]'
    r = run_ponder(
        *("solve", "q", "-s", "vote", "-n", "3", "--answer-with", "tir", "--max-tokens", "30"),
        *("--budget-tokens", "600", "--backend", "scripted", "--backend-option", reply),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "stopped early: budget" in r.stdout and "tool: 1 call" in r.stdout


def test_reservations_stop_concurrent_overspend() -> None:
    info = ModelInfo(name="m", parameters=10)
    req = GenRequest(messages=[Message(role="user", content="hi")], max_tokens=100)
    cost = estimate(req, info)
    ledger = Ledger(Budget(tokens=cost.total_tokens * 2))
    first = ledger.reserve(cost)
    ledger.reserve(cost)
    with pytest.raises(BudgetExceeded, match="tokens"):
        ledger.reserve(cost)  # two in flight already hold the whole budget
    ledger.release(first)  # the call finished: its reservation becomes its real (smaller) cost
    assert ledger.allows(cost)
    ledger.charge("policy", "m", Usage(calls=1, prompt_tokens=5, completion_tokens=10))
    assert not ledger.allows(cost)  # 15 spent + one still reserved + this one > the cap


def test_estimate_is_an_upper_bound_and_prices_flops_and_dollars() -> None:
    info = ModelInfo(
        name="m", parameters=1000, usd_per_mtok_prompt=1.0, usd_per_mtok_completion=2.0
    )
    req = GenRequest(prompt="abc", n=3, max_tokens=10)
    cost = estimate(req, info)
    assert cost.completion_tokens == 30
    assert cost.prompt_tokens >= 3
    assert cost.flops == 2 * 1000 * (cost.prompt_tokens + 30)
    assert cost.dollars == pytest.approx((cost.prompt_tokens * 1.0 + 30 * 2.0) / 1e6)


def test_flops_and_dollars_charged_by_model_info() -> None:
    info = ModelInfo(
        name="m",
        parameters=500,
        usd_per_mtok_prompt=3.0,
        usd_per_mtok_cached=1.0,
        usd_per_mtok_completion=6.0,
    )
    assert info.flops(100, 40, 10) == 2 * 500 * 70
    assert info.dollars(100, 40, 10) == pytest.approx((60 * 3 + 40 * 1 + 10 * 6) / 1e6)


def test_dollar_and_flop_caps_are_enforced() -> None:
    info = ModelInfo(name="m", parameters=1000, usd_per_mtok_completion=1e6)
    req = GenRequest(prompt="x", max_tokens=10, n=4)
    ledger = Ledger(Budget(dollars=25.0))  # each completion token costs $1
    assert ledger.affordable_n(req, info) == 2
    two = estimate(replace(req, n=2), info)
    ledger = Ledger(Budget(flops=two.flops))
    assert ledger.affordable_n(req, info) == 2


def test_seconds_cap_is_a_deadline() -> None:
    now = [0.0]
    ledger = Ledger(Budget(seconds=5), clock=lambda: now[0])
    req = GenRequest(prompt="x")
    cost = estimate(req, ModelInfo(name="m"))
    assert ledger.allows(cost) and ledger.seconds_left() == 5
    now[0] = 6.0
    assert not ledger.allows(cost) and ledger.refusal(cost) == "seconds"


async def test_seconds_budget_returns_on_time_with_a_budget_stop() -> None:
    engine, _ = scripted_engine(["\\boxed{1}"], latency_s=5.0)
    started = time.monotonic()
    r = await engine.solve("q", "vote", n=2, seed=0, budget={"seconds": 0.2})
    assert time.monotonic() - started < 2.0
    assert r.stopped == "budget" and r.answer is None and r.error is None


async def test_a_seconds_budget_that_leaves_samples_unscored_says_budget() -> None:
    """The samples are written; their judgements outlast the deadline. The answer stands
    (the first sample's), unscored, and the result says the budget stopped it."""
    import asyncio

    from ponder.lm.scripted import ScriptedLM
    from ponder.runtime.engine import Engine

    class SlowJudge(ScriptedLM):
        async def generate(self, req: GenRequest) -> Generation:
            if req.role == "verifier":
                await asyncio.Event().wait()  # never answers: only the deadline ends it
            return await super().generate(req)

    engine = Engine(SlowJudge(["\\boxed{1}"]))
    started = time.monotonic()
    r = await engine.solve("q", "best_of_n", n=2, seed=0, budget={"seconds": 0.5})
    assert time.monotonic() - started < 3.0
    assert r.answer == "1" and [c.score for c in r.candidates] == [None, None]
    assert all("not scored" in (c.note or "") for c in r.candidates)
    assert r.stopped == "budget" and r.error is None


async def test_completion_token_cap_limits_samples() -> None:
    engine, lm = scripted_engine(["a b c \\boxed{1}"])
    engine.prompting.max_tokens = 10
    r = await engine.solve("q", "vote", n=8, seed=0, budget={"completion_tokens": 35})
    assert lm.calls[0].n == 3 and len(r.candidates) == 3 and r.stopped == "budget"
    assert r.total.completion_tokens <= 35


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 8),
    calls=st.integers(0, 8),
    tokens=st.one_of(st.none(), st.integers(0, 900)),
    # no native n at all, or native n that cannot count stop strings (the default prompt has one)
    caps=st.sampled_from([(False, True), (True, False)]),
)
async def test_fan_out_backends_respect_call_and_token_caps(
    n: int, calls: int, tokens: int | None, caps: tuple[bool, bool]
) -> None:
    engine, lm = scripted_engine(long_reply, native_n=caps[0], n_with_stop=caps[1])
    engine.prompting.max_tokens = 50
    r = await engine.solve(
        "q " * 20, "vote", n=n, seed=n, budget={"calls": calls, "tokens": tokens}
    )
    assert r.total.calls == len(lm.calls) <= calls
    assert all(c.n == 1 for c in lm.calls)  # fanned out
    if tokens is not None:
        assert r.total.total_tokens <= tokens
    # the strategy asked the budget first, so it took what fits instead of being refused whole
    if tokens is None:
        assert len(r.candidates) == min(n, calls)


async def test_a_search_the_budget_cut_short_says_so_even_when_it_ends_on_its_own() -> None:
    # beam's last step grows fewer children than asked (the calls cap), then the search ends
    # at max_steps with what it has: its result must still say the budget stopped it
    engine, _ = scripted_engine(lambda req, i, rng: "a step\n\n")
    free = await engine.solve("q", "beam", n=2, m=2, max_steps=2, seed=0)
    assert free.stopped is None
    calls = free.total.calls
    cut = await engine.solve(
        "q", "beam", n=2, m=2, max_steps=2, seed=0, budget={"calls": calls - 1}
    )
    assert cut.total.calls == calls - 1 and cut.stopped == "budget"
