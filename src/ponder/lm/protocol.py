"""The one contract every language-model backend meets."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from ponder.types import Generation, GenRequest, ModelInfo


class Capabilities(BaseModel):
    """What a backend can do natively. The scheduler sizes concurrency by `slots`."""

    n: bool = True
    logprobs: bool = True
    raw_prefix: bool = True
    context_length: int = 4096
    slots: int = 8


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

    async def aclose(self) -> None: ...
