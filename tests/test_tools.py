"""Tool-integrated reasoning on the scripted backend: a sample's Python runs mid-generation in
the sandbox (with its earlier blocks' state), the real output is inserted and the sample goes
on; failures, floods, hangs and hostile programs are outputs too; calls are capped, charged to
the `tool` role and kept with the sample."""

from __future__ import annotations

import random

import pytest

from helpers import no_sleep
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting, ToolSettings
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.tools import open_block
from ponder.types import GenRequest, Problem

PROBLEM = Problem(
    question="A robe takes 6 bolts of blue fiber and 7 times that much white. How many white?",
    kind="number",
)


def after(prompt: str) -> str:
    """What the model has written so far in this sample (after the rendered head)."""
    return prompt.split("<assistant>", 1)[-1]


def engine(script: object, tools: ToolSettings | None = None) -> tuple[Engine, ScriptedLM]:
    lm = ScriptedLM(script, capabilities=Capabilities(slots=4, n_with_stop=True))  # type: ignore[arg-type]
    prompting = Prompting(tools=tools or ToolSettings())
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep), prompting=prompting), lm


def calls_python(code: str, final: str = "So the answer is \\boxed{42}.") -> object:
    """A model that writes one python block, then reads the output and answers."""

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        so_far = after(req.prompt or "")
        if "```output" in so_far:
            return final
        return f"Let me compute.\n```python\n{code}\n```\n```output\n(made up)\n```"

    return reply


def test_an_open_block_is_found_only_at_the_end() -> None:
    assert open_block("x\n```python\nprint(1)") == "print(1)"
    assert open_block("x\n```python\nprint(1)\n```") == "print(1)"
    assert open_block("```python\nprint(1)\n```\nthen more") is None
    assert open_block("no code here") is None


async def test_a_block_runs_mid_generation_and_the_real_output_is_inserted() -> None:
    eng, lm = engine(calls_python("print(6 * 7)"))
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir", seed=0)
    (cand,) = r.candidates
    assert r.answer == "42"
    assert "```output\n42\n```" in cand.text and "(made up)" not in cand.text
    assert [c.output for c in cand.tool_calls] == ["42"] and cand.tool_calls[0].ok
    assert len(lm.calls) == 2  # the sample, then its continuation after the output
    assert lm.calls[1].prompt is not None and lm.calls[1].prompt.endswith("```output\n42\n```\n")
    tool = r.usage["tool"]
    assert tool.calls == 1 and tool.seconds > 0 and tool.completion_tokens == 0
    assert r.usage["policy"].completion_tokens == cand.completion_tokens


async def test_the_notebook_keeps_earlier_blocks_state() -> None:
    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        so_far = after(req.prompt or "")
        if so_far.count("```output") == 0:
            return "```python\nx = 6 * 7\nprint('set')\n```\n"
        if so_far.count("```output") == 1:
            return "Now use it.\n```python\nprint(x)\n```\n"
        return "\\boxed{42}"

    eng, _ = engine(reply)
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    assert [c.output for c in r.candidates[0].tool_calls] == ["set", "42"]


async def test_a_traceback_is_the_output_and_the_sample_goes_on() -> None:
    eng, _ = engine(calls_python("print(1 / 0)", final="Oops. \\boxed{7}"))
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    (call,) = r.candidates[0].tool_calls
    assert not call.ok and "ZeroDivisionError" in call.output
    assert r.answer == "7"


async def test_an_error_reads_as_a_notebook_shows_it() -> None:
    """The model sees its own cell's frames and source line and the error, not the wrapper
    that runs the cell (whose exec line would repeat the whole block) or the sandbox's paths."""
    code = "seattle = 20\ncharleston = 4 * Seattle\nprint(charleston)"
    eng, _ = engine(calls_python(code))
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    (call,) = r.candidates[0].tool_calls
    assert not call.ok
    assert 'File "<cell>", line 2' in call.output
    assert "charleston = 4 * Seattle" in call.output
    assert (
        call.output.rstrip().splitlines()[-1].startswith("NameError: name 'Seattle' is not defined")
    )
    assert "exec(compile" not in call.output and "/tmp" not in call.output
    assert "(exit code" not in call.output  # the traceback already names the error


async def test_a_syntax_error_names_the_cells_line() -> None:
    eng, _ = engine(calls_python("x = (1 +\nprint(x)"))
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    (call,) = r.candidates[0].tool_calls
    assert "SyntaxError" in call.output and '"<cell>"' in call.output
    assert "exec(compile" not in call.output


async def test_a_block_that_raised_keeps_what_it_did_before_the_error() -> None:
    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        so_far = after(req.prompt or "")
        if so_far.count("```output") == 0:
            return "```python\na = 5\nprint(b)\n```\n"
        if so_far.count("```output") == 1:
            return "Fix it.\n```python\nb = 2\nprint(a * b)\n```\n"
        return "\\boxed{10}"

    eng, _ = engine(reply)
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    first, second = r.candidates[0].tool_calls
    assert not first.ok and "NameError" in first.output
    assert second.ok and second.output == "10"


async def test_a_block_a_limit_stopped_is_not_run_again() -> None:
    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        so_far = after(req.prompt or "")
        if so_far.count("```output") == 0:
            return "```python\nx = 1\nwhile True:\n    pass\n```\n"
        if so_far.count("```output") == 1:
            return "Again.\n```python\nprint('next')\n```\n"
        return "\\boxed{1}"

    eng, _ = engine(reply, ToolSettings(timeout_s=1.0))
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    first, second = r.candidates[0].tool_calls
    assert "time limit" in first.output
    assert second.ok and second.output == "next" and second.seconds < 1.0


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("while True:\n    pass", "time limit"),
        ("print('x' * 10_000_000)", "characters cut"),
        ("import os\nwhile True:\n    os.fork()", ""),
        ("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)", "Error"),
        ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", ""),
        ("import sys\nsys.exit(3)", "exit code 3"),
    ],
)
async def test_hostile_and_runaway_calls_are_contained_and_the_sample_goes_on(
    code: str, shown: str
) -> None:
    eng, _ = engine(calls_python(code), ToolSettings(timeout_s=2.0, max_output_chars=200))
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    (call,) = r.candidates[0].tool_calls
    assert not call.ok and shown in call.output
    assert len(call.output) <= 400
    assert r.answer == "42" and r.error is None  # the sample went on to its answer


async def test_calls_are_capped_per_sample() -> None:
    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        return "Again.\n```python\nprint(1)\n```\n"

    eng, lm = engine(reply, ToolSettings(max_calls=2))
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    assert len(r.candidates[0].tool_calls) == 2 and len(lm.calls) == 3


async def test_a_block_that_never_closes_is_not_run_and_nothing_breaks() -> None:
    eng, _ = engine(["```python\nwhile True:\n    x = 1\n" + "    x += 1\n" * 400])
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    (cand,) = r.candidates
    assert cand.tool_calls == [] and cand.finish_reason == "length" and r.error is None


async def test_the_hint_asks_an_unchecked_answer_to_check_itself() -> None:
    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        so_far = after(req.prompt or "")
        if "```output" in so_far:
            return "Confirmed: \\boxed{42}"
        if "let me check this with Python" in so_far:
            return "print(6 * 7)\n```\n"
        return "It is \\boxed{41}."

    eng, _ = engine(reply, ToolSettings(hint=True))
    r = await eng.solve(PROBLEM, "greedy", answer_with="tir")
    assert r.answer == "42" and [c.output for c in r.candidates[0].tool_calls] == ["42"]
    plain, _ = engine(reply)
    assert (await plain.solve(PROBLEM, "greedy", answer_with="tir")).answer == "41"


async def test_every_sample_of_a_vote_runs_its_own_tools() -> None:
    eng, _ = engine(calls_python("print(6 * 7)"))
    r = await eng.solve(PROBLEM, "vote", n=3, answer_with="tir", seed=1)
    assert r.answer == "42" and all(len(c.tool_calls) == 1 for c in r.candidates)
    assert r.usage["tool"].calls == 3


async def test_each_call_is_reported_as_progress() -> None:
    events: list[dict[str, object]] = []
    eng, _ = engine(calls_python("print(6 * 7)"))
    await eng.solve(PROBLEM, "greedy", answer_with="tir", observer=events.append)
    calls = [e for e in events if e["event"] == "tool_call"]
    assert len(calls) == 1 and calls[0]["ok"] is True and calls[0]["output"] == "42"
    assert any(e["event"] == "call" and e["role"] == "tool" for e in events)


async def test_a_settled_answer_stops_tool_integrated_samples_in_flight() -> None:
    """Adaptive sampling with tool-integrated samples: once the first sample (its call run,
    its answer written) settles the answer, the wave's three longer samples stop at their
    next token, before their own calls; every token written is charged, exactly."""
    lengths = iter([3, 300, 400, 500])

    def reply(req: GenRequest, i: int, rng: random.Random) -> str:
        if "```output" in after(req.prompt or ""):
            return "So the answer is \\boxed{42}."
        words = " ".join(["step"] * next(lengths))
        return f"{words}\n```python\nprint(6 * 7)\n```"

    caps = Capabilities(slots=4, n_with_stop=True, stream=True, logprobs=True)
    lm = ScriptedLM(reply, capabilities=caps, decode_s=0.005)  # type: ignore[arg-type]
    eng = Engine(lm, scheduler=Scheduler(sleep=no_sleep), prompting=Prompting())
    r = await eng.solve(
        PROBLEM, "adaptive", n=8, rule="esc", window=1, wave=4, answer_with="tir", seed=2
    )
    finished = [c for c in r.candidates if c.finish_reason != "stopped"]
    cut = [c for c in r.candidates if c.finish_reason == "stopped"]
    assert r.answer == "42" and len(finished) == 1 and len(cut) == 3
    assert all(c.note == "stopped: the answer was settled" for c in cut)
    assert all(not c.tool_calls for c in cut) and r.usage["tool"].calls == 1
    assert all(c.completion_tokens < 300 for c in cut)  # none reached its block
    assert lm.stopped == 3
    assert (
        r.total.completion_tokens == lm.streamed == sum(c.completion_tokens for c in r.candidates)
    )
