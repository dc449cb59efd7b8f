"""How a server continues a partial solution, and the checks a probe makes before trusting it.

Step search extends a partial answer many times. The most exact way is a raw prompt: the chat
template applied to the conversation (by the server itself, or by us from the template the
server gives), followed by the partial answer, sent to `/completions`. Without raw prompts, a
chat request whose final assistant message is the partial answer can be continued: vLLM does so
with `continue_final_message` and returns the continuation alone; llama.cpp's server continues
such a message by itself and returns it with the partial answer in front ("prefill"), which we
remove. Each method is checked on a question with one right continuation (counting), so a server
that ignores the partial message or echoes it inconsistently is found before any search runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ponder.types import Message

# Raw prompts continue the chat template's rendering, in order of exactness.
RENDERED = ("apply-template", "tokenize", "local-template")
# Chat requests continue a final assistant message.
CHAT = ("continue-final", "prefill-echo")
METHODS = (*RENDERED, *CHAT)

DESCRIPTIONS = {
    "apply-template": "raw /completions after the chat template rendered by the server "
    "(POST /apply-template, llama.cpp)",
    "tokenize": "raw /completions after the chat template rendered by the server "
    "(POST /tokenize with messages, then /detokenize: vLLM)",
    "local-template": "raw /completions after the server's chat template (GET /props) "
    "rendered here with jinja2",
    "continue-final": "chat completions continuing a final assistant message "
    "(continue_final_message, vLLM)",
    "prefill-echo": "chat completions continuing a final assistant message, the server "
    "returning it in front of the continuation (llama.cpp), which is removed",
}

# The check: a question with one right continuation of each partial answer.
CHECK_QUESTION = "Count from 1 to 20, separated by commas."
CHECK_PARTIALS = (("1, 2, 3, 4, 5, 6,", 7), ("1, 2, 3,", 4))
CHECK_TOKENS = 4


def check_conversation() -> list[Message]:
    return [Message(role="user", content=CHECK_QUESTION)]


def first_number(text: str) -> int | None:
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


def follows(text: str, expected: int) -> bool:
    """Whether a continuation of a partial count goes on with the next number."""
    return first_number(text) == expected


def short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


@dataclass
class Attempt:
    """One method tried by the probe: whether it works, and what was seen."""

    method: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.method}: {'ok' if self.ok else 'no'} ({self.detail})"


def judge_chat_continuations(replies: list[tuple[str, str, int]]) -> tuple[str | None, str]:
    """From (partial, reply, expected next number) of each check, the chat method the server
    supports (`continue-final`, `prefill-echo`) or None, and why. Each reply either continues
    its partial message (the next number comes first), or returns the partial message and
    then continues it (an echo), or neither (the partial message was ignored)."""
    kinds = []
    for partial, reply, expected in replies:
        if reply.startswith(partial) and follows(reply[len(partial) :], expected):
            kinds.append("echo")
        elif follows(reply, expected):
            kinds.append("continued")
        else:
            return None, (
                f"ignores the partial assistant message: continuing {short(partial)} it "
                f"wrote {short(reply)}, not {expected} first"
            )
    if len(set(kinds)) > 1:
        seen = ", ".join(f"{short(p)} → {short(r)}" for p, r, _ in replies)
        return None, f"echoes the partial message inconsistently ({seen})"
    if kinds[0] == "echo":
        return "prefill-echo", "returns the partial message in front of its continuation"
    return "continue-final", "returns the continuation alone"


# -- the chat template rendered here (a server that gives its template but renders none) ----
def render_template(
    template: str,
    messages: list[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """A Hugging Face-style Jinja chat template applied to `messages`, as transformers and
    llama.cpp apply it (sandboxed; trim_blocks, lstrip_blocks; raise_exception, strftime_now,
    tojson)."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(
        x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None
    ) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template).render(
        messages=[m.model_dump() for m in messages],
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
        tools=None,
    )
