"""The contract every backend meets, run on each backend that can run here: the scripted one,
and vLLM's (the `vllm` backend over a scripted engine of vLLM's interface, tests/fake_vllm.py,
so it runs where vLLM is not installed)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fake_vllm import FakeAsyncLLM, SamplingParams
from helpers import no_sleep
from ponder.errors import UsageError
from ponder.lm import BackendConfig, open_backend
from ponder.lm.config import Price
from ponder.lm.protocol import Capabilities, LanguageModel
from ponder.lm.scripted import ScriptedLM
from ponder.lm.vllm import VllmLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.types import GenRequest, Message, ModelInfo, TokenLogprob

ANSWERS = ["Two and three make five. The answer is \\boxed{5}.", "It is \\boxed{5}.", "\\boxed{6}"]
LONG = "one two three four five six seven eight nine ten eleven twelve"


def write(text: str, rng: random.Random) -> str:
    """Both backends' replies, from what the prompt says."""
    if text.endswith("Step 1:"):
        return " two plus three is five. \\boxed{5}"
    if "STOPTEST" in text:
        return "First line.\nSecond line."
    if "LONG" in text:
        return LONG
    return rng.choice(ANSWERS)


def scripted() -> tuple[LanguageModel, Any]:
    lm = ScriptedLM(
        lambda req, i, rng: write(req.input_text(), rng),
        capabilities=Capabilities(slots=4, n_with_stop=True, stream=True),
        token_logprobs=lambda req, i, pos, tok: {tok: -0.1, "alt": -2.0},
    )
    return lm, lm


def vllm() -> tuple[LanguageModel, Any]:
    engine = FakeAsyncLLM(lambda prompt, i, rng: write(prompt, rng))
    lm = VllmLM(engine, ModelInfo(name="fake-vllm"), sampling_params=SamplingParams, slots=4)
    return lm, engine


@pytest.fixture(params=["scripted", "vllm"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, LanguageModel, Any]]:
    lm, inner = {"scripted": scripted, "vllm": vllm}[request.param]()
    await lm.prepare()
    yield request.param, lm, inner
    await lm.aclose()


def ask(question: str = "What is 2+3?", **kw: Any) -> GenRequest:
    messages = [Message(role="system", content="Be brief."), Message(role="user", content=question)]
    return GenRequest(messages=messages, **kw)


async def test_n_choices_each_counted(backend: tuple[str, LanguageModel, Any]) -> None:
    _, lm, _ = backend
    gen = await lm.generate(ask(n=3, temperature=0.8, seed=4))
    assert len(gen.choices) == 3 and gen.prompt_tokens > 0
    for c in gen.choices:
        assert c.completion_tokens >= 1 and c.text in ANSWERS and c.finish_reason == "stop"


async def test_max_tokens_cuts_with_length(backend: tuple[str, LanguageModel, Any]) -> None:
    _, lm, _ = backend
    gen = await lm.generate(ask("LONG", max_tokens=3))
    (c,) = gen.choices
    assert c.finish_reason == "length" and c.completion_tokens == 3
    assert LONG.startswith(c.text.strip()) and len(c.text.split()) == 3


async def test_a_stop_string_ends_the_text(backend: tuple[str, LanguageModel, Any]) -> None:
    _, lm, _ = backend
    gen = await lm.generate(ask("STOPTEST", stop=["\n"], n=2, temperature=0.5, seed=1))
    for c in gen.choices:
        assert c.text == "First line." and c.finish_reason == "stop"
        assert c.completion_tokens >= 3  # what was written, the stop string's tokens or not


async def test_logprobs_of_every_token_with_alternatives(
    backend: tuple[str, LanguageModel, Any],
) -> None:
    _, lm, _ = backend
    (c,) = (await lm.generate(ask("LONG", max_tokens=5, top_logprobs=2))).choices
    assert c.logprobs is not None and len(c.logprobs) == c.completion_tokens == 5
    for t in c.logprobs:
        assert t.logprob <= 0 and len(t.top) >= 2 and t.top.get(t.token) == t.logprob
    assert "".join(t.token.strip() for t in c.logprobs) == "".join(c.text.split())
    plain = (await lm.generate(ask("LONG", max_tokens=5))).choices[0]
    assert plain.logprobs is None


async def test_a_partial_text_is_continued_raw_or_as_a_final_message(
    backend: tuple[str, LanguageModel, Any],
) -> None:
    _, lm, _ = backend
    rendered = await lm.render(ask().messages or [])
    assert rendered.endswith("assistant>") or rendered.endswith("assistant\n")
    raw = await lm.generate(GenRequest(prompt=rendered + "Step 1:"))
    assert raw.choices[0].text.startswith(" two plus three is five")
    messages = [*(ask().messages or []), Message(role="assistant", content="Step 1:")]
    final = await lm.generate(GenRequest(messages=messages, continue_final=True))
    assert final.choices[0].text == raw.choices[0].text


async def test_a_stream_stops_for_real_and_is_charged_what_was_written(
    backend: tuple[str, LanguageModel, Any],
) -> None:
    name, lm, inner = backend
    seen: list[TokenLogprob] = []

    def watch(t: TokenLogprob) -> bool:
        seen.append(t)
        return len(seen) == 3

    gen = await lm.stream(ask("LONG", top_logprobs=1), watch)
    (c,) = gen.choices
    assert c.finish_reason == "stopped" and c.completion_tokens == 3 and len(seen) == 3
    assert c.text.split() == LONG.split()[:3]
    if name == "vllm":
        assert inner.aborted  # the engine was told to stop, not left writing
    whole = await lm.stream(ask("LONG"), lambda t: False)
    assert whole.choices[0].text == LONG and whole.choices[0].finish_reason == "stop"


async def test_a_seed_repeats_a_sample(backend: tuple[str, LanguageModel, Any]) -> None:
    _, lm, _ = backend
    texts = [
        [c.text for c in (await lm.generate(ask(n=4, temperature=1.0, seed=s))).choices]
        for s in (7, 7, 8, 9, 10)
    ]
    assert texts[0] == texts[1]
    assert len({tuple(t) for t in texts}) > 1


async def test_a_vote_through_the_engine_counts_every_choice(
    backend: tuple[str, LanguageModel, Any],
) -> None:
    _, lm, _ = backend
    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
    result = await engine.solve("What is 2+3?", "vote", n=6, seed=3)
    assert result.answer in ("5", "6") and len(result.candidates) == 6
    assert result.total.completion_tokens == sum(c.completion_tokens for c in result.candidates)


# -- vLLM's own -----------------------------------------------------------------------------
async def test_vllm_n_choices_share_one_prefill_and_the_prefix_cache_is_reported() -> None:
    lm, engine = vllm()
    first = await lm.generate(ask(n=4, temperature=1.0, seed=1))
    assert engine.prefilled == first.prompt_tokens  # once, not four times
    assert first.cached_tokens == 0 and len(engine.requests) == 1
    again = await lm.generate(ask(n=4, temperature=1.0, seed=2))
    assert again.cached_tokens > 0.7 * again.prompt_tokens  # the same question, cached


async def test_vllm_a_cancelled_request_is_aborted() -> None:
    import asyncio

    engine = FakeAsyncLLM(lambda prompt, i, rng: LONG, step_s=0.05)
    lm = VllmLM(engine, ModelInfo(name="fake"), sampling_params=SamplingParams)
    task = asyncio.create_task(lm.generate(ask("LONG")))
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(engine.aborted) == 1 and engine.running == 0


def test_vllm_without_the_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    with pytest.raises(UsageError, match=r"pip install 'ponder\[vllm\]'") as e:
        open_backend(BackendConfig(backend="vllm", model="some/model"))
    assert "\n" not in str(e.value)


def test_the_scripted_backend_opens_by_name_from_plain_options() -> None:
    config = BackendConfig(
        backend="scripted", slots=3, options={"replies": ["\\boxed{1}"], "latency_s": 0.01}
    )
    lm = open_backend(config)
    assert isinstance(lm, ScriptedLM) and lm.capabilities.slots == 3
    with pytest.raises(UsageError, match="backend 'scripted' options: replyz"):
        open_backend(BackendConfig(backend="scripted", options={"replyz": []}))
    with pytest.raises(UsageError, match="backend 'llamacpp' takes no backend options"):
        open_backend(BackendConfig(options={"x": 1}))


def test_the_scripted_backend_takes_prices_and_size_like_every_backend() -> None:
    # a bench or serve run on the scripted backend with --price prints dollars from that price
    config = BackendConfig(
        backend="scripted", price=Price.parse("1,2,0.5"), parameters=7_000_000_000
    )
    info = open_backend(config).info
    assert (info.usd_per_mtok_prompt, info.usd_per_mtok_completion) == (1.0, 2.0)
    assert info.usd_per_mtok_cached == 0.5 and info.parameters == 7_000_000_000
    assert open_backend(BackendConfig(backend="scripted")).info.usd_per_mtok_prompt == 0


async def test_every_call_gives_the_event_loop_back(
    backend: tuple[str, LanguageModel, Any],
) -> None:
    """A search of many calls must not starve the server's other requests, even on a backend
    that answers at once (the scripted one with no latency)."""
    _, lm, _ = backend
    order: list[str] = []

    async def search() -> None:
        for i in range(20):
            await lm.generate(ask(seed=i))
            order.append("call")

    async def other_request() -> None:
        order.append("other")

    await asyncio.gather(search(), other_request())
    assert order.index("other") <= 1
