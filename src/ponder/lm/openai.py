"""Any OpenAI-compatible server by base URL (llama.cpp server, vLLM, SGLang, Ollama, hosted APIs).

On first use it probes what the server supports: native `n`, per-choice logprobs, raw
`/v1/completions`, and how it continues a partial solution (ponder.lm.continuation: the chat
template rendered by the server or from the template it gives, for raw prompts; else a final
assistant message continued). Token counts are taken per choice from logprobs when the server
returns them; otherwise it declares no native `n`, the scheduler fans a request out as n single
ones, and each response's `usage` describes exactly one choice. A llama.cpp server (`/props`
says how many slots it has) gets each single request pinned to the slot whose prefix cache
the scheduler's router picked (`id_slot`, `cache_prompt`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import httpx

from ponder.env import env_flag
from ponder.errors import BackendError, TransientError, UsageError
from ponder.lm.config import BackendConfig
from ponder.lm.continuation import (
    CHAT,
    CHECK_PARTIALS,
    CHECK_QUESTION,
    CHECK_TOKENS,
    DESCRIPTIONS,
    RENDERED,
    Attempt,
    check_conversation,
    follows,
    judge_chat_continuations,
    render_template,
    short,
)
from ponder.lm.protocol import Capabilities, LanguageModel, Progress, Watch, backend
from ponder.lm.wire import (
    LLAMACPP_DECODED_AFTER_CLOSE,
    Calls,
    http_error,
    parse_generation,
    request_body,
    spent_by,
    stream_choice,
)
from ponder.types import Generation, GenRequest, Message, ModelInfo, Usage

DEFAULT_TIMEOUT_S = 600.0
# OpenAI (and vLLM) request fields that only shape the text a server writes, handed to it as
# a client gave them (`ponder serve`'s pass-through); a server that does not know one
# refuses it itself, and that refusal reaches the client.
PASSTHROUGH_FIELDS = frozenset(
    {
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "response_format",
        "top_k",
        "min_p",
        "repetition_penalty",
    }
)
RENDERS_KEPT = 4096  # rendered conversations kept (one per problem in flight)


@backend("openai", summary="any OpenAI-compatible server by base URL (vLLM, SGLang, llama.cpp, …)")
def open_openai(config: BackendConfig, progress: Progress | None = None) -> LanguageModel:
    if not config.base_url:
        raise UsageError("backend 'openai' needs --base-url")
    config.without_options()
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


class Unreachable(TransientError):
    """The server could not be reached or did not answer in time (not a refusal)."""


class TimedOut(Unreachable):
    """The server took the request and did not answer within the client's timeout."""


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
        pin_slots: bool | None = None,
    ) -> None:
        """`pin_slots`: place requests on a llama.cpp server's slots (None: when it says how
        many it has, unless PONDER_PIN_SLOTS=0)."""
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        # the server's own routes (/apply-template, /tokenize, /props) sit beside /v1
        self.root = self.base_url.removesuffix("/v1")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self._calls = Calls(self._client)  # (what a cancelled call leaves is released)
        self.info = info or ModelInfo(name=model or base_url)
        # Until probed, assume the least: one choice per request, no logprobs, chat only.
        self.capabilities = Capabilities(
            n=False,
            logprobs=False,
            raw_prefix=False,
            render=False,
            context_length=context_length,
            slots=slots,
            request_fields=PASSTHROUGH_FIELDS,
        )
        self._probed = False
        self._probing = False  # while True, `_post` adds what each answer cost to `_probe_usage`
        self._probe_usage = Usage()
        self.server_has_n = False
        self._probe_lock = asyncio.Lock()
        self._pin_slots = pin_slots
        # what the probe found: how a partial solution is continued, and every method tried
        self.continuation: str | None = None
        self.attempts: list[Attempt] = []
        self.props: dict[str, Any] | None = None
        self._continue_fields = True  # vLLM's continue_final_message / add_generation_prompt
        self._strip_bos: str | None = None
        self._rendered: dict[tuple[tuple[str, str], ...], str] = {}

    # -- transport -----------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON object from the server (`path` under /v1, or an absolute URL: the server's
        own routes), or a BackendError saying how it failed (its status and own error object
        for an HTTP error; retried as a TransientError when it may pass: a 5xx or 429, a
        response that is not JSON; `Unreachable` for a timeout or a connection refused or
        dropped)."""
        where = path if path.startswith("http") else f"{self.base_url}{path}"
        try:
            with self._calls.call() as extensions:
                resp = await self._client.post(path, json=body, extensions=extensions)
        except httpx.TimeoutException as e:
            raise TimedOut(f"{where}: timed out ({type(e).__name__})", failure="timeout") from e
        except httpx.TransportError as e:
            raise Unreachable(
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
        if self._probing:
            self._probe_usage += spent_by(data)
        return data

    def _with_model(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.model:
            body["model"] = self.model
        return body

    def _body(self, req: GenRequest, *, chat: bool, n: int, logprobs: bool) -> dict[str, Any]:
        """The request body as this server wants it."""
        body = self._with_model(request_body(req, chat=chat, n=n, logprobs=logprobs))
        if req.continue_final and not self._continue_fields:
            body.pop("continue_final_message", None)
            body.pop("add_generation_prompt", None)
        if not chat and self.continuation == "tokenize":
            # the rendered text already holds the template's special tokens (vLLM would add
            # a BOS token again)
            body["add_special_tokens"] = False
        if req.slot is not None and self.capabilities.pin_slots:
            body["id_slot"] = req.slot  # where the scheduler's router found the prefix
            body["cache_prompt"] = True
        return body

    # -- capability probe ----------------------------------------------------------------
    async def probe(self) -> Capabilities:
        """Ask the server, once, what it supports. Transient failures propagate (retried),
        except a server that takes a request and never answers: retrying would multiply the
        timeout, so that ends the probe at once with an error naming the timeout."""
        try:
            return await self._probe()
        except TimedOut as e:
            raise BackendError(
                f"{self.root}: no answer to the capability probe within {self.timeout_s:g} s "
                f"(--timeout; {e})",
                failure="timeout",
            ) from e

    def take_probe_usage(self) -> Usage:
        """What the capability probe spent and no bill carries yet (SpendsToPrepare)."""
        spent, self._probe_usage = self._probe_usage, Usage()
        return spent

    async def _probe(self) -> Capabilities:
        async with self._probe_lock:
            if self._probed:
                return self.capabilities
            started = time.monotonic()
            self._probing = True
            try:
                return await self._probe_once()
            finally:
                self._probing = False
                self._probe_usage.seconds += time.monotonic() - started

    async def _probe_once(self) -> Capabilities:
        """The probe itself (`_probe` holds the lock and counts what it spends)."""
        if self.model is None:
            try:
                resp = await self._client.get("/models")
                models = resp.json().get("data") or []
                self.model = str(models[0]["id"]) if models else None
            except httpx.TimeoutException as e:
                raise TimedOut(f"{self.base_url}/models: timed out", failure="timeout") from e
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
        self.props = await self._get_props()
        self.server_has_n = len(choices) == 2
        update: dict[str, Any] = {
            # Native n is used only where each choice's tokens can be counted (its
            # logprobs): servers such as llama.cpp report `usage` for one choice of n.
            "n": self.server_has_n and has_logprobs,
            "logprobs": has_logprobs,
            "raw_prefix": raw_prefix,
            # token streams with logprobs, as the server gives logprobs at all
            "stream": has_logprobs,
        }
        update.update(self._slots_from_props())
        self.capabilities = self.capabilities.model_copy(update=update)
        await self._find_continuation(raw_prefix)
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

    async def _get_props(self) -> dict[str, Any] | None:
        """llama.cpp's `/props` (slots, chat template, BOS token), or None elsewhere."""
        try:
            resp = await self._client.get(f"{self.root}/props")
            data = resp.json() if resp.status_code == 200 else None
        except httpx.TimeoutException as e:
            raise TimedOut(
                f"{self.root}/props: timed out ({type(e).__name__})", failure="timeout"
            ) from e
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def is_llamacpp(self) -> bool:
        """Whether the probe found a llama.cpp server (its `/props` names its slots)."""
        return isinstance((self.props or {}).get("total_slots"), int)

    def _slots_from_props(self) -> dict[str, Any]:
        props = self.props or {}
        out: dict[str, Any] = {}
        settings = props.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        if isinstance(n_ctx, int) and n_ctx > 0:
            out["context_length"] = n_ctx  # per slot
        total = props.get("total_slots")
        pin = self._pin_slots
        if pin is None:
            pin = env_flag("PONDER_PIN_SLOTS", True)
        if pin and isinstance(total, int) and total > 0:
            # llama.cpp: a prefix cache per slot, a request run on the slot it names (as many
            # in flight as the server has slots, at most as many as asked for)
            out["pin_slots"] = True
            out["slots"] = min(total, self.capabilities.slots)
        return out

    async def _find_continuation(self, raw_prefix: bool) -> None:
        """Try each way to continue a partial solution, most exact first; keep the first that
        passes its check, and what every one tried said."""
        self.attempts = []
        for method in RENDERED:
            attempt = await self._try_rendered(method, raw_prefix)
            self.attempts.append(attempt)
            if attempt.ok:
                break
        else:
            self.attempts.append(await self._try_chat())
        chosen = next((a.method for a in self.attempts if a.ok), None)
        self.continuation = chosen
        tried = "; ".join(a.line() for a in self.attempts)
        self.capabilities = self.capabilities.model_copy(
            update={
                "render": chosen in RENDERED,
                "continue_final": chosen in CHAT,
                "continuation": chosen,
                "continuation_note": f"{self.root}: {tried}",
            }
        )

    async def _try_rendered(self, method: str, raw_prefix: bool) -> Attempt:
        if not raw_prefix:
            return Attempt(method, False, "the server takes no raw prompts on /v1/completions")
        try:
            head = await self._render_by(method, check_conversation())
        except Unreachable:
            raise
        except BackendError as e:
            return Attempt(method, False, str(e))
        if CHECK_QUESTION not in head:
            return Attempt(
                method, False, f"the rendered text lacks the conversation: {short(head)}"
            )
        partial, expected = CHECK_PARTIALS[0]
        check = GenRequest(prompt=head + partial, max_tokens=CHECK_TOKENS, temperature=0.0)
        previous, self.continuation = self.continuation, method  # the body as it will be sent
        try:
            data = await self._post(
                "/completions", self._body(check, chat=False, n=1, logprobs=False)
            )
        except Unreachable:
            raise
        except BackendError as e:
            return Attempt(method, False, f"a raw prompt after the rendered text failed: {e}")
        finally:
            self.continuation = previous
        text = _first_text(data)
        if not follows(text, expected):
            return Attempt(
                method,
                False,
                f"a raw prompt continuing the rendered text did not follow it: continuing "
                f"{short(partial)} it wrote {short(text)}, not {expected}",
            )
        return Attempt(method, True, DESCRIPTIONS[method])

    async def _try_chat(self) -> Attempt:
        label = "/".join(CHAT)
        replies: list[tuple[str, str, int]] = []
        for partial, expected in CHECK_PARTIALS:
            req = GenRequest(
                messages=[*check_conversation(), Message(role="assistant", content=partial)],
                max_tokens=CHECK_TOKENS,
                temperature=0.0,
                continue_final=True,
            )
            try:
                data = await self._post(
                    "/chat/completions", self._body(req, chat=True, n=1, logprobs=False)
                )
            except Unreachable:
                raise
            except BackendError as e:
                if not self._continue_fields or isinstance(e, TransientError):
                    return Attempt(label, False, f"refused: {e}")
                self._continue_fields = False  # a strict server refusing vLLM's fields
                try:
                    data = await self._post(
                        "/chat/completions", self._body(req, chat=True, n=1, logprobs=False)
                    )
                except Unreachable:
                    raise
                except BackendError:
                    return Attempt(label, False, f"refused: {e}")
            replies.append((partial, _first_text(data), expected))
        method, why = judge_chat_continuations(replies)
        if method is None:
            return Attempt(label, False, why)
        return Attempt(method, True, DESCRIPTIONS[method])

    async def _render_by(self, method: str, messages: list[Message]) -> str:
        """`messages` rendered by `method`, ending where the assistant's reply begins."""
        dumped = [m.model_dump() for m in messages]
        if method == "apply-template":
            data = await self._post(f"{self.root}/apply-template", {"messages": dumped})
            head = data.get("prompt")
            if not isinstance(head, str):
                raise BackendError(f"{self.root}/apply-template: no 'prompt' text in the answer")
        elif method == "tokenize":
            body = {"messages": dumped, "add_generation_prompt": True, "add_special_tokens": False}
            data = await self._post(f"{self.root}/tokenize", self._with_model(body))
            tokens = data.get("tokens")
            if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
                raise BackendError(f"{self.root}/tokenize: no token ids for the messages")
            data = await self._post(f"{self.root}/detokenize", self._with_model({"tokens": tokens}))
            head = data.get("prompt")
            if not isinstance(head, str):
                raise BackendError(f"{self.root}/detokenize: no 'prompt' text in the answer")
        elif method == "local-template":
            head = self._render_locally(messages)
        else:
            raise BackendError(f"{self.root}: {method} renders no chat template")
        if method != "tokenize":
            head = await self._without_doubled_bos(head)
        return head

    def _render_locally(self, messages: list[Message]) -> str:
        props = self.props or {}
        template = props.get("chat_template")
        if not isinstance(template, str) or not template.strip():
            raise BackendError(f"{self.root}/props: no chat template")
        try:
            return render_template(
                template,
                messages,
                bos_token=str(props.get("bos_token") or ""),
                eos_token=str(props.get("eos_token") or ""),
            )
        except ImportError as e:
            raise BackendError(f"jinja2 is not installed ({e})") from e
        except Exception as e:  # a template is code: any failure of it is its own
            raise BackendError(
                f"{self.root}/props: the chat template failed to render ({type(e).__name__}: {e})"
            ) from e

    async def _without_doubled_bos(self, head: str) -> str:
        """The rendered text without its leading BOS token where the server adds one to every
        raw prompt itself (llama.cpp would otherwise begin with two)."""
        bos = (self.props or {}).get("bos_token")
        if not isinstance(bos, str) or not bos or not head.startswith(bos):
            return head
        if self._strip_bos is None:
            try:
                with_special = await self._post(
                    f"{self.root}/tokenize", {"content": "a", "add_special": True}
                )
                without = await self._post(
                    f"{self.root}/tokenize", {"content": "a", "add_special": False}
                )
                adds = len(with_special.get("tokens") or []) > len(without.get("tokens") or [])
            except BackendError:
                adds = False
            self._strip_bos = bos if adds else ""
        return head.removeprefix(self._strip_bos) if self._strip_bos else head

    def report(self) -> dict[str, Any]:
        """What the probe found, for `ponder models probe` and verbose output."""
        caps = self.capabilities
        return {
            "server": self.root,
            "model": self.model,
            "n": self.server_has_n,
            "native_n": caps.n,
            "logprobs": caps.logprobs,
            "stream": caps.stream,
            "raw_completions": caps.raw_prefix,
            "continuation": self.continuation,
            "continuation_how": DESCRIPTIONS.get(self.continuation or ""),
            "tried": [{"method": a.method, "ok": a.ok, "detail": a.detail} for a in self.attempts],
            "slots": caps.slots,
            "pin_slots": caps.pin_slots,
            "context_length": caps.context_length,
        }

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
        body = self._body(req, chat=chat, n=req.n, logprobs=caps.logprobs)
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
        if req.continue_final and self.continuation == "prefill-echo":
            for choice in gen.choices:
                choice.text = self._unechoed(req, choice.text, where)
        return gen

    def _unechoed(self, req: GenRequest, text: str, where: str) -> str:
        """A continuation without the partial message the server returned in front of it."""
        assert req.messages is not None
        partial = req.messages[-1].content
        if not text.startswith(partial):
            raise BackendError(
                f"{where} (prefill-echo): a reply did not begin with the partial message it "
                f"continues ({short(text)} after {short(partial)})"
            )
        return text[len(partial) :]

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        """One choice streamed, `watch` told of each token; a stop closes the connection
        (servers stop generating for a client that went away). The prompt's tokens come from
        the server's usage, or from llama.cpp's timings in every chunk; a server stopped
        before it said is asked once more for the prompt alone, and that call is counted too.
        (vLLM's running usage per chunk is not asked for: other servers refuse the field.)"""
        caps = await self.probe()
        if not caps.stream or req.n != 1:
            raise BackendError(f"{self.base_url}: no token stream with logprobs (n={req.n})")
        chat = req.messages is not None
        path = "/chat/completions" if chat else "/completions"
        body = self._body(req, chat=chat, n=1, logprobs=True)
        if self.is_llamacpp:
            body["timings_per_token"] = True  # its counts so far in every chunk
        choice, stopped = await stream_choice(
            self._calls, path, body, where=f"{self.base_url}{path}", watch=watch
        )
        prompt_tokens, extra = choice.prompt_tokens, 0
        if prompt_tokens is None:
            counted = await self.generate(replace(req, max_tokens=1, top_logprobs=0))
            prompt_tokens = counted.prompt_tokens
            extra = counted.completion_tokens
        completion = choice.completion(
            stopped=stopped,
            want_logprobs=req.top_logprobs > 0,
            decoded_after_close=LLAMACPP_DECODED_AFTER_CLOSE if self.is_llamacpp else 0,
            max_tokens=req.max_tokens,
        )
        completion.completion_tokens += extra
        if req.continue_final and self.continuation == "prefill-echo":
            completion.text = self._unechoed(req, completion.text, f"{self.base_url}{path}")
        return Generation(
            choices=[completion],
            prompt_tokens=prompt_tokens * (2 if extra else 1),
            cached_tokens=choice.cached_tokens,
        )

    async def render(self, messages: list[Message]) -> str:
        """The chat template applied to `messages` by the method the probe chose (each
        conversation rendered once and kept)."""
        caps = await self.probe()
        if not caps.render or self.continuation is None:
            raise BackendError(
                f"{self.base_url}: ponder cannot render this server's chat template "
                f"({caps.continuation_note})"
            )
        key = tuple((m.role, m.content) for m in messages)
        head = self._rendered.get(key)
        if head is None:
            try:
                head = await self._render_by(self.continuation, messages)
            except BackendError as e:  # (a transient failure stays one, to be retried)
                raise type(e)(f"{self.continuation} rendering on {self.root}: {e}") from e
            if len(self._rendered) >= RENDERS_KEPT:
                del self._rendered[next(iter(self._rendered))]  # the oldest
            self._rendered[key] = head
        return head

    async def aclose(self) -> None:
        await self._client.aclose()


def _first_text(data: dict[str, Any]) -> str:
    """The first choice's text (chat or raw), or "" when there is none."""
    choices = data.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    ch = choices[0]
    message = ch.get("message")
    text = message.get("content") if isinstance(message, dict) else ch.get("text")
    return text if isinstance(text, str) else ""
