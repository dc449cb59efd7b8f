"""`ponder serve` against the stock openai client, over a scripted backend."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from helpers import no_sleep
from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Scheduler
from ponder.serve import Keys, Limits, create_app
from ponder.types import GenRequest
from serving import running

MODEL = "scripted"
KEY = "sk-test-key"


def reply(req: GenRequest, index: int, rng: random.Random) -> str:
    """Three in four samples say 42; a judge says Yes; a raw prompt is echoed back."""
    if req.role == "verifier":
        return "Yes"
    if req.prompt is not None and "<assistant>" not in req.prompt:
        return f"echo: {req.prompt}"
    answer = 42 if rng.random() < 0.75 else 41
    return f"Add them up step by step.\n\nSo the answer is \\boxed{{{answer}}}."


def scripted(latency: float = 0.0) -> tuple[Engine, ScriptedLM]:
    caps = Capabilities(slots=8, n_with_stop=True, raw_prefix=True)
    lm = ScriptedLM(reply, capabilities=caps, latency_s=latency)
    return Engine(lm, scheduler=Scheduler(sleep=no_sleep)), lm


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, ScriptedLM]]:
    engine, lm = scripted()
    keys = Keys.from_env(KEY, Limits(max_n=16, max_tokens=1024))
    with running(create_app(engine, keys=keys, limits=Limits(max_n=16))) as url:
        yield url, lm


@pytest.fixture
def client(server: tuple[str, ScriptedLM]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0], api_key=KEY, max_retries=0)


def wait_for(
    condition: Callable[[], bool], seconds: float, state: Callable[[], str] = lambda: ""
) -> None:
    """Poll `condition` (the server runs in another thread) until it holds or time is up."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s {state()}"
        time.sleep(0.005)


def ask(question: str = "What is 20 + 22?") -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def test_a_strategy_by_model_name_answers_with_its_whole_bill(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=f"vote-8/{MODEL}", messages=ask(), seed=3)
    (choice,) = r.choices
    assert "\\boxed{" in (choice.message.content or "") and choice.finish_reason == "stop"
    usage = r.usage
    assert usage is not None
    ponder = usage.model_extra["ponder"]  # type: ignore[index]
    assert ponder["strategy"] == "vote" and ponder["config"]["n"] == 8
    assert ponder["candidates"] == 8 and ponder["answer"] in ("41", "42")
    assert ponder["answer"] in choice.message.content  # type: ignore[operator]
    # the bill is every sample's: 8 choices, every token counted
    policy = ponder["by_role"]["policy"]
    assert usage.completion_tokens == policy["completion_tokens"] > 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 0.5 <= ponder["vote_share"] <= 1.0


def test_the_ponder_field_picks_the_strategy_and_verifier_calls_are_billed(
    client: openai.OpenAI,
) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=ask(),
        seed=5,
        extra_body={
            "ponder": {"strategy": "best_of_n", "n": 4, "options": {"verifier": "self_judge"}}
        },
    )
    ponder = r.usage.model_extra["ponder"]  # type: ignore[union-attr]
    roles = ponder["by_role"]
    assert ponder["strategy"] == "best_of_n" and set(roles) == {"policy", "verifier"}
    assert roles["verifier"]["calls"] == 4  # one judge call per sample, billed
    total = sum(u["completion_tokens"] for u in roles.values())
    assert r.usage.completion_tokens == total  # type: ignore[union-attr]


def test_a_plain_model_name_passes_through(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=ask(), n=3, seed=1, max_tokens=64)
    assert len(r.choices) == 3 and all(c.message.content for c in r.choices)
    assert r.usage.model_extra["ponder"]["strategy"] is None  # type: ignore[union-attr]
    assert r.usage.model_extra["ponder"]["calls"] >= 1  # type: ignore[union-attr]
    c = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=16)
    assert c.choices[0].text == "echo: Once upon"


def test_streaming_sends_progress_then_the_answer_then_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=f"vote-4/{MODEL}",
        messages=ask(),
        stream=True,
        seed=2,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    progress = [c.model_extra["ponder"] for c in chunks if c.model_extra.get("ponder")]
    events = [p["event"] for p in progress]
    assert "call" in events and "samples" in events and "tally" in events
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "\\boxed{" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].usage.model_extra["ponder"]["strategy"] == "vote"  # type: ignore[index]
    # without include_usage, no chunk has usage
    plain = list(
        client.chat.completions.create(model=f"vote-4/{MODEL}", messages=ask(), stream=True, seed=2)
    )
    assert plain[-1].choices and all(c.usage is None for c in plain)


async def test_the_async_client_streams_and_answers(server: tuple[str, ScriptedLM]) -> None:
    client = openai.AsyncOpenAI(base_url=server[0], api_key=KEY, max_retries=0)
    r = await client.chat.completions.create(model=f"beam-2/{MODEL}", messages=ask(), seed=4)
    assert r.usage.model_extra["ponder"]["strategy"] == "beam"  # type: ignore[union-attr]
    stream = await client.completions.create(
        model=f"vote-2/{MODEL}", prompt="What is 20 + 22?", stream=True, seed=9
    )
    texts = [c.choices[0].text async for c in stream if c.choices]
    assert "\\boxed{" in "".join(texts)
    await client.close()


def test_models_lists_the_model_and_each_strategy_over_it(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == MODEL and f"vote/{MODEL}" in ids and f"particles/{MODEL}" in ids


@pytest.mark.parametrize(
    ("model", "extra", "status", "param"),
    [
        ("nope", {}, 404, "model"),
        (f"nostrategy-4/{MODEL}", {}, 404, "model"),
        (f"vote-4/{MODEL}", {"n": 2}, 400, "n"),
        (f"vote-64/{MODEL}", {}, 413, "model"),  # (the width the model name gave)
        (f"vote-0/{MODEL}", {}, 400, "model"),
        # a check across options names the one this request gave (was ponder.options)
        (f"dvts-2/{MODEL}", {}, 400, "model"),  # 2 is no multiple of m=4
        (f"dvts/{MODEL}", {"extra_body": {"ponder": {"n": 6}}}, 400, "ponder.n"),
        (
            f"dvts/{MODEL}",
            {"extra_body": {"ponder": {"options": {"m": 3}}}},
            400,
            "ponder.options.m",
        ),
        (
            f"adaptive-4/{MODEL}",
            {"extra_body": {"ponder": {"options": {"min_samples": 6}}}},
            400,
            "ponder.options.min_samples",
        ),
        (
            f"adaptive/{MODEL}",
            {"extra_body": {"ponder": {"options": {"rule": "esc", "threshold": 0.9}}}},
            400,
            "ponder.options.threshold",
        ),
        (f"vote/{MODEL}", {"extra_body": {"ponder": {"n": 64}}}, 413, "ponder.n"),
        (f"vote/{MODEL}", {"max_tokens": 5000}, 413, "max_tokens"),
        (f"vote-4/{MODEL}", {"extra_body": {"ponder": {"n": 8}}}, 400, "ponder.n"),
        (
            f"vote/{MODEL}",
            {"extra_body": {"ponder": {"options": {"m": 2}}}},
            400,
            "ponder.options.m",
        ),
        # make_strategy's own keywords are no options (a 500, and no validation, before)
        (
            f"vote/{MODEL}",
            {"extra_body": {"ponder": {"options": {"name": "x"}}}},
            400,
            "ponder.options.name",
        ),
        (
            f"vote/{MODEL}",
            {"extra_body": {"ponder": {"options": {"shared": True, "bogus": 1}}}},
            400,
            "ponder.options.shared",
        ),
        (
            f"vote/{MODEL}",
            {"extra_body": {"ponder": {"options": {"bogus": 1}}}},
            400,
            "ponder.options.bogus",
        ),
        # the width once: by the model name (or ponder.n), or in the options
        (
            f"vote-4/{MODEL}",
            {"extra_body": {"ponder": {"options": {"n": 4}}}},
            400,
            "ponder.options.n",
        ),
        (
            f"mcts/{MODEL}",
            {"extra_body": {"ponder": {"n": 2, "options": {"iterations": 8}}}},
            400,
            "ponder.options.iterations",
        ),
        (
            f"mcts/{MODEL}",
            {"extra_body": {"ponder": {"options": {"n": 2}}}},
            400,
            "ponder.options.n",
        ),
        # every option that multiplies the work within max_n (16), a generation's within max_tokens
        (
            f"beam/{MODEL}",
            {"extra_body": {"ponder": {"options": {"m": 20000}}}},
            413,
            "ponder.options.m",
        ),
        (
            f"beam/{MODEL}",
            {"extra_body": {"ponder": {"options": {"max_steps": 17}}}},
            413,
            "ponder.options.max_steps",
        ),
        (
            f"beam/{MODEL}",
            {"extra_body": {"ponder": {"options": {"n": 17}}}},
            413,
            "ponder.options.n",
        ),
        (
            f"beam/{MODEL}",
            {"extra_body": {"ponder": {"options": {"max_step_tokens": 1_000_000}}}},
            413,
            "ponder.options.max_step_tokens",
        ),
        (
            f"refine/{MODEL}",
            {"extra_body": {"ponder": {"options": {"critique_tokens": 1025}}}},
            413,
            "ponder.options.critique_tokens",
        ),
        (
            f"mcts/{MODEL}",
            {"extra_body": {"ponder": {"options": {"k": 17}}}},
            413,
            "ponder.options.k",
        ),
        # a number is a JSON number, a flag a JSON boolean: pydantic's lax coercions
        # ("17" → 17, true → 1, 1.0 → 1) would run a request other than the one written
        (
            f"mcts/{MODEL}",
            {"extra_body": {"ponder": {"options": {"k": "17"}}}},
            400,
            "ponder.options.k",
        ),
        (
            f"vote/{MODEL}",
            {"extra_body": {"ponder": {"options": {"temperature": True}}}},
            400,
            "ponder.options.temperature",
        ),
        (
            f"vote/{MODEL}",
            {"extra_body": {"ponder": {"budget": {"bogus": 1}}}},
            400,
            "ponder.budget.bogus",
        ),
        (MODEL, {"n": 17}, 413, "n"),
        # JSON types as OpenAI's API keeps them: true is not 1, "5" is not 5
        (f"vote/{MODEL}", {"n": True}, 400, "n"),
        (f"vote/{MODEL}", {"max_tokens": "5"}, 400, "max_tokens"),
        (f"vote/{MODEL}", {"seed": 1.0}, 400, "seed"),
        (MODEL, {"n": 100_000}, 413, "n"),  # (not a 400 of its own past 128)
        (f"vote/{MODEL}", {"temperature": 5}, 400, "temperature"),
        (  # a bad value names its option, not the whole options object
            f"beam/{MODEL}",
            {"extra_body": {"ponder": {"options": {"m": "x"}}}},
            400,
            "ponder.options.m",
        ),
        (f"greedy-4/{MODEL}", {}, 400, "model"),
        (MODEL, {"extra_body": {"ponder": {"strategy": "nope"}}}, 400, "ponder.strategy"),
        (
            f"best_of_n-2/{MODEL}",
            {"extra_body": {"ponder": {"options": {"verifier": "prm_http"}}}},
            400,
            "ponder.options.verifier",
        ),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_field(
    client: openai.OpenAI,
    model: str,
    extra: dict,
    status: int,
    param: str,  # type: ignore[type-arg]
) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=model, messages=ask(), **extra)
    assert e.value.status_code == status
    body = e.value.body
    assert isinstance(body, dict) and body["param"] == param and body["message"]
    assert "Traceback" not in e.value.response.text


def test_a_question_with_nothing_visible_is_a_400(client: openai.OpenAI) -> None:
    for text in (" ", "\u200b\ufeff\n"):  # whitespace, or zero-width characters only
        with pytest.raises(openai.BadRequestError, match="the user message is empty") as e:
            client.chat.completions.create(model=f"vote-2/{MODEL}", messages=ask(text))  # type: ignore[arg-type]
        assert isinstance(e.value.body, dict) and e.value.body["param"] == "messages"
        with pytest.raises(openai.BadRequestError, match="the question is empty"):
            client.completions.create(model=f"vote-2/{MODEL}", prompt=text)


def test_a_conversation_needs_the_plain_model_for_a_strategy(client: openai.OpenAI) -> None:
    history = [*ask(), {"role": "assistant", "content": "41"}, {"role": "user", "content": "Sure?"}]
    with pytest.raises(openai.BadRequestError, match="one user message"):
        client.chat.completions.create(model=f"vote-2/{MODEL}", messages=history)  # type: ignore[arg-type]
    r = client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
    assert r.choices[0].message.content


def test_malformed_json_and_missing_fields_are_400(server: tuple[str, ScriptedLM]) -> None:
    url = server[0]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(f"{url}/chat/completions", content=b'{"model": 1,}', headers=headers)
    error = r.json()["error"]
    assert r.status_code == 400 and error["type"] == "invalid_request_error"
    assert error["message"] == (
        "the body is not valid JSON: Expecting property name enclosed in double quotes "
        "(at character 12)"
    )
    assert error["param"] is None  # (not the character's position)
    for body in (b"[1, 2]", b'"hi"', b"null", b""):
        r = httpx.post(f"{url}/chat/completions", content=body, headers=headers)
        assert r.status_code == 400, body
        assert (
            r.json()["error"]["message"] == "the body must be a JSON object of the request's fields"
        )
    r = httpx.post(f"{url}/chat/completions", json={"model": MODEL}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    # a JSON object under another Content-Type (curl -d sends a form's): the header is named
    body = json.dumps({"model": f"vote-2/{MODEL}", "messages": ask()})
    for sent, says in (("text/plain", "'text/plain'"), (None, "missing")):
        plain = {"Authorization": f"Bearer {KEY}"} | ({"Content-Type": sent} if sent else {})
        r = httpx.post(f"{url}/chat/completions", content=body, headers=plain)
        assert r.status_code == 400
        assert r.json()["error"]["message"] == (
            "the body must be a JSON object of the request's fields, sent as application/json "
            f"(its Content-Type is {says})"
        )
    # NaN and Infinity, which Python's JSON reader takes, are not numbers
    for field in ("temperature", "top_p"):
        raw = body[:-1] + f', "{field}": NaN}}'
        r = httpx.post(f"{url}/chat/completions", content=raw, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["param"] == field
        assert r.json()["error"]["message"] == f"{field}: Input should be a finite number"
    # half a surrogate pair is no text (before: a 500 from the prompt's length check)
    for path, field, raw in (
        (
            "chat/completions",
            "messages.0.content",
            '"messages": [{"role": "user", "content": "q\\ud800"}]',
        ),
        (
            "chat/completions",
            "messages.0.content.0.text",
            '"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udc00"}]}]',
        ),
        ("completions", "prompt", '"prompt": "q\\ud800"'),
    ):
        r = httpx.post(
            f"{url}/{path}", content=f'{{"model": "vote-2/{MODEL}", {raw}}}', headers=headers
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
        assert "half of a surrogate pair" in r.json()["error"]["message"]
    # a part other than text is named, once (not as an error per branch of the union)
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    r = httpx.post(
        f"{url}/chat/completions",
        json={"model": f"vote-2/{MODEL}", "messages": image},
        headers=headers,
    )
    assert r.status_code == 400 and r.json()["error"] == {
        "message": "messages.0.content: part 0 is of type 'image_url'; ponder reads text "
        "parts only",
        "type": "invalid_request_error",
        "param": "messages.0.content",
        "code": None,
    }


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", "Basic c2stdGVzdC1rZXk=", f"Bearer {KEY}x", "bearer sk"]
)
def test_without_a_valid_key_401_in_openai_format(
    server: tuple[str, ScriptedLM], header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/models", "/chat/completions"):
        r = httpx.request(
            "GET" if path == "/models" else "POST",
            server[0] + path,
            json={"model": MODEL, "messages": ask()},
            headers=headers,
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server[0].removesuffix("/v1") + "/health").status_code == 200


def test_keys_file_limits_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("# team keys\nsk-a\nsk-b max_n=2 max_budget_tokens=500  # small\n")
    keys = Keys.from_file(f, Limits())
    a, b = keys.check("Bearer sk-a"), keys.check("Bearer sk-b")
    assert a is not None and a.limits == Limits()
    assert b is not None and b.limits.max_n == 2 and b.limits.max_budget_tokens == 500
    assert keys.check("Bearer sk-c") is None and "sk-b" not in repr(b)
    for content, says in (
        (b"sk-a\nsk-b max_n=zero\n", r"keys:2: max_n"),
        (b"sk-a max_n\n", r"keys:1: expected name=value"),
        (b"sk-a\n\xff\xfe\n", r"keys: not UTF-8 text"),
        # a key or a limit given twice: which one held depended on the order
        (b"sk-a max_n=50\nsk-b\nsk-a max_n=2\n", r"keys:3: this key is also on line 1"),
        (b"sk-a max_n=3 max_n=4\n", r"keys:1: max_n given twice"),
    ):
        f.write_bytes(content)
        with pytest.raises(UsageError, match=says):
            Keys.from_file(f, Limits())
    # keys from the environment: none in it, or one with a space (limits go in a file)
    with pytest.raises(UsageError, match=r"PONDER_SERVE_API_KEYS=' , ': no key in it"):
        Keys.from_env(" , ", Limits())
    with pytest.raises(UsageError, match=r"key 2 holds a space"):
        Keys.from_env("sk-a,sk-b max_n=5", Limits())


def test_null_is_the_default_for_n_and_stream(server: tuple[str, ScriptedLM]) -> None:
    # as OpenAI's API reads them (as ponder already read temperature or seed)
    body = {"model": f"vote-2/{MODEL}", "messages": ask(), "n": None, "stream": None}
    r = httpx.post(
        f"{server[0]}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


def test_model_names_and_token_limits_are_read_as_written(client: openai.OpenAI) -> None:
    for name in (f"vote-\u0663/{MODEL}", f"vote-\uff13/{MODEL}"):  # Arabic-Indic, full-width 3
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=name, messages=ask())
    with pytest.raises(
        openai.BadRequestError, match=r"max_tokens \(100\) and max_completion_tokens \(50\) differ"
    ) as e:
        client.chat.completions.create(
            model=f"vote-2/{MODEL}", messages=ask(), max_tokens=100, max_completion_tokens=50
        )
    assert isinstance(e.value.body, dict) and e.value.body["param"] == "max_tokens"
    r = client.chat.completions.create(
        model=f"vote-2/{MODEL}", messages=ask(), max_tokens=100, max_completion_tokens=100
    )
    assert r.choices[0].message.content


def test_a_keys_budget_cap_bounds_every_request() -> None:
    engine, _ = scripted()
    keys = Keys.from_env("sk-small", Limits(max_budget_tokens=300))
    with running(create_app(engine, keys=keys)) as url:
        client = openai.OpenAI(base_url=url, api_key="sk-small", max_retries=0)
        r = client.chat.completions.create(model=f"vote-16/{MODEL}", messages=ask(), seed=1)
        assert r.usage.total_tokens <= 300  # type: ignore[union-attr]
        assert r.usage.model_extra["ponder"]["stopped"] == "budget"  # type: ignore[union-attr]
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(
                model=f"vote/{MODEL}",
                messages=ask(),
                extra_body={"ponder": {"budget": {"tokens": 10_000}}},
            )
        assert e.value.status_code == 413


def test_a_full_queue_is_429_and_a_dead_backend_503() -> None:
    engine, lm = scripted(latency=0.5)
    with running(create_app(engine, max_in_flight=1)) as url:

        async def two() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as c:
                body = {"model": MODEL, "messages": ask()}
                first = asyncio.create_task(c.post(f"{url}/chat/completions", json=body))
                # the first request holds the only place
                await asyncio.to_thread(wait_for, lambda: lm.in_flight > 0, 5.0)
                second = await c.post(f"{url}/chat/completions", json=body)
                return [(await first).status_code, second.status_code]

        first, second = asyncio.run(two())
        assert (first, second) == (200, 429)

    def down(call: int, req: GenRequest) -> Exception:
        from ponder.errors import BackendError

        return BackendError("connection refused")

    caps = Capabilities(slots=2, raw_prefix=True)
    dead = Engine(ScriptedLM(reply, capabilities=caps, fail=down), scheduler=Scheduler())
    with running(create_app(dead)) as url:
        for model in (MODEL, f"vote-2/{MODEL}"):
            r = httpx.post(f"{url}/chat/completions", json={"model": model, "messages": ask()})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "backend_unavailable"


def test_a_disconnected_stream_cancels_its_work_within_a_second() -> None:
    engine, lm = scripted(latency=30.0)  # every call would take 30 s
    with running(create_app(engine)) as url:
        with httpx.stream(
            "POST",
            f"{url}/chat/completions",
            json={"model": f"vote-4/{MODEL}", "messages": ask(), "stream": True},
            timeout=30,
        ) as r:
            lines = r.iter_lines()
            first = next(lines)  # the first chunk came while the work runs
            assert first.startswith("data: ") and json.loads(first[6:])["choices"]
            wait_for(lambda: lm.in_flight == 4, 5.0)  # the work reached the backend
        # the client is gone: the backend sees its calls cancelled and its slots free up
        wait_for(lambda: lm.in_flight == 0, 1.0)
        assert lm.cancelled == 1  # one request of n = 4
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
        assert health["in_flight"] == 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_serve_command_adds_strategies_to_an_upstream(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    keys = tmp_path / "keys"
    keys.write_text("sk-cli max_n=4\n")
    engine, lm = scripted()
    # any OpenAI-compatible server will do; this one wants its own key from ponder
    up_keys = Keys.from_list(["sk-upstream"], Limits(), "upstream")
    with running(create_app(engine, keys=up_keys)) as upstream:
        port = free_port()
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "ponder", "serve", "--upstream", upstream),
                *("--port", str(port), "--api-key-file", str(keys), "--api-key", "sk-flag"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PONDER_UPSTREAM_API_KEY": "sk-upstream"},
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _up(url) or proc.poll() is not None, 60.0)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-cli", max_retries=0)
            r = client.chat.completions.create(model=f"vote-2/{MODEL}", messages=ask(), seed=1)
            assert r.usage.model_extra["ponder"]["candidates"] == 2  # type: ignore[union-attr]
            assert any(c.role == "policy" for c in lm.calls)  # the upstream did the sampling
            with pytest.raises(openai.APIStatusError) as too_many:
                client.chat.completions.create(model=f"vote-8/{MODEL}", messages=ask())
            assert too_many.value.status_code == 413  # this key's max_n
            # --api-key is a key clients send (as vLLM's), beside the file's; the upstream's
            # key is ponder's own to send, not a key clients may use
            flagged = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-flag", max_retries=0)
            assert flagged.chat.completions.create(model=MODEL, messages=ask()).choices
            for other in ("sk-other", "sk-upstream"):
                with pytest.raises(openai.AuthenticationError):
                    openai.OpenAI(base_url=f"{url}/v1", api_key=other, max_retries=0).models.list()
        finally:
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
    # one log line per request: id, client, method, path, status, seconds, key, model, tokens
    served = [line for line in stderr.splitlines() if " POST /v1/chat/completions 200 " in line]
    assert len(served) == 2 and all(" req-" in line for line in served)
    assert "key=keys:1 model=vote-2/scripted calls=2" in served[0]
    assert "key=--api-key:1 model=scripted calls=1" in served[1]
    assert " GET /v1/models 401 " in stderr


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serving_beyond_loopback_needs_keys() -> None:
    from helpers import run_ponder

    r = run_ponder("serve", "--host", "0.0.0.0")
    assert r.returncode == 2 and "--api-key-file" in r.stderr and "0.0.0.0" in r.stderr
    assert "--api-key " in r.stderr


def test_a_port_in_use_is_named_before_the_model_loads() -> None:
    import socket

    from helpers import run_ponder

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # the default (embedded) backend: failing before it loads is what keeps this quick
        r = run_ponder("serve", "--port", str(port), timeout=30)
    assert r.returncode == 2, r.stderr
    assert f"--host 127.0.0.1 --port {port}: cannot listen there" in r.stderr, r.stderr
    assert "ponder serve: http" not in r.stderr  # no banner for a server that never listened


def test_a_strategy_that_would_ignore_the_servers_thinking_budget_is_a_400() -> None:
    """`ponder serve --think-budget N`: a request choosing a step search (raw text) or TIR
    samples (a tool loop) would run without the budget; it is refused naming the field."""
    caps = Capabilities(slots=4, n_with_stop=True, raw_prefix=True)
    lm = ScriptedLM(reply, capabilities=caps)
    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep), prompting=Prompting(think_budget=32))
    with running(create_app(engine)) as url:
        asked = [
            ({"model": f"beam-2/{MODEL}"}, "model", "strategy 'beam'"),
            (
                {"model": f"vote-2/{MODEL}", "ponder": {"options": {"answer_with": "tir"}}},
                "ponder.options.answer_with",
                "not tir",
            ),
        ]
        for fields, param, said in asked:
            r = httpx.post(f"{url}/chat/completions", json={**fields, "messages": ask()})
            error = r.json()["error"]
            assert r.status_code == 400 and error["param"] == param, error
            assert "--think-budget 32" in error["message"] and said in error["message"]
        assert not lm.calls
        r = httpx.post(
            f"{url}/chat/completions", json={"model": f"vote-2/{MODEL}", "messages": ask()}
        )
        assert r.status_code == 200, r.text


def test_port_0_prints_the_port_the_system_chose_and_serves_there() -> None:
    import re
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "ponder", "serve", "--backend", "scripted", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the start-up line, once the model is ready
        said = re.search(r"ponder serve: http://127\.0\.0\.1:(\d+)/v1", line)
        assert said is not None and said.group(1) != "0", line
        url = f"http://127.0.0.1:{said.group(1)}"
        wait_for(lambda: _up(url) or proc.poll() is not None, 30.0)
        assert proc.poll() is None and _up(url)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
