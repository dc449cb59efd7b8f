"""A process reward model served elsewhere over HTTP, e.g. vLLM's pooling API serving
Qwen2.5-Math-PRM (`vllm serve ... --task reward`): the solution's steps are joined with a step
tag, and the server returns one score (or [P(bad), P(good)] pair) per tag.

Scores are cached per (question, step prefix): a path scored up to step k is sent again only
when it has new steps, and earlier steps' scores are never asked for twice. Every call is
charged to the ledger as role `verifier` with the prompt tokens the server reports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ponder.errors import BudgetExceeded
from ponder.lm.config import ServerUrl
from ponder.runtime.verifiers import (
    PROCESS,
    ROLE,
    BuiltVerifier,
    Verdict,
    VerifierEnv,
    VerifyContext,
    verifier,
)
from ponder.types import Problem, Usage
from ponder.verify.cache import StepCache


class PRMHttp:
    name = "prm_http"

    def __init__(
        self,
        url: str,
        model: str = "",
        *,
        path: str = "/pooling",
        step_tag: str = "<extra_0>",
        positive_index: int = -1,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_concurrency: int = 8,
    ) -> None:
        self.url = url.rstrip("/") + path
        self.model = model
        self.step_tag = step_tag
        self.positive_index = positive_index
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers)
        self._gate = asyncio.Semaphore(max_concurrency)
        self._cache = StepCache()

    def render(self, question: str, steps: Sequence[str]) -> str:
        return question + "\n" + "".join(s.strip() + self.step_tag for s in steps)

    async def score_steps(
        self, problem: Problem, steps: Sequence[str], ctx: VerifyContext
    ) -> list[Verdict]:
        cached = [self._cache.get(problem.question, steps[:k]) for k in range(1, len(steps) + 1)]
        if all(v is not None for v in cached):
            return [v for v in cached if v is not None]
        verdicts = await self._call(problem.question, steps, ctx)
        for k, v in enumerate(verdicts, 1):
            self._cache.put(problem.question, steps[:k], v)  # failures are not kept
        return verdicts

    async def _call(self, question: str, steps: Sequence[str], ctx: VerifyContext) -> list[Verdict]:
        def every_step(reason: str) -> list[Verdict]:
            return [Verdict(reason=reason)] * len(steps)

        def failed(reason: str) -> list[Verdict]:  # the PRM's fault, not a verdict withheld
            ctx.ledger.verifier_failures.append(reason)
            return every_step(reason)

        text = self.render(question, steps)
        upper = len(text.encode("utf-8")) + 16  # ≥ any tokenization of the text
        try:
            reservation = ctx.ledger.reserve(Usage(calls=1, prompt_tokens=upper))
        except BudgetExceeded as e:
            return every_step(f"not scored: {e}")
        started = time.monotonic()
        try:
            async with self._gate:
                resp = await self._client.post(self.url, json={"model": self.model, "input": text})
            data = resp.json()
        except (httpx.HTTPError, ValueError) as e:
            ctx.ledger.failed_attempts += 1
            return failed(f"PRM at {self.url} failed: {type(e).__name__}: {e}")
        finally:
            ctx.ledger.release(reservation)
        usage = data.get("usage") if isinstance(data, dict) else None
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        ctx.ledger.charge(
            ROLE,
            self.model or self.url,
            Usage(
                calls=1,
                prompt_tokens=int(tokens) if isinstance(tokens, int) else 0,
                seconds=time.monotonic() - started,
            ),
        )
        if resp.status_code >= 400:
            return failed(f"PRM at {self.url} answered {resp.status_code}: {str(data)[:200]}")
        scores = self._parse(data, len(steps))
        if isinstance(scores, str):
            return failed(scores)
        counted = isinstance(tokens, int)
        note = None if counted else "the PRM reported no usage; its tokens are not counted"
        return [Verdict(score=s, reason=note) for s in scores]

    def _parse(self, data: Any, n_steps: int) -> list[float] | str:
        """Scores from `{"data": [{"data": [...]}]}`; a string saying what is wrong otherwise."""
        try:
            raw = data["data"][0]["data"]
        except (KeyError, IndexError, TypeError):
            return f"PRM at {self.url} returned an unexpected body: {str(data)[:200]}"
        if not isinstance(raw, list) or len(raw) != n_steps:
            got = len(raw) if isinstance(raw, list) else type(raw).__name__
            return f"PRM at {self.url} returned {got} scores for {n_steps} steps"
        out = []
        for item in raw:
            value = item[self.positive_index] if isinstance(item, list) and item else item
            if not isinstance(value, int | float) or isinstance(value, bool):
                return f"PRM at {self.url} returned a non-numeric score: {item!r}"
            out.append(float(value))
        return out

    async def aclose(self) -> None:
        await self._client.aclose()


class PRMHttpOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: ServerUrl = Field(description="the PRM server's base URL")
    model: str = Field(default="", description="the model name sent to the server")
    path: str = Field(default="/pooling", description="the scoring route")
    step_tag: str = Field(default="<extra_0>", description="what follows each step")
    positive_index: int = Field(default=-1, description="which of a [bad, good] pair is good")
    api_key: str | None = Field(default=None, description="the key sent to the server")
    timeout_s: float = Field(default=60.0, gt=0, description="seconds per call")
    max_concurrency: int = Field(default=8, ge=1, description="calls in flight at once")


@verifier("prm_http", PRMHttpOptions, capabilities={PROCESS})
def prm_http(options: PRMHttpOptions, env: VerifierEnv) -> BuiltVerifier:
    """A process reward model behind vLLM's pooling API (e.g. Qwen2.5-Math-PRM)."""
    prm = PRMHttp(**options.model_dump())
    return BuiltVerifier("prm_http", process=prm, close=prm.aclose)
