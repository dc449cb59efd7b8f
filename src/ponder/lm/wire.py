"""Parsing OpenAI-style response bodies (llama.cpp in-process and HTTP servers alike)."""

from __future__ import annotations

from typing import Any

from ponder.errors import BackendError, TransientError
from ponder.types import Completion, Generation, GenRequest, TokenLogprob


def request_body(req: GenRequest, *, chat: bool, n: int, logprobs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
    }
    if n != 1:
        body["n"] = n
    if req.seed is not None:
        body["seed"] = req.seed
    if req.stop:
        body["stop"] = req.stop
    if chat:
        assert req.messages is not None
        body["messages"] = [m.model_dump() for m in req.messages]
        if req.continue_final:
            # vLLM's names; llama.cpp's server continues a final assistant message by itself
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = max(1, req.top_logprobs)
    else:
        body["prompt"] = req.prompt
        if logprobs:
            body["logprobs"] = max(1, req.top_logprobs)
    return body


def raise_for_error(data: dict[str, Any], where: str) -> None:
    err = data.get("error")
    if err is None:
        return
    msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
    code = err.get("code", 500) if isinstance(err, dict) else 500
    if isinstance(code, int) and code >= 500:
        raise TransientError(f"{where}: server error {code}: {msg}")
    raise BackendError(f"{where}: request refused ({code}): {msg}")


def _logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("content"), list):
        return None
    return [
        TokenLogprob(
            token=t.get("token", ""),
            logprob=float(t.get("logprob", 0.0)),
            top={
                x.get("token", ""): float(x.get("logprob", 0.0))
                for x in t.get("top_logprobs") or []
            },
        )
        for t in lp["content"]
    ]


def ended_on_stop_string(choice: Completion, logprobs: list[TokenLogprob] | None) -> bool:
    """A choice that stopped but whose last token is not end-of-generation (special tokens
    come back as empty text) was cut by a stop string."""
    if choice.finish_reason != "stop":
        return False
    return not logprobs or logprobs[-1].token != ""


def parse_generation(
    data: dict[str, Any],
    *,
    where: str,
    want_logprobs: bool,
    count_from_logprobs: bool,
    stop_tokens: int = 0,
    max_tokens: int | None = None,
) -> Generation:
    """Turn a response body into a Generation. With `count_from_logprobs`, each choice's token
    count is the length of its own logprob list: llama.cpp's `usage` counts one choice only.
    llama.cpp also leaves the stop string's tokens out of that list (it trims as many as the
    stop string tokenizes to): `stop_tokens` adds them back for choices cut by a stop string."""
    raise_for_error(data, where)
    raw_choices = data.get("choices")
    if not isinstance(raw_choices, list) or not raw_choices:
        raise TransientError(f"{where}: response has no choices")
    usage = data.get("usage") or {}
    choices: list[Completion] = []
    for ch in sorted(raw_choices, key=lambda c: int(c.get("index", 0))):
        text = (ch["message"].get("content") if "message" in ch else ch.get("text")) or ""
        lps = _logprobs(ch)
        choice = Completion(
            text=text,
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=str(ch.get("finish_reason") or "stop"),
            logprobs=lps if want_logprobs else None,
        )
        if count_from_logprobs:
            cut = stop_tokens > 0 and ended_on_stop_string(choice, lps)
            if lps is None and not cut:  # (cut at its first token, a choice has no logprobs)
                raise TransientError(f"{where}: a choice came back without logprobs")
            tokens = len(lps or []) + (stop_tokens if cut else 0)
            if max_tokens is not None:
                tokens = min(tokens, max_tokens)
            choice.completion_tokens = tokens
        choices.append(choice)
    details = usage.get("prompt_tokens_details") or {}
    return Generation(
        choices=choices,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        cached_tokens=int(details.get("cached_tokens") or 0),
    )
