from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from ponder.errors import BackendError, TransientError
from ponder.lm.protocol import Capabilities
from ponder.lm.wire import parse_generation
from ponder.types import GenRequest, Message


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
