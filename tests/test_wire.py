from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest

from ponder.errors import BackendError, TransientError
from ponder.lm.protocol import Capabilities
from ponder.lm.wire import Calls, StreamedChoice, parse_generation, stream_choice
from ponder.types import GenRequest, Message, TokenLogprob


def choice(i: int, tokens: list[str], finish: str = "stop") -> dict[str, Any]:
    return {
        "index": i,
        "text": "".join(tokens),
        "finish_reason": finish,
        "logprobs": {"content": [{"token": t, "logprob": -0.5} for t in tokens]},
    }


def body(*choices: dict[str, Any]) -> dict[str, Any]:
    return {"choices": list(choices), "usage": {"prompt_tokens": 9, "completion_tokens": 3}}


def test_each_choice_counts_its_own_logprobs_not_the_shared_usage() -> None:
    gen = parse_generation(
        body(choice(1, ["a", "b", ""]), choice(0, ["x", ""])),
        where="w",
        want_logprobs=False,
        count_from_logprobs=True,
    )
    assert [c.text for c in gen.choices] == ["x", "ab"]  # ordered by index
    assert [c.completion_tokens for c in gen.choices] == [2, 3]
    assert gen.choices[0].logprobs is None and gen.prompt_tokens == 9


def test_stop_string_tokens_trimmed_by_llamacpp_are_added_back() -> None:
    gen = parse_generation(
        body(
            choice(0, ["a", ""]),  # ended on end-of-generation: counted as shown
            choice(1, ["a", "b"]),  # cut by a stop string (2 tokens, trimmed from logprobs)
            {"index": 2, "text": "", "finish_reason": "stop", "logprobs": None},  # cut at once
            choice(3, ["a", "b", "c"], finish="length"),
        ),
        where="w",
        want_logprobs=True,
        count_from_logprobs=True,
        stop_tokens=2,
        max_tokens=3,
    )
    assert [c.completion_tokens for c in gen.choices] == [2, 3, 2, 3]  # 2+2 capped at 3


@pytest.mark.parametrize("finish", ["length", "stop"])
def test_missing_logprobs_without_a_stop_is_a_transient_error(finish: str) -> None:
    with pytest.raises(TransientError, match="without logprobs"):
        parse_generation(
            body({"index": 0, "text": "x", "finish_reason": finish, "logprobs": None}),
            where="w",
            want_logprobs=False,
            count_from_logprobs=True,
        )


def test_server_errors_in_the_body() -> None:
    with pytest.raises(TransientError, match="503"):
        parse_generation(
            {"error": {"code": 503, "message": "busy"}},
            where="w",
            want_logprobs=False,
            count_from_logprobs=False,
        )
    with pytest.raises(BackendError, match=r"refused \(400\)"):
        parse_generation(
            {"error": {"code": 400, "message": "bad"}},
            where="w",
            want_logprobs=False,
            count_from_logprobs=False,
        )


def test_requests_with_stop_strings_fan_out_unless_the_backend_counts_them() -> None:
    plain = GenRequest(prompt="p", n=4)
    stopped = GenRequest(prompt="p", n=4, stop=["x"])
    assert Capabilities(n=True).native_n(plain)
    assert not Capabilities(n=True).native_n(stopped)
    assert Capabilities(n=True, n_with_stop=True).native_n(stopped)
    # with two stop strings, which one cut a choice is not said: its trimmed tokens unknown
    assert not Capabilities(n=True, n_with_stop=True).native_n(replace(stopped, stop=["x", "yz"]))
    assert not Capabilities(n=False, n_with_stop=True).native_n(plain)
    assert Capabilities(n=False).native_n(GenRequest(prompt="p", n=1, stop=["x"]))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "exactly one of `messages` or `prompt`"),
        ({"prompt": "p", "messages": [Message(role="user", content="q")]}, "exactly one"),
        ({"prompt": "p", "n": 0}, "n=0"),
        ({"prompt": "p", "max_tokens": 0}, "max_tokens=0"),
        ({"prompt": "p", "temperature": -0.1}, "temperature"),
        ({"prompt": "p", "top_p": 0.0}, "top_p"),
        ({"prompt": "p", "top_logprobs": 21}, "top_logprobs"),
        ({"prompt": "p", "slot": -1}, "slot"),
    ],
)
def test_a_bad_request_is_refused_naming_what_is_wrong(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        GenRequest(**fields)
    good = GenRequest(prompt="p", n=2)
    with pytest.raises(ValueError):  # a change is checked again
        replace(good, n=0)


# -- a stream stopped by its watch ---------------------------------------------------------------
def sse(*chunks: dict[str, Any]) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )


def token_chunk(token: str, predicted: int | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "choices": [{"index": 0, "delta": {"content": token}, "logprobs": {"content": [lp(token)]}}]
    }
    if predicted is not None:  # llama.cpp's timings_per_token: its count so far
        chunk["timings"] = {"prompt_n": 7, "cache_n": 2, "predicted_n": predicted}
    return chunk


def lp(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.1, "top_logprobs": [{"token": token, "logprob": -0.1}]}


async def streamed(
    chunks: list[dict[str, Any]], stop_at: int, stream_options: dict[str, Any] | None = None
) -> tuple[StreamedChoice, bool, dict[str, Any]]:
    sent: dict[str, Any] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        sent.update(json.loads(request.content))
        return httpx.Response(200, content=sse(*chunks))

    async with httpx.AsyncClient(
        base_url="http://server", transport=httpx.MockTransport(answer)
    ) as client:
        seen: list[TokenLogprob] = []

        def watch(token: TokenLogprob) -> bool:
            seen.append(token)
            return len(seen) == stop_at

        body: dict[str, Any] = {"messages": [], "max_tokens": 10}
        if stream_options is not None:
            body["stream_options"] = stream_options
        choice, stopped = await stream_choice(
            Calls(client), "/chat/completions", body, where="w", watch=watch
        )
    return choice, stopped, sent


async def test_a_stopped_stream_is_charged_what_the_server_decoded_not_what_it_sent() -> None:
    # llama.cpp held back "\n" (a possible stop string's start): by the third token it sent,
    # its own count was five
    chunks = [token_chunk("a", 1), token_chunk("b", 2), token_chunk("c", 5), token_chunk("d", 6)]
    choice, stopped, _ = await streamed(chunks, stop_at=3)
    assert stopped and len(choice.logprobs) == 3
    charged = choice.completion(stopped=True, want_logprobs=False)
    assert charged.completion_tokens == 5 and charged.finish_reason == "stopped"
    # and the one it decodes before it sees the connection close, never past max_tokens
    after = choice.completion(stopped=True, want_logprobs=False, decoded_after_close=1)
    assert after.completion_tokens == 6
    capped = choice.completion(
        stopped=True, want_logprobs=False, decoded_after_close=1, max_tokens=5
    )
    assert capped.completion_tokens == 5
    assert choice.prompt_tokens == 9 and choice.cached_tokens == 2


async def test_a_stopped_stream_without_a_server_count_is_charged_the_tokens_received() -> None:
    choice, stopped, sent = await streamed([token_chunk(t) for t in "abcd"], stop_at=2)
    assert stopped
    assert choice.completion(stopped=True, want_logprobs=False).completion_tokens == 2
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_a_callers_stream_options_reach_the_server() -> None:
    # e.g. vLLM's running count per chunk; stream_choice used to replace the options
    _, _, sent = await streamed(
        [token_chunk("a")], stop_at=1, stream_options={"continuous_usage_stats": True}
    )
    assert sent["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
