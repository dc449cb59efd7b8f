"""The plain data types everything meets at."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    role: Role
    content: str


class Problem(BaseModel):
    """A question to answer; `gold` is the reference answer when known (benchmarks)."""

    question: str
    id: str = ""
    gold: str | None = None
    system: str | None = None
    # The answer kind (number, math, choice, code) that extraction and equivalence use;
    # None: the engine's default (a boxed value, else the last number).
    kind: str | None = None
    # Task data a grader or verifier needs (unit tests, puzzle numbers, choices).
    meta: dict[str, Any] = Field(default_factory=dict)


class GenRequest(BaseModel):
    """One generation request: chat `messages`, or a raw `prompt` to continue verbatim."""

    messages: list[Message] | None = None
    prompt: str | None = None
    n: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    top_logprobs: int = Field(default=0, ge=0, le=20)
    role: str = "policy"
    # Continue the last (assistant) message instead of starting a new turn: how step search
    # extends a partial solution on chat-only servers (vLLM's continue_final_message).
    continue_final: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> GenRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a GenRequest needs exactly one of `messages` or `prompt`")
        if self.continue_final and (not self.messages or self.messages[-1].role != "assistant"):
            raise ValueError("continue_final needs messages ending with an assistant message")
        return self

    def input_text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        assert self.messages is not None
        return "\n".join(m.content for m in self.messages)


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Completion(BaseModel):
    """One choice. `completion_tokens` is counted per choice, never taken from a shared total."""

    text: str
    completion_tokens: int
    finish_reason: str = "stop"
    logprobs: list[TokenLogprob] | None = None


class Generation(BaseModel):
    """What a backend returns for one GenRequest: all n choices and the prompt's token counts."""

    choices: list[Completion]
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)


class Usage(BaseModel):
    """Compute spent (or reserved). Adding two usages adds every field."""

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    dollars: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    # Sums of valid usages need no validation (the ledger adds them on every call).
    def __add__(self, other: Usage) -> Usage:
        return Usage.model_construct(
            **{k: getattr(self, k) + getattr(other, k) for k in _USAGE_FIELDS}
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage.model_construct(
            **{k: getattr(self, k) - getattr(other, k) for k in _USAGE_FIELDS}
        )

    @staticmethod
    def total_of(usages: Iterable[Usage]) -> Usage:
        return sum(usages, Usage())


_USAGE_FIELDS = tuple(Usage.model_fields)


class Charge(BaseModel):
    """One ledger line: a call charged to a role."""

    role: str
    model: str
    usage: Usage


class Candidate(BaseModel):
    """One finished attempt. `note` says why it has no answer or no score, when it has none."""

    text: str
    answer: str | None = None
    completion_tokens: int = 0
    finish_reason: str = "stop"
    score: float | None = None
    note: str | None = None
    # Program-aided answering: the program's printed answer and the reasoning's own answer.
    program_answer: str | None = None
    reasoning_answer: str | None = None


class Result(BaseModel):
    """What a strategy returns: the answer, every candidate, and the whole compute bill."""

    question: str
    answer: str | None
    strategy: str
    config: dict[str, Any] = Field(default_factory=dict)
    candidates: list[Candidate] = Field(default_factory=list)
    usage: dict[str, Usage] = Field(default_factory=dict)
    ledger: list[Charge] = Field(default_factory=list)
    seed: int | None = None
    model: str = ""
    seconds: float = 0.0
    stopped: str | None = None
    error: str | None = None
    info: dict[str, Any] = Field(default_factory=dict)

    @property
    def total(self) -> Usage:
        return Usage.total_of(self.usage.values())

    def to_json(self, indent: int | None = 2) -> str:
        data = self.model_dump(mode="json")
        data["usage"]["total"] = self.total.model_dump(mode="json")
        return json.dumps(data, indent=indent, ensure_ascii=False)


class ModelInfo(BaseModel):
    """What the ledger needs to know about a model: its size (for FLOPs) and its prices."""

    name: str
    parameters: int = 0
    usd_per_mtok_prompt: float = 0.0
    usd_per_mtok_cached: float = 0.0
    usd_per_mtok_completion: float = 0.0

    def flops(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        # ≈ 2 × parameters per token processed; cached prompt tokens are not recomputed.
        return 2.0 * self.parameters * (prompt_tokens - cached_tokens + completion_tokens)

    def dollars(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        return (
            (prompt_tokens - cached_tokens) * self.usd_per_mtok_prompt
            + cached_tokens * self.usd_per_mtok_cached
            + completion_tokens * self.usd_per_mtok_completion
        ) / 1e6
