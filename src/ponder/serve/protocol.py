"""The OpenAI wire format ponder serves: requests (with the `ponder` extension), responses,
stream chunks and errors."""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ponder.runtime.budget import Budget
from ponder.types import Result, TokenLogprob, Usage


class ApiError(Exception):
    """An error the client gets in OpenAI's format, with its HTTP status (and `retry_after`
    seconds, sent as `Retry-After`)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = (
            status,
            message,
            param,
            kind,
            code,
        )
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        if self.retry_after is None:
            return None
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(
    message: str, kind: str, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# Every request model is strict: a JSON true is not 1 and "5" is not 5 (as OpenAI's API
# refuses them), and NaN or Infinity, which Python's JSON reader takes, is not a number.
STRICT = ConfigDict(strict=True, allow_inf_nan=False)


def whole_text(value: object) -> object:
    """A field's text (or list of texts) as given, unless it holds half of a surrogate pair:
    JSON's \\ud800 escape alone, which no tokenizer and no UTF-8 encoder takes."""
    for text in value if isinstance(value, list) else [value]:
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    "holds half of a surrogate pair (a \\ud800-\\udfff escape alone), not text"
                ) from None
    return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow", **STRICT)
    type: Literal["text"]
    text: str

    _text = field_validator("text", mode="before")(whole_text)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", **STRICT)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, v: object) -> object:
        # said here, not as pydantic's error for each branch of the union
        for i, part in enumerate(v if isinstance(v, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise ValueError(f"part {i} is of type {kind!r}; ponder reads text parts only")
        return whole_text(v)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class RequestBudget(Budget):
    """`ponder.budget`: a misspelt cap is a 400 here, never a cap silently missing."""

    model_config = ConfigDict(extra="forbid", **STRICT)


class PonderOptions(BaseModel):
    """`extra_body={"ponder": {...}}`: the strategy and its compute, as plain data."""

    model_config = ConfigDict(extra="forbid", **STRICT)
    strategy: str | None = None
    n: int | None = Field(default=None, ge=1)
    budget: RequestBudget | None = None
    # the strategy's own options (e.g. {"m": 2, "verifier": "self_judge"})
    options: dict[str, Any] = Field(default_factory=dict)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", **STRICT)
    include_usage: bool = Field(
        default=False, description="end the stream with a chunk holding the request's usage"
    )


# OpenAI fields ponder does not implement itself that change nothing at these values (what
# some clients send by default): accepted. At any other value such a field needs a backend
# that takes it (Capabilities.request_fields), and a plain request, which passes it through.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "tools": ([],),
    "functions": ([],),
    "tool_choice": ("none", "auto"),
    "function_call": ("none", "auto"),
    "parallel_tool_calls": (True, False),
    "response_format": ({"type": "text"},),
    "echo": (False,),
    "best_of": (1,),
    "suffix": ("",),
    "top_k": (-1, 0),
    "min_p": (0,),
    "repetition_penalty": (1,),
    "modalities": (["text"],),
    "store": (False,),
    "metadata": ({},),
    "service_tier": ("auto", "default"),
}


class Sampling(BaseModel):
    """The request fields every route shares. A field ponder does not implement is refused
    with a 400 naming it (`passed_fields`), unless it changes nothing at the value given or
    the request passes through to a backend that takes it."""

    model_config = ConfigDict(extra="allow", **STRICT)
    model: str = Field(
        min_length=1,
        description="STRATEGY[-N]/MODEL runs a strategy (see /v1/models); MODEL passes through",
        examples=["vote-8/qwen2.5-coder-0.5b", "beam-4/qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b"],
    )
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)  # (at most the key's max_n: 413 past it)
    stop: str | list[str] | None = None
    _stop = field_validator("stop", mode="before")(whole_text)

    @field_validator("n", "stream", mode="before")
    @classmethod
    def _null_is_the_default(cls, v: object, info: ValidationInfo) -> object:
        # OpenAI's API reads null as the default here, as for temperature or seed
        name = info.field_name or ""
        return cls.model_fields[name].default if v is None else v

    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, description="the end user, for the client's records")
    ponder: PonderOptions | None = None

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def completion_limit(self) -> tuple[int | None, str]:
        """The completion tokens asked for, and the field that asked."""
        both = self.max_completion_tokens is not None and self.max_tokens is not None
        if both and self.max_tokens != self.max_completion_tokens:
            raise ApiError(
                400,
                f"max_tokens ({self.max_tokens}) and max_completion_tokens "
                f"({self.max_completion_tokens}) differ; give one",
                param="max_tokens",
            )
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"

    def logprobs_asked(self) -> int | None:
        """The top alternatives asked for with each token's log-probability (None: none)."""
        return None

    def usage_chunk(self) -> bool:
        """Whether a stream ends with a usage chunk (`stream_options.include_usage`)."""
        if self.stream_options is not None and not self.stream:
            raise ApiError(400, "stream_options: only with stream: true", param="stream_options")
        return self.stream_options is not None and self.stream_options.include_usage

    def passed_fields(self, takes: frozenset[str], strategy: bool) -> dict[str, Any]:
        """The request's fields beyond ponder's own that go to the backend as given (those
        it `takes`, on a plain request); a 400 naming the first other one, unless its value
        changes nothing (`NEUTRAL`)."""
        out: dict[str, Any] = {}
        for name, value in (self.model_extra or {}).items():
            if value is None or any(value == v for v in NEUTRAL.get(name, ())):
                continue
            if name in takes and not strategy:
                out[name] = value
                continue
            if name in takes:
                why = "a strategy writes its own requests; it passes through with the plain model"
            elif takes:
                why = f"not supported here (this backend takes: {', '.join(sorted(takes))})"
            else:
                why = "not supported by this server and its backend"
            raise ApiError(400, f"{name}: {why}", param=name, code="unsupported_field")
        return out


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(
        min_length=1, examples=[[{"role": "user", "content": "What is 20 + 22?"}]]
    )
    logprobs: bool | None = Field(default=None, description="each token's log-probability")
    top_logprobs: int | None = Field(
        default=None, ge=0, le=20, description="with logprobs: the most likely tokens at each"
    )

    def logprobs_asked(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs: only with logprobs: true", param="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(Sampling):
    prompt: str | list[str] = Field(examples=["What is 20 + 22?"])

    _prompt = field_validator("prompt", mode="before")(whole_text)
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="each token's log-probability and this many most likely tokens at each",
    )

    def logprobs_asked(self) -> int | None:
        return self.logprobs

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(400, "prompt: give one prompt per request", param="prompt")
        return self.prompt[0]


def new_id(kind: Literal["chat", "text"]) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(12)


def usage_body(total: Usage, ponder: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "total_tokens": total.total_tokens,
        "prompt_tokens_details": {"cached_tokens": total.cached_tokens},
    }
    if ponder is not None:
        body["ponder"] = ponder
    return body


def bill(by_role: dict[str, Usage], seconds: float) -> dict[str, Any]:
    """What a request spent, by role and in all: calls, FLOPs, dollars, wall seconds."""
    total = Usage.total_of(by_role.values())
    return {
        "by_role": {role: u.model_dump() for role, u in by_role.items()},
        "calls": total.calls,
        "flops": total.flops,
        "dollars": total.dollars,
        "seconds": round(seconds, 4),
    }


def ponder_usage(result: Result, chosen_score: float | None) -> dict[str, Any]:
    """The `usage.ponder` breakdown: by role, FLOPs, seconds, the strategy, and how strongly
    the answer was chosen (its share of the vote or weight, its score)."""
    return {
        "strategy": result.strategy,
        "config": result.config,
        **bill(result.usage, result.seconds),
        "answer": result.answer,
        "vote_share": vote_share(result),
        "score": chosen_score,
        "candidates": len(result.candidates),
        "stopped": result.stopped,
        "error": result.error,
    }


def vote_share(result: Result) -> float | None:
    """The chosen answer's share of the votes (or of the vote weight)."""
    if result.answer is None:
        return None
    totals = result.info.get("votes") or result.info.get("weights")
    if isinstance(totals, dict) and totals:
        whole = sum(float(v) for v in totals.values())
        return float(totals.get(result.answer, 0.0)) / whole if whole else None
    answered = [c for c in result.candidates if c.answer is not None]
    if not answered:
        return None
    return sum(c.answer == result.answer for c in answered) / len(answered)


def chosen_text(result: Result) -> tuple[str, float | None]:
    """The text that carries the answer (`Result.carrier`) and its score. When only a
    program's printed output gave the answer, the program is followed by that answer, so a
    client reading the message's end reads the answer, not the program's last number."""
    carrier = result.carrier()
    if carrier is not None:
        if not carrier.answer_in_text:
            return f"{carrier.text.rstrip()}\n\nThe program prints: {result.answer}", carrier.score
        return carrier.text, carrier.score
    if result.candidates and result.answer is None:
        return result.candidates[0].text, result.candidates[0].score
    return "", None


def _top(t: TokenLogprob, k: int) -> list[tuple[str, float]]:
    return sorted(t.top.items(), key=lambda kv: -kv[1])[:k]


def chat_logprobs(tokens: list[TokenLogprob], k: int) -> dict[str, Any]:
    """Tokens as a chat choice's `logprobs` (each with its `k` most likely alternatives)."""
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.token.encode()),
                "top_logprobs": [
                    {"token": a, "logprob": lp, "bytes": list(a.encode())} for a, lp in _top(t, k)
                ],
            }
            for t in tokens
        ]
    }


def text_logprobs(tokens: list[TokenLogprob], k: int, offset: int = 0) -> dict[str, Any]:
    """Tokens as a completion choice's `logprobs` (`offset`: where the first one starts in
    the choice's text)."""
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(_top(t, k)) for t in tokens],
        "text_offset": offsets,
    }


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


def now() -> int:
    return int(time.time())
