"""Any OpenAI-compatible server by base URL (llama.cpp server, vLLM, SGLang, Ollama, hosted APIs).

On first use it probes what the server supports: native `n`, per-choice logprobs, raw
`/v1/completions`. Token counts are taken per choice from logprobs when the server returns
them; otherwise it declares no native `n`, the scheduler fans a request out as n single ones,
and each response's `usage` describes exactly one choice.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import httpx

from ponder.errors import BackendError, TransientError, UsageError
from ponder.lm.config import BackendConfig
from ponder.lm.protocol import Capabilities, LanguageModel, Progress, Watch, backend
from ponder.lm.wire import http_error, parse_generation, request_body, stream_choice
from ponder.types import Generation, GenRequest, Message, ModelInfo

DEFAULT_TIMEOUT_S = 600.0


@backend("openai", summary="any OpenAI-compatible server by base URL (vLLM, SGLang, llama.cpp, …)")
def open_openai(config: BackendConfig, progress: Progress | None = None) -> LanguageModel:
    if not config.base_url:
        raise UsageError("backend 'openai' needs --base-url")
    base_url = config.base_url
    info = ModelInfo(name=config.model or base_url.rstrip("/").removesuffix("/v1"))
    return OpenAILM(
        base_url,
        model=config.model,
        api_key=config.api_key,
        slots=config.slots,
        info=config.priced(info),
        timeout_s=config.timeout or DEFAULT_TIMEOUT_S,
    )


class OpenAILM:
    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        info: ModelInfo | None = None,
        slots: int = 8,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        context_length: int = 4096,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self.info = info or ModelInfo(name=model or base_url)
        # Until probed, assume the least: one choice per request, no logprobs, chat only.
        self.capabilities = Capabilities(
            n=False,
            logprobs=False,
            raw_prefix=False,
            render=False,
            context_length=context_length,
            slots=slots,
        )
        self._probed = False
        self.server_has_n = False
        self._probe_lock = asyncio.Lock()

    # -- transport -----------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON object from the server, or a BackendError saying how it failed (its status
        and own error object for an HTTP error; retried as a TransientError when it may pass:
        a 5xx or 429, a timeout, a connection refused or dropped, a response that is not
        JSON)."""
        where = f"{self.base_url}{path}"
        try:
            resp = await self._client.post(path, json=body)
        except httpx.TimeoutException as e:
            raise TransientError(
                f"{where}: timed out ({type(e).__name__})", failure="timeout"
            ) from e
        except httpx.TransportError as e:
            raise TransientError(
                f"{where}: unreachable ({type(e).__name__}: {e})", failure="unavailable"
            ) from e
        if resp.status_code >= 400:
            raise http_error(where, resp.status_code, resp.text, resp.headers.get("retry-after"))
        try:
            data = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TransientError(
                f"{where}: malformed JSON in response ({e})", failure="bad_response"
            ) from e
        if not isinstance(data, dict):
            raise TransientError(f"{where}: response is not a JSON object", failure="bad_response")
        return data

    def _with_model(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.model:
            body["model"] = self.model
        return body

    # -- capability probe ----------------------------------------------------------------
    async def probe(self) -> Capabilities:
        """Ask the server, once, what it supports. Transient failures propagate (retried)."""
        async with self._probe_lock:
            if self._probed:
                return self.capabilities
            if self.model is None:
                try:
                    resp = await self._client.get("/models")
                    models = resp.json().get("data") or []
                    self.model = str(models[0]["id"]) if models else None
                except (httpx.HTTPError, ValueError, KeyError, IndexError, AttributeError):
                    self.model = None
                if self.info.name == self.base_url.removesuffix("/v1") and self.model:
                    self.info = self.info.model_copy(update={"name": self.model})
            req = GenRequest(
                messages=[Message(role="user", content="Say OK.")],
                max_tokens=2,
                n=2,
                temperature=1.0,
                top_logprobs=1,
            )
            body = self._with_model(request_body(req, chat=True, n=2, logprobs=True))
            try:
                data = await self._post("/chat/completions", body)
            except BackendError as e:
                if isinstance(e, TransientError):
                    raise
                # Some servers refuse n or logprobs outright: fall back to the plainest request.
                plain = self._with_model(request_body(req, chat=True, n=1, logprobs=False))
                data = await self._post("/chat/completions", plain)
            choices = data.get("choices") or []
            has_logprobs = bool(choices) and all(
                isinstance((c.get("logprobs") or {}).get("content"), list) for c in choices
            )
            raw_prefix = await self._accepts(
                "/completions", {"prompt": "OK", "max_tokens": 1, "temperature": 0.0}
            )
            ask = GenRequest(
                messages=[
                    Message(role="user", content="Say OK."),
                    Message(role="assistant", content="O"),
                ],
                max_tokens=1,
                continue_final=True,
            )
            continue_final = await self._accepts(
                "/chat/completions", request_body(ask, chat=True, n=1, logprobs=False)
            )
            self.server_has_n = len(choices) == 2
            # Native n is used only where each choice's tokens can be counted (its logprobs):
            # servers such as llama.cpp report `usage` for one choice of n.
            self.capabilities = self.capabilities.model_copy(
                update={
                    "n": self.server_has_n and has_logprobs,
                    "logprobs": has_logprobs,
                    "raw_prefix": raw_prefix,
                    "continue_final": continue_final,
                    # token streams with logprobs, as the server gives logprobs at all
                    "stream": has_logprobs,
                }
            )
            self._probed = True
            return self.capabilities

    async def _accepts(self, path: str, body: dict[str, Any]) -> bool:
        """Whether the server takes this request (a refusal says no; a transient failure is
        raised, to be retried)."""
        try:
            await self._post(path, self._with_model(body))
        except BackendError as e:
            if isinstance(e, TransientError):
                raise
            return False
        return True

    # -- generation ----------------------------------------------------------------------
    async def prepare(self) -> Capabilities:
        return await self.probe()

    async def generate(self, req: GenRequest) -> Generation:
        caps = await self.probe()
        chat = req.messages is not None
        if not chat and not caps.raw_prefix:
            raise BackendError(f"{self.base_url}: the server has no /completions for raw prompts")
        if not caps.native_n(req):
            raise BackendError(f"{self.base_url}: n={req.n} here must be fanned out")
        path = "/chat/completions" if chat else "/completions"
        where = f"{self.base_url}{path}"
        body = self._with_model(request_body(req, chat=chat, n=req.n, logprobs=caps.logprobs))
        gen = parse_generation(
            await self._post(path, body),
            where=where,
            want_logprobs=req.top_logprobs > 0,
            # A single choice's `usage` is exact; with n > 1 (only when the server returns
            # logprobs and there are no stop strings) each choice counts its own logprobs.
            count_from_logprobs=req.n > 1,
        )
        if len(gen.choices) != req.n:
            raise TransientError(
                f"{where}: asked for {req.n} choices, got {len(gen.choices)}",
                failure="bad_response",
            )
        return gen

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        """One choice streamed, `watch` told of each token; a stop closes the connection
        (servers stop generating for a client that went away). The prompt's tokens come from
        the server's usage or timings; a server that stopped before saying (no
        `continuous_usage_stats`, no timings) is asked once more for the prompt alone, and
        that call is counted too."""
        caps = await self.probe()
        if not caps.stream or req.n != 1:
            raise BackendError(f"{self.base_url}: no token stream with logprobs (n={req.n})")
        chat = req.messages is not None
        path = "/chat/completions" if chat else "/completions"
        body = self._with_model(request_body(req, chat=chat, n=1, logprobs=True))
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        choice, stopped = await stream_choice(
            self._client, path, body, where=f"{self.base_url}{path}", watch=watch
        )
        prompt_tokens, extra = choice.prompt_tokens, 0
        if prompt_tokens is None:
            counted = await self.generate(replace(req, max_tokens=1, top_logprobs=0))
            prompt_tokens = counted.prompt_tokens
            extra = counted.completion_tokens
        completion = choice.completion(stopped=stopped, want_logprobs=req.top_logprobs > 0)
        completion.completion_tokens += extra
        return Generation(
            choices=[completion],
            prompt_tokens=prompt_tokens * (2 if extra else 1),
            cached_tokens=choice.cached_tokens,
        )

    async def render(self, messages: list[Message]) -> str:
        raise BackendError(f"{self.base_url}: ponder cannot render this server's chat template")

    async def aclose(self) -> None:
        await self._client.aclose()
