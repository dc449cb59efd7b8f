"""Thinking budgets on the scripted backend: thinking never passes the cap (the end is forced and
the answer asked for), an early end is extended with "Wait," up to the minimum, and thinking
tokens are counted apart."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import no_sleep
from ponder.bench.harness import Harness, plan
from ponder.bench.report import write_report
from ponder.bench.store import Store
from ponder.bench.sweep import load_sweep, prepare_sweep
from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM, count_tokens
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import make_strategy
from ponder.runtime.thinking import FORCED, WAIT
from ponder.types import GenRequest, Problem

PROBLEM = Problem(question="What is 6 * 7?", kind="number")


def thinker(thinks: int) -> object:
    """Thinks `thinks` words, closes the thought, then answers."""

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        prompt = (req.prompt or "").split("<assistant>")[-1]  # what the model wrote so far
        if "</think>" in prompt:  # the answer round
            return "42}." if prompt.endswith("\\boxed{") else "So \\boxed{42}."
        return "hmm " * thinks + "</think> So \\boxed{42}."

    return reply


def engine(reply: object, budget: int, minimum: int = 0) -> tuple[Engine, ScriptedLM]:
    lm = ScriptedLM(reply, capabilities=Capabilities(slots=4, n_with_stop=True))  # type: ignore[arg-type]
    prompting = Prompting(think_budget=budget, think_min=minimum)
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep), prompting=prompting), lm


async def test_thinking_past_the_budget_is_cut_and_the_answer_asked_for() -> None:
    eng, lm = engine(thinker(100), budget=16)
    r = await eng.solve(PROBLEM, "greedy", seed=0)
    assert r.answer == "42"
    policy = r.usage["policy"]
    assert policy.reasoning_tokens == 16  # exactly the cap, never more
    assert lm.calls[0].max_tokens == 16 and lm.calls[0].stop == ["</think>"]
    assert lm.calls[-1].prompt is not None and lm.calls[-1].prompt.endswith(FORCED)
    assert r.candidates[0].reasoning is not None and "hmm" in r.candidates[0].reasoning
    assert policy.completion_tokens == r.candidates[0].completion_tokens


async def test_a_short_thought_is_told_to_wait_until_the_minimum() -> None:
    eng, lm = engine(thinker(3), budget=64, minimum=10)
    r = await eng.solve(PROBLEM, "greedy", seed=0)
    thought = r.candidates[0].reasoning or ""
    assert thought.count(WAIT) == 3  # 3 words a round: after 3, 6 and 9 tokens
    assert r.usage["policy"].reasoning_tokens == 12 and r.answer == "42"
    assert all(c.reasoning for c in lm.calls[:-1]) and not lm.calls[-1].reasoning


async def test_no_budget_means_no_thinking_rounds() -> None:
    lm = ScriptedLM(["So \\boxed{42}."])
    r = await Engine(lm, scheduler=Scheduler(sleep=no_sleep)).solve(PROBLEM, "greedy")
    assert len(lm.calls) == 1 and r.usage["policy"].reasoning_tokens == 0


async def test_a_settled_answer_stops_thoughts_in_flight_unanswered() -> None:
    """Adaptive sampling with a thinking budget: once the first (short) thought is answered,
    the wave's three longer thoughts stop at their next token and are not asked for an
    answer; every token written is charged, exactly."""
    thoughts = iter([3, 300, 400, 500])

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        prompt = (req.prompt or "").split("<assistant>")[-1]
        if "</think>" in prompt:
            return "So \\boxed{42}."
        return "hmm " * next(thoughts) + "</think>"

    caps = Capabilities(slots=4, n_with_stop=True, stream=True, logprobs=True)
    lm = ScriptedLM(reply, capabilities=caps, decode_s=0.005)  # type: ignore[arg-type]
    prompting = Prompting(think_budget=1000)
    eng = Engine(lm, scheduler=Scheduler(sleep=no_sleep), prompting=prompting)
    r = await eng.solve(PROBLEM, "adaptive", n=8, rule="esc", window=1, wave=4, seed=2)
    cut = [c for c in r.candidates if c.finish_reason == "stopped"]
    assert r.answer == "42" and len(r.candidates) == 4 and len(cut) == 3
    assert all(c.note == "stopped: the answer was settled" for c in cut)
    assert all("</think>" not in c.text and c.completion_tokens < 300 for c in cut)
    assert len(lm.calls) == 5  # four thoughts and one answer
    assert lm.stopped == 3
    assert (
        r.total.completion_tokens == lm.streamed == sum(c.completion_tokens for c in r.candidates)
    )
    assert r.usage["policy"].reasoning_tokens == sum(
        c.completion_tokens for c in r.candidates
    ) - count_tokens("So \\boxed{42}.")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 80), st.integers(0, 120), st.integers(0, 60), st.integers(1, 3))
async def test_thinking_never_exceeds_its_budget(
    budget: int, thinks: int, minimum: int, n: int
) -> None:
    eng, _ = engine(thinker(thinks), budget=budget, minimum=minimum)
    r = await eng.solve(PROBLEM, "vote", n=n, seed=budget)
    for cand in r.candidates:
        assert (
            count_tokens(cand.reasoning or "") - (cand.reasoning or "").count("Wait") * 2 <= budget
        )
    assert r.usage["policy"].reasoning_tokens <= n * budget
    assert r.usage["policy"].reasoning_tokens <= r.usage["policy"].completion_tokens


async def test_the_report_draws_accuracy_against_thinking_budget(tmp_path: Path) -> None:
    """Runs of one method at several budgets (and without one) become one curve: a table and
    a plot of accuracy against the budget."""

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        prompt = (req.prompt or "").split("<assistant>")[-1]
        if "</think>" in prompt:  # the answer: right only after a long enough thought
            right = prompt.count("hmm") >= 24
            return ("42" if right else "41") + "}." if prompt.endswith("\\boxed{") else "x"
        return "hmm " * 40 + "</think> So \\boxed{42}."

    problems = [
        Problem(question=f"q{i}: 6 * 7?", gold="42", kind="number", id=f"p{i}") for i in range(4)
    ]
    store = Store(tmp_path / "s.sqlite")
    for budget in (8, 16, 32, None):
        lm = ScriptedLM(reply, capabilities=Capabilities(slots=4, n_with_stop=True))
        eng = Engine(
            lm, scheduler=Scheduler(sleep=no_sleep), prompting=Prompting(think_budget=budget)
        )
        for p in plan([make_strategy("greedy")]):
            await Harness(eng, store).execute("t", problems, p, seed=0)
    path, _ = write_report(store, tmp_path / "rep", plots=True)
    text = path.read_text()
    table = text.split("### Accuracy against thinking budget", 1)[1].split("###", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| greedy")]
    assert [r.split("|")[2].strip() for r in rows] == ["8", "16", "32", "none (no thinking)"]
    assert [r.split("|")[4].strip().split("%")[0] for r in rows] == ["0.0", "0.0", "100.0", "100.0"]
    assert (tmp_path / "rep" / "thinking_t_scripted.png").is_file()


@pytest.mark.parametrize(
    ("strategy", "options", "said"),
    [
        ("beam", {}, "strategy 'beam' writes its steps as raw text"),
        ("particles", {}, "strategy 'particles' writes its steps as raw text"),
        ("vote", {"answer_with": "tir"}, "apply to answer_with reasoning, not tir"),
    ],
)
async def test_a_budget_the_strategy_would_ignore_is_refused_before_any_call(
    strategy: str, options: dict[str, str], said: str, tmp_path: Path
) -> None:
    """Step searches continue raw text and TIR samples run a tool loop: neither passes
    through the thinking loop, so the Python API and a sweep file refuse the budget."""
    eng, lm = engine(thinker(4), budget=16)
    with pytest.raises(UsageError, match="think_budget 16: ") as refused:
        await eng.solve(PROBLEM, strategy, **options)
    assert said in str(refused.value) and not lm.calls
    sweep = tmp_path / "s.yaml"
    listed = "{" + ", ".join(f"{k}: {v}" for k, v in {"name": strategy, **options}.items()) + "}"
    sweep.write_text(f"tasks: [gsm8k]\nstrategies: [{listed}]\nthink_budget: 16\n")
    with pytest.raises(UsageError, match=said):
        prepare_sweep(load_sweep(sweep), tmp_path)
