"""The one contract every language-model backend meets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from ponder.lm.config import BackendConfig
from ponder.plugins import Registry
from ponder.types import Generation, GenRequest, Message, ModelInfo, TokenLogprob, Usage

# Told of each token as it is generated; True: stop the generation now (this token included).
Watch = Callable[[TokenLogprob], bool]


class Capabilities(BaseModel):
    """What a backend can do natively. The scheduler sizes concurrency by `slots`."""

    n: bool = True
    logprobs: bool = True
    raw_prefix: bool = True
    # Continues a final assistant message (chat-only servers' way to extend a partial text).
    continue_final: bool = False
    # Renders its chat template for raw prompts (`LanguageModel.render`): a step search then
    # continues the rendered text itself, and a judge continues the writer's own prefix.
    render: bool = True
    context_length: int = 4096
    slots: int = 8
    # Whether each choice of an n > 1 request with one stop string can still be counted
    # exactly. (llama.cpp leaves the stop string's tokens out of a choice's logprobs, and we
    # add them back; with several stop strings it does not say which one cut a choice, so
    # such requests, like any on a backend that cannot add them back, are fanned out as
    # single ones, whose `usage` is exact.)
    n_with_stop: bool = False
    # Runs a request on the slot it names (GenRequest.slot) and keeps a prefix cache per slot
    # (llama.cpp's id_slot): the scheduler then places requests by what each slot holds.
    pin_slots: bool = False
    # Streams a single choice token by token with its log-probabilities and stops the
    # generation for real when told to (`LanguageModel.stream`): its slot is freed and only
    # the tokens written so far are charged.
    stream: bool = False
    # How a partial solution is continued (ponder.lm.continuation: "apply-template",
    # "tokenize", "local-template", "continue-final", "prefill-echo"; None: unknown or no way),
    # and what a probe tried to find it, each method with what it saw.
    continuation: str | None = None
    continuation_note: str | None = None
    # OpenAI request fields beyond ponder's own (presence_penalty, response_format, …) that
    # the backend takes as given (GenRequest.extra): `ponder serve` passes them through for
    # plain requests and refuses the ones not listed.
    request_fields: frozenset[str] = frozenset()

    def native_n(self, req: GenRequest) -> bool:
        """Whether `req` goes to the backend as one request with n choices."""
        return req.n == 1 or (
            self.n and (not req.stop or (self.n_with_stop and len(req.stop) == 1))
        )


@runtime_checkable
class LanguageModel(Protocol):
    info: ModelInfo
    capabilities: Capabilities

    async def prepare(self) -> Capabilities:
        """Learn what the backend supports (e.g. probe a server) before the first request.
        Idempotent; may raise TransientError to be retried."""
        ...

    async def generate(self, req: GenRequest) -> Generation:
        """All `req.n` choices, each with its own token count. Called with n > 1 only when
        `capabilities.n`. Raises TransientError to be retried, BackendError otherwise."""
        ...

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        """One choice (`req.n == 1`), `watch` told of every token as it comes; when it says
        stop, the generation stops on the backend and the choice comes back with what was
        written, `finish_reason` "stopped", and exactly that many completion tokens. Only
        when `capabilities.stream`; BackendError otherwise."""
        ...

    async def render(self, messages: list[Message]) -> str:
        """The chat template applied to `messages`, ending where the assistant's reply begins
        (a raw prompt that continues them). Only when `capabilities.render`; BackendError
        otherwise."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class CountsTokens(Protocol):
    """A backend that offers its model's tokenizer (an optional extra to LanguageModel)."""

    async def count_tokens(self, text: str) -> int:
        """How many tokens `text` is to the model (no special tokens added). Raises
        BackendError if the tokenizer cannot be reached."""
        ...


@runtime_checkable
class SpendsToPrepare(Protocol):
    """A backend whose `prepare` spends tokens (a server's capability probe: a few short
    generations), an optional extra to LanguageModel. The scheduler charges what it spent
    to the solve whose first call prepared it (role "probe"), and what it spends preparing
    again later (a replica back up) to the call after it; `ponder serve` counts a start-up
    probe in /metrics. So every token ponder makes a server generate is on a bill."""

    def take_probe_usage(self) -> Usage:
        """What preparing spent that no bill carries yet: calls, prompt, cached and
        completion tokens, seconds (the caller adds FLOPs and dollars). Zero after it is
        taken: each probe is billed once."""
        ...


def probe_taker(lm: object) -> Callable[[], Usage] | None:
    """How to take what `lm` spent preparing (`SpendsToPrepare.take_probe_usage`), or None
    for a backend that spends nothing to prepare (asked once: the scheduler keeps it)."""
    return lm.take_probe_usage if isinstance(lm, SpendsToPrepare) else None


def probe_usage(lm: object) -> Usage:
    """What `lm` spent preparing that no bill carries yet (taken: zero after), or nothing
    for a backend that spends nothing to prepare."""
    take = probe_taker(lm)
    return take() if take is not None else Usage()


# Fetching a model: (stage, bytes done, bytes in all), for a progress bar.
Progress = Callable[[str, int, int], None]
BackendFactory = Callable[[BackendConfig, Progress | None], LanguageModel]

BACKENDS: Registry[BackendFactory] = Registry(
    "backend",
    "ponder.backends",
    ("ponder.lm.llamacpp", "ponder.lm.openai", "ponder.lm.vllm", "ponder.lm.scripted"),
)


def backend(
    name: str,
    *,
    summary: str,
    capabilities: set[str] | None = None,
    options: type[BaseModel] | None = None,
) -> Callable[[BackendFactory], BackendFactory]:
    """Register a backend factory `(config, progress) -> LanguageModel` as `name`; `options`
    describes its own settings (`BackendConfig.options`, `--backend-option`) when it has
    some."""

    def register(factory: BackendFactory) -> BackendFactory:
        BACKENDS.add(
            name,
            factory,
            summary=summary,
            options=options,
            capabilities=capabilities or set(),
        )
        return factory

    return register
