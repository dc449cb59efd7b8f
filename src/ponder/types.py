"""The plain data types everything meets at."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SkipValidation, computed_field

Role = Literal["system", "user", "assistant"]
# How a sample answers. reasoning: chain of thought; program: PAL (the sandbox runs the model's
# program); both: CoT and a program for a cross-check; tir: Python called mid-reasoning;
# no_cot: the answer alone
AnswerWith = Literal["reasoning", "program", "both", "tir", "no_cot"]


SEED_LIMIT = 2**63  # seeds are in [0, SEED_LIMIT): a store keeps them as SQLite integers


def blank(text: str) -> bool:
    """No visible character: only whitespace, control and format characters (a zero-width
    space, a byte-order mark), which a model reads as an empty question."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


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


@dataclass(slots=True)
class GenRequest:
    """One generation request: chat `messages`, or a raw `prompt` to continue verbatim.

    Plain (slotted) data checked on construction: strategies build one or two per search
    node, and pydantic's validation was a large share of the engine's own cost. Change one
    with `dataclasses.replace`, which checks again."""

    messages: list[Message] | None = None
    prompt: str | None = None
    n: int = 1
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    top_logprobs: int = 0
    role: str = "policy"
    # the whole completion is thinking (a thinking budget's rounds): counted as reasoning
    reasoning: bool = False
    # Continue the last (assistant) message instead of starting a new turn: how step search
    # extends a partial solution on chat-only servers (vLLM's continue_final_message).
    continue_final: bool = False
    # The backend slot to run on: set by the scheduler's router for backends that pin
    # requests to slots (Capabilities.pin_slots), never by strategies.
    slot: int | None = None
    # Request fields handed to the backend as a client gave them (`ponder serve`'s
    # pass-through: OpenAI fields such as presence_penalty or response_format, only those the
    # backend lists in Capabilities.request_fields).
    extra: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a GenRequest needs exactly one of `messages` or `prompt`")
        if self.continue_final and (not self.messages or self.messages[-1].role != "assistant"):
            raise ValueError("continue_final needs messages ending with an assistant message")
        if self.n < 1 or self.max_tokens < 1:
            raise ValueError(f"GenRequest n={self.n} and max_tokens={self.max_tokens}: both ≥ 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"GenRequest temperature must be ≥ 0 and top_p in (0, 1] "
                f"(temperature={self.temperature}, top_p={self.top_p})"
            )
        if not 0 <= self.top_logprobs <= 20 or (self.slot is not None and self.slot < 0):
            raise ValueError(
                f"GenRequest top_logprobs must be in [0, 20] and slot ≥ 0 "
                f"(top_logprobs={self.top_logprobs}, slot={self.slot})"
            )

    def input_text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        assert self.messages is not None
        return "\n".join(m.content for m in self.messages)


# What a backend returns is plain (slotted) data: backends build it from parsed responses on
# every call, and pydantic's validation was a large share of the engine's own cost.


@dataclass(slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)  # (arrays: compared by identity)
class TokenStats:
    """Per-token arrays of one trace (float32, one entry per token with log-probabilities)."""

    confidence: np.ndarray
    entropy: np.ndarray
    certainty: np.ndarray
    logprob: np.ndarray
    k: int  # the most alternatives any token came with

    def __len__(self) -> int:
        return int(self.confidence.shape[0])

    def to_bytes(self) -> bytes:
        """A compact form for the store: float16 arrays, k in the first byte."""
        stacked = np.stack([self.confidence, self.entropy, self.certainty, self.logprob])
        return bytes([self.k]) + stacked.astype(np.float16).tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> TokenStats:
        k = blob[0]
        arr = np.frombuffer(blob[1:], dtype=np.float16).astype(np.float32).reshape(4, -1)
        return cls(arr[0], arr[1], arr[2], arr[3], k)


class ToolCall(BaseModel):
    """One Python call made in the middle of a sample (tool-integrated reasoning)."""

    code: str
    output: str  # what the model was shown (cut to a limit, and said so)
    ok: bool
    seconds: float = 0.0
    reason: str | None = None  # why it failed: a limit, an exit code
    truncated: bool = False


@dataclass(slots=True)
class Completion:
    """One choice. `completion_tokens` is counted per choice, never taken from a shared total."""

    text: str
    completion_tokens: int
    finish_reason: str = "stop"
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None  # what the model thought, when the server says it apart


@dataclass(slots=True)
class Generation:
    """What a backend returns for one GenRequest: all n choices and the prompt's token counts."""

    choices: list[Completion]
    prompt_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0  # of the completion tokens, those the server says were thinking

    @property
    def completion_tokens(self) -> int:
        total = 0
        for c in self.choices:  # (a loop: read on every call the scheduler charges)
            total += c.completion_tokens
        return total


class Usage(BaseModel):
    """Compute spent (or reserved). Adding two usages adds every field."""

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    dollars: float = 0.0
    # of the completion tokens, those spent thinking (OpenAI's and vLLM's reasoning_tokens)
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    # (pydantic's validated constructor is faster than model_construct for a model this small)
    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in USAGE_FIELDS})

    def __sub__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) - getattr(other, k) for k in USAGE_FIELDS})

    @staticmethod
    def total_of(usages: Iterable[Usage]) -> Usage:
        return sum(usages, Usage())


USAGE_FIELDS = tuple(Usage.model_fields)  # the order of a LedgerLine's values


class Charge(BaseModel):
    """One ledger line: a call charged to a role."""

    role: str
    model: str
    usage: Usage

    @classmethod
    def of(cls, line: LedgerLine) -> Charge:
        role, model, values = line
        return cls(
            role=role, model=model, usage=Usage(**dict(zip(USAGE_FIELDS, values, strict=True)))
        )


# A ledger line as the ledger keeps it: role, model, the Usage's field values in order (a
# tuple of strings and numbers, which Python's cyclic GC does not track).
LedgerLine = tuple[str, str, tuple[float, ...]]


class Signals(BaseModel):
    """A trace's confidence scores (higher = more confident), or why it has none."""

    scores: dict[str, float] = Field(default_factory=dict)
    note: str | None = None

    def get(self, name: str) -> float | None:
        return self.scores.get(name)


class Candidate(BaseModel):
    """One finished attempt. `note` says why it has no answer or no score, when it has none."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str
    answer: str | None = None
    completion_tokens: int = 0
    finish_reason: str = "stop"
    score: float | None = None
    note: str | None = None
    # Program-aided answering: the program's printed answer and the reasoning's own answer.
    program_answer: str | None = None
    reasoning_answer: str | None = None
    # Confidence from the candidate's own token log-probabilities (ponder.signals), and the
    # per-token statistics they were read from (kept for the store and for rules that read
    # other windows; left out of JSON: hundreds of numbers per candidate).
    signals: Signals | None = None
    stats: SkipValidation[TokenStats | None] = Field(default=None, exclude=True, repr=False)
    # Python calls made while it was written (tool-integrated reasoning), in order.
    tool_calls: list[ToolCall] = Field(default_factory=list)
    # What the model thought before answering, when a server returns it apart from `text`.
    reasoning: str | None = None

    @property
    def answer_in_text(self) -> bool:
        """Whether its own words give its answer (not only a program's printed output)."""
        return self.program_answer is None or self.reasoning_answer == self.answer


class Result(BaseModel):
    """What a strategy returns: the answer, every candidate, and the whole compute bill."""

    question: str
    answer: str | None
    strategy: str
    config: dict[str, Any] = Field(default_factory=dict)
    candidates: list[Candidate] = Field(default_factory=list)
    usage: dict[str, Usage] = Field(default_factory=dict)
    seed: int | None = None
    model: str = ""
    seconds: float = 0.0
    stopped: str | None = None
    error: str | None = None
    info: dict[str, Any] = Field(default_factory=dict)
    # Every call charged, as the ledger's compact lines (`ledger` builds them when read); the
    # ledger made them, so they are not validated again (a search's thousands cost more to
    # check than the rest of its Result)
    lines: SkipValidation[list[LedgerLine]] = Field(default_factory=list, exclude=True, repr=False)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def ledger(self) -> list[Charge]:
        """Every call charged, in order (each the role, model and usage of one call)."""
        return [Charge.of(line) for line in self.lines]

    @property
    def total(self) -> Usage:
        return Usage.total_of(self.usage.values())

    def carrier(self) -> Candidate | None:
        """The candidate whose text carries the answer: the first that reached it in its own
        words, else (an answer only a program's printed output gave) the first that reached
        it; None when no candidate has the answer."""
        if self.answer is None:
            return None
        having = [c for c in self.candidates if c.answer == self.answer]
        return next((c for c in having if c.answer_in_text), having[0] if having else None)

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
