"""`ponder serve` as vLLM's OpenAI server behaves: a plain request streamed token by token,
usage in a stream only when asked, log-probabilities passed through, max_completion_tokens,
fields it cannot honour refused by name, /metrics in Prometheus' format, and the in-flight
limit holding for a burst of streams."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from collections import Counter
from typing import Any

import httpx
import openai
import pytest

from fake_server import marked, upstream
from helpers import no_sleep
from ponder.lm.openai import OpenAILM
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.serve import Keys, Limits, create_app
from ponder.types import GenRequest
from serving import running, stream_once
from test_serve import MODEL, ask
from test_serve import reply as answer

WORDS = " ".join(f"w{i}" for i in range(20))  # 20 scripted tokens


def words(req: GenRequest, index: int, rng: random.Random) -> str:
    if req.role == "verifier":
        return "Yes"
    if req.messages is not None and "What is" in req.messages[-1].content:
        return answer(req, index, rng)
    return WORDS if req.seed is None else f"{WORDS} s{req.seed}"


def top(req: GenRequest, index: int, position: int, token: str) -> dict[str, float]:
    return {token: -0.25, " alt": -1.5, " other": -3.0}


def backend(
    *,
    stream: bool = True,
    logprobs: bool = True,
    decode_s: float = 0.0,
    fields: frozenset[str] = frozenset(),
) -> ScriptedLM:
    caps = Capabilities(
        slots=8,
        n_with_stop=True,
        stream=stream,
        logprobs=logprobs,
        request_fields=fields,
    )
    return ScriptedLM(words, capabilities=caps, decode_s=decode_s, token_logprobs=top)


def serve(lm: ScriptedLM, **kw: Any) -> Any:
    return running(create_app(Engine(lm, scheduler=Scheduler(sleep=no_sleep)), **kw))


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


# -- streaming a plain request -------------------------------------------------------------


def test_a_plain_stream_comes_token_by_token_to_the_stock_client() -> None:
    lm = backend(decode_s=0.05)  # 20 tokens: a second of generation
    with serve(lm) as url:
        written_at_first: int | None = None
        contents: list[str] = []
        chunks = []
        for c in client(url).chat.completions.create(model=MODEL, messages=ask("Say"), stream=True):
            chunks.append(c)
            if c.choices and c.choices[0].delta.content:
                if written_at_first is None:
                    written_at_first = lm.streamed  # the tokens the backend had written then
                contents.append(c.choices[0].delta.content)
    # the first words reached the client before the generation was half done
    assert written_at_first is not None and written_at_first < 10, written_at_first
    assert "".join(contents) == WORDS and len(contents) == 20  # a chunk a token
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks)  # no usage unless asked for


def test_usage_comes_only_when_asked_and_n_choices_stream_side_by_side() -> None:
    lm = backend()
    with serve(lm) as url:
        stream = client(url).chat.completions.create(
            model=MODEL,
            messages=ask("Say"),
            stream=True,
            n=2,
            seed=3,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == 21 + 21  # each choice counted
    assert all(c.usage is None for c in chunks[:-1])
    text = {0: "", 1: ""}
    for c in chunks[:-1]:
        for ch in c.choices:
            text[ch.index] += ch.delta.content or ""
    assert text == {0: f"{WORDS} s3", 1: f"{WORDS} s4"}
    roles = [ch.index for c in chunks for ch in c.choices if ch.delta.role == "assistant"]
    assert sorted(roles) == [0, 1]
    finishes = [
        (ch.index, ch.finish_reason) for c in chunks for ch in c.choices if ch.finish_reason
    ]
    assert sorted(finishes) == [(0, "stop"), (1, "stop")]
    assert {r.seed for r in lm.calls} == {3, 4}  # one request a choice, seeds apart


def test_a_plain_stream_through_an_upstream_and_one_that_breaks_midway() -> None:
    with upstream(marked) as up:
        engine = Engine(OpenAILM(up.url), scheduler=Scheduler(sleep=no_sleep))
        with running(create_app(engine)) as url:
            served = httpx.get(f"{url}/models").json()["data"][0]["id"]
            chunks = list(
                client(url).chat.completions.create(
                    model=served, messages=ask(), stream=True, seed=5
                )
            )
            pieces = [c.choices[0].delta.content for c in chunks if c.choices]
            assert "".join(p or "" for p in pieces) == "t5-0-0 t5-0-1 t5-0-2 \\boxed{5}"
            assert len([p for p in pieces if p]) == 4  # the upstream's chunks, as they came
            assert up.server.requests[-1][1]["stream"] is True
            # the upstream's stream breaks after three words: they were sent, so the request
            # is not tried again (it would send another text after them); the client is told
            body = {
                "model": served,
                "messages": ask("What? fault:truncate"),
                "stream": True,
            }
            with httpx.stream("POST", f"{url}/chat/completions", json=body) as r:
                datas = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
            assert datas[-1] == "[DONE]"
            error = json.loads(datas[-2])["error"]
            assert "stream broke after 3 tokens were sent" in error["message"]
            assert error["code"] == "backend_unavailable"


def test_a_backend_that_cannot_stream_sends_the_whole_text_at_the_end() -> None:
    lm = backend(stream=False)
    with serve(lm) as url:
        chunks = list(
            client(url).completions.create(model=MODEL, prompt="Say", stream=True, max_tokens=64)
        )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == WORDS


def test_stream_options_need_a_stream_and_are_checked() -> None:
    with serve(backend()) as url:
        for extra, param in [
            ({"stream_options": {"include_usage": True}}, "stream_options"),
            ({"stream": True, "stream_options": {"bogus": 1}}, "stream_options.bogus"),
        ]:
            r = httpx.post(
                f"{url}/chat/completions", json={"model": MODEL, "messages": ask(), **extra}
            )
            assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


# -- log-probabilities, max_completion_tokens ----------------------------------------------


def test_logprobs_pass_through_for_chat_and_completions_whole_or_streamed() -> None:
    with serve(backend()) as url:
        c = client(url)
        r = c.chat.completions.create(
            model=MODEL, messages=ask("Say"), logprobs=True, top_logprobs=2, max_tokens=5
        )
        lp = r.choices[0].logprobs
        assert lp is not None and lp.content is not None and len(lp.content) == 5
        assert "".join(t.token for t in lp.content) == r.choices[0].message.content
        for t in lp.content:
            assert t.logprob == -0.25 and t.bytes == list(t.token.encode())
            assert [a.token for a in t.top_logprobs] == [t.token, " alt"]  # the 2 likeliest
        # logprobs alone: each token's, with no alternatives
        r = c.chat.completions.create(model=MODEL, messages=ask("Say"), logprobs=True, max_tokens=3)
        assert [t.top_logprobs for t in r.choices[0].logprobs.content] == [[], [], []]  # type: ignore[union-attr]
        assert (
            c.chat.completions.create(model=MODEL, messages=ask("Say")).choices[0].logprobs is None
        )

        t = c.completions.create(model=MODEL, prompt="Say", logprobs=1, max_tokens=4)
        tl = t.choices[0].logprobs
        assert tl is not None and tl.tokens == ["w0", " w1", " w2", " w3"]
        assert "".join(tl.tokens) == t.choices[0].text and tl.token_logprobs == [-0.25] * 4
        assert tl.top_logprobs == [{tok: -0.25} for tok in tl.tokens]
        assert tl.text_offset == [0, 2, 5, 8]

        streamed = list(
            c.chat.completions.create(
                model=MODEL, messages=ask("Say"), logprobs=True, top_logprobs=1, stream=True
            )
        )
        tokens = [ch.choices[0] for ch in streamed if ch.choices and ch.choices[0].delta.content]
        assert all(len(x.logprobs.content) == 1 for x in tokens)  # type: ignore[union-attr]
        assert "".join(x.logprobs.content[0].token for x in tokens) == WORDS  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("model", "extra", "param", "says"),
    [
        (f"vote-2/{MODEL}", {"logprobs": True}, "logprobs", "plain model"),
        (MODEL, {"top_logprobs": 2}, "top_logprobs", "only with logprobs"),
        (MODEL, {"logprobs": True, "top_logprobs": 21}, "top_logprobs", "less than or equal"),
    ],
)
def test_logprobs_that_cannot_be_given_are_400_naming_the_field(
    model: str, extra: dict[str, Any], param: str, says: str
) -> None:
    with serve(backend()) as url:
        r = httpx.post(f"{url}/chat/completions", json={"model": model, "messages": ask(), **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert says in r.json()["error"]["message"]


def test_a_backend_without_logprobs_says_so() -> None:
    with serve(backend(logprobs=False)) as url:
        r = httpx.post(f"{url}/completions", json={"model": MODEL, "prompt": "x", "logprobs": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "logprobs"
    assert "no log-probabilities" in r.json()["error"]["message"]


def test_max_completion_tokens_is_the_limit_and_named_when_over_it() -> None:
    with serve(backend(), limits=Limits(max_tokens=100)) as url:
        r = client(url).chat.completions.create(
            model=MODEL, messages=ask("Say"), max_completion_tokens=3
        )
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3  # type: ignore[union-attr]
        assert r.choices[0].message.content == " ".join(WORDS.split()[:3])
        over = httpx.post(
            f"{url}/chat/completions",
            json={"model": MODEL, "messages": ask(), "max_completion_tokens": 101},
        )
    assert over.status_code == 413 and over.json()["error"]["param"] == "max_completion_tokens"
    assert "max_completion_tokens 101 exceeds" in over.json()["error"]["message"]


# -- fields ponder cannot honour -----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"temprature": 0.5}, "temprature"),  # a typo is not silently ignored either
    ],
)
def test_a_field_the_server_cannot_honour_is_400_naming_it(
    extra: dict[str, Any], param: str
) -> None:
    lm = backend()
    with serve(lm) as url:
        r = httpx.post(f"{url}/chat/completions", json={"model": MODEL, "messages": ask(), **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] == "unsupported_field"
    assert err["message"].startswith(f"{param}: ")
    assert lm.calls == []


def test_neutral_values_are_accepted_and_a_backends_own_fields_pass_through() -> None:
    neutral = {
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "user": "someone",
        "parallel_tool_calls": True,
    }
    lm = backend(fields=frozenset({"presence_penalty", "response_format"}))
    with serve(lm) as url:
        r = httpx.post(
            f"{url}/chat/completions", json={"model": MODEL, "messages": ask(), **neutral}
        )
        assert r.status_code == 200 and lm.calls[-1].extra is None
        body = {
            "model": MODEL,
            "messages": ask(),
            "presence_penalty": 0.5,
            "response_format": {"type": "json_object"},
        }
        r = httpx.post(f"{url}/chat/completions", json=body)
        assert r.status_code == 200
        assert lm.calls[-1].extra == {
            "presence_penalty": 0.5,
            "response_format": {"type": "json_object"},
        }
        # a strategy writes its own requests: the field cannot reach them
        r = httpx.post(f"{url}/chat/completions", json={**body, "model": f"vote-2/{MODEL}"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "presence_penalty"
        assert "plain model" in r.json()["error"]["message"]
        # a field the backend does not take is refused, and the message says what it takes
        r = httpx.post(f"{url}/chat/completions", json={**body, "frequency_penalty": 1})
        assert r.status_code == 400 and r.json()["error"]["param"] == "frequency_penalty"
        assert "presence_penalty, response_format" in r.json()["error"]["message"]


def test_an_upstream_gets_the_sampling_fields_it_is_sent() -> None:
    with upstream() as up:
        engine = Engine(OpenAILM(up.url), scheduler=Scheduler(sleep=no_sleep))
        with running(create_app(engine)) as url:
            served = httpx.get(f"{url}/models").json()["data"][0]["id"]
            r = client(url).chat.completions.create(
                model=served,
                messages=ask(),
                presence_penalty=0.5,
                extra_body={"top_k": 20, "repetition_penalty": 1.1},
            )
            assert r.choices[0].message.content
            sent = up.server.requests[-1][1]
            assert sent["presence_penalty"] == 0.5 and sent["top_k"] == 20
            assert sent["repetition_penalty"] == 1.1
            with pytest.raises(openai.BadRequestError, match="tools"):
                client(url).chat.completions.create(
                    model=served,
                    messages=ask(),
                    tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
                )


# -- /metrics ------------------------------------------------------------------------------

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})?'
    r" (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|Inf|NaN))$"
)


def parse(text: str) -> dict[str, dict[str, float]]:
    """Prometheus' text format, strictly: every line a comment or a sample; → name →
    {labels: value}; each sample's family declared by # TYPE before it."""
    out: dict[str, dict[str, float]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m is not None, f"not a sample line: {line!r}"
        name = m["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"{name} without # TYPE"
        out.setdefault(name, {})[m["labels"] or ""] = float(m["value"])
    return out


def test_metrics_count_requests_tokens_by_role_and_latency() -> None:
    lm = backend()
    keys = Keys.from_list(["sk-m"], Limits(), "test")
    with serve(lm, keys=keys) as url:
        c = openai.OpenAI(base_url=url, api_key="sk-m", max_retries=0)
        bills = [
            c.chat.completions.create(model=MODEL, messages=ask("Say")).usage,
            c.chat.completions.create(
                model=f"best_of_n-2/{MODEL}",
                messages=ask(),
                extra_body={"ponder": {"options": {"verifier": "self_judge"}}},
            ).usage,
        ]
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="nope", messages=ask())
        list(c.chat.completions.create(model=MODEL, messages=ask("Say"), stream=True))
        r = httpx.get(url.removesuffix("/v1") + "/metrics")  # (no key: as vLLM's)
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    m = parse(r.text)
    requests = m["ponder_requests_total"]
    chat = 'endpoint="/v1/chat/completions"'
    assert requests[f'{{{chat},strategy="none",status="200"}}'] == 2
    assert requests[f'{{{chat},strategy="best_of_n",status="200"}}'] == 1
    assert requests[f'{{{chat},strategy="-",status="404"}}'] == 1
    # every token the responses billed, by role (the stream's too: 20 completion tokens)
    tokens = m["ponder_tokens_total"]
    policy = tokens['{role="policy",kind="completion"}']
    verifier = tokens['{role="verifier",kind="completion"}']
    assert verifier > 0
    billed = sum(u.completion_tokens for u in bills if u is not None)
    assert policy + verifier == billed + 20
    assert m["ponder_backend_calls_total"]['{role="verifier"}'] == 2
    # a histogram whose buckets only grow, ending at its count
    buckets = [
        v
        for labels, v in m["ponder_request_duration_seconds_bucket"].items()
        if 'strategy="none"' in labels and chat in labels
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 2
    count = m["ponder_request_duration_seconds_count"]
    assert count[f'{{{chat},strategy="none"}}'] == 2
    assert m["ponder_requests_in_flight"][""] == 0 and m["ponder_requests_in_flight_peak"][""] >= 1


def test_an_upstreams_probe_at_start_up_is_in_metrics_and_on_no_request() -> None:
    with upstream() as up:
        engine = Engine(OpenAILM(up.url), scheduler=Scheduler(sleep=no_sleep))
        with running(create_app(engine)) as url:
            served = httpx.get(f"{url}/models").json()["data"][0]["id"]
            bill = client(url).chat.completions.create(model=served, messages=ask()).usage
            m = parse(httpx.get(url.removesuffix("/v1") + "/metrics").text)
    assert bill is not None and "probe" not in bill.model_extra["ponder"]["by_role"]
    # the fake answers each of the probe's 6 POSTs with 4 completion tokens (its chat call
    # of two choices lists 4 + 5)
    assert m["ponder_backend_calls_total"]['{role="probe"}'] == 6
    assert m["ponder_tokens_total"]['{role="probe",kind="completion"}'] == 29
    assert m["ponder_backend_calls_total"]['{role="policy"}'] == 1


def test_metrics_label_values_are_escaped() -> None:
    from ponder.serve.metrics import Metrics

    metrics = Metrics()
    metrics.request("other", 'we"ird\\n', 200, 0.5)
    text = metrics.render({"g": ("a gauge", math.inf)})
    assert 'strategy="we\\"ird\\\\n"' in text and "g +Inf" in text
    parse(text)


# -- a burst of streams against the in-flight limit ----------------------------------------


def test_500_concurrent_streams_never_run_more_than_max_in_flight() -> None:
    lm = backend(decode_s=0.005)  # each stream takes ~0.1 s of writing
    app = create_app(Engine(lm, scheduler=Scheduler(sleep=no_sleep)), max_in_flight=8)
    body = {"model": MODEL, "messages": ask("Say"), "stream": True}

    async def one(c: httpx.AsyncClient, url: str) -> tuple[int, str | None, list[str]]:
        check = await stream_once(c, url, body)
        return check.status, None, check.problems

    async def burst(url: str) -> list[tuple[int, str | None, list[str]]]:
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=120, limits=limits) as c:
            return list(await asyncio.gather(*(one(c, url) for _ in range(500))))

    with running(app) as url:
        results = asyncio.run(burst(url))
        r = httpx.post(f"{url}/chat/completions", json={**body, "stream": False})
        assert r.status_code == 200  # and it serves again once the burst is over
    statuses = Counter(s for s, _, _ in results)
    assert set(statuses) <= {200, 429}, statuses  # the rest refused, nothing failed
    assert statuses[200] >= 8 and statuses[429] > 0, statuses
    assert [p for s, _, p in results if s == 200 and p] == []  # every admitted stream whole
    assert app.state.ponder.gate.peak == 8  # never more than 8 running
    assert lm.max_in_flight <= 8
    assert app.state.ponder.in_flight == 0
