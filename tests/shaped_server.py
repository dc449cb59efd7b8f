"""A scripted model behind an HTTP server shaped like the servers people run: llama.cpp's
(`/apply-template`, `/props`, `/tokenize`, `/metrics`, slots, chat prefill that returns the
partial message in front of its continuation, `usage` for one choice of n), vLLM's (`/tokenize`
with messages and `/detokenize`, `continue_final_message`, `usage` for all choices) and a
chat-only one (`continue_final_message` and nothing else). Faults on request.

The "model" sees raw text, as a real one does: every route renders its conversation with one
ChatML template, so the raw, rendered and chat paths are consistent, and a tokenizer of its own
(a token is a word with the space before it) counts every token, like llama.cpp's `/metrics`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from typing import Any

RIGHT = ["3 + 4 = 7.", "7 + 5 = 12.", "12 + 6 = 18.", "So the answer is \\boxed{18}."]
WRONG = ["3 + 4 = 8.", "8 + 5 = 14.", "14 + 6 = 21.", "So the answer is \\boxed{21}."]
QUESTION = "What is 3 + 4 + 5 + 6?"
MODEL = "shaped-model"

# the template in Jinja, as /props gives it (rendered by ponder with jinja2)
JINJA = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

Policy = Callable[[str, int, int], str]  # (raw text, choice index, seed) -> continuation


def render(
    messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, cont: bool = False
) -> str:
    out = ""
    for i, m in enumerate(messages):
        if cont and i == len(messages) - 1 and m["role"] == "assistant":
            return out + f"<|im_start|>assistant\n{m['content']}"
        out += f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
    return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def tokens(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)


def policy(text: str, index: int, seed: int) -> str:
    """Counts on when asked to count; judges the step before a judge's question (right steps
    Yes); otherwise writes the next step of the solution: the right one unless choice index
    plus seed is a multiple of 3 (a wrong path stays wrong)."""
    count = re.search(r"Count from 1 to 20.*?(\d+),\s*$", text, re.S)
    if count:
        k = int(count.group(1))
        return f" {k + 1}, {k + 2},"
    if text.rstrip().endswith(
        "Count from 1 to 20, separated by commas.<|im_end|>\n<|im_start|>assistant"
    ):
        return "1, 2, 3, 4,"
    if "Correct (Yes/No)?" in text[-40:] or "correct? Answer Yes or No." in text[-120:]:
        last = max(
            ((text.rfind(s), s in RIGHT) for s in RIGHT + WRONG if s in text), default=(-1, False)
        )
        return "Yes" if last[1] else "No"
    body = text.rsplit("<|im_start|>assistant\n", 1)[-1]
    done = [s.strip() for s in body.split("\n\n") if s.strip()]
    k = len(done)
    if k >= len(RIGHT):
        return ""
    on_track = all(s in RIGHT for s in done)
    right = on_track and (index + seed) % 3 != 0
    return (RIGHT if right else WRONG)[k] + "\n\n"


class ShapedServer:
    """`shape`: "llamacpp", "vllm" or "chat-only". `faults`: "apply-template-500",
    "apply-template-garbage", "no-apply-template", "no-props-template", "no-completions",
    "no-tokenize", "echo-inconsistent", "echo-breaks" (echoes for the probe, then not),
    "ignores-partial", "no-continue-fields" (refuses vLLM's fields)."""

    def __init__(
        self,
        shape: str,
        *,
        faults: frozenset[str] | set[str] = frozenset(),
        model_policy: Policy = policy,
        slots: int = 4,
    ) -> None:
        self.shape = shape
        self.faults = frozenset(faults)
        self.policy = model_policy
        self.slots = slots
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.prompt_evaluated = 0  # llama.cpp's prompt_tokens_total
        self.predicted = 0  # tokens_predicted_total
        self.slot_text = [""] * slots
        self.chat_continued = 0
        self._server: asyncio.Server | None = None
        self.url = ""
        self._vocab: list[str] = []
        self._ids: dict[str, int] = {}

    async def __aenter__(self) -> ShapedServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # -- routes ------------------------------------------------------------------------------
    def route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        llama, vllm = self.shape == "llamacpp", self.shape == "vllm"
        if path == "/v1/models":
            return 200, {"data": [{"id": MODEL}]}
        if path == "/v1/chat/completions":
            return self.chat(body)
        if path == "/v1/completions" and self.shape != "chat-only":
            if "no-completions" in self.faults:
                return 404, {"error": {"message": "Not Found"}}
            return self.complete(body["prompt"], body)
        if path == "/props" and llama and method == "GET":
            props: dict[str, Any] = {
                "total_slots": self.slots,
                "bos_token": "<|endoftext|>",
                "eos_token": "<|im_end|>",
                "default_generation_settings": {"n_ctx": 2048},
            }
            if "no-props-template" not in self.faults:
                props["chat_template"] = JINJA
            return 200, props
        if path == "/apply-template" and llama and "no-apply-template" not in self.faults:
            if "apply-template-500" in self.faults:
                return 500, {"error": {"message": "template error: unknown filter 'x'"}}
            if "apply-template-garbage" in self.faults:
                return 200, {"prompt": "<|im_start|>assistant\n"}
            msgs = body["messages"]
            cont = bool(msgs) and msgs[-1]["role"] == "assistant"
            return 200, {"prompt": render(msgs, cont=cont)}
        if path == "/tokenize" and llama:
            toks = tokens(body.get("content", ""))
            return 200, {"tokens": [self._id(t) for t in toks]}
        if path == "/tokenize" and vllm and "no-tokenize" not in self.faults:
            if "messages" in body:
                text = render(
                    body["messages"],
                    add_generation_prompt=body.get("add_generation_prompt", True),
                    cont=body.get("continue_final_message", False),
                )
            else:
                text = body["prompt"]
            ids = [self._id(t) for t in tokens(text)]
            return 200, {"count": len(ids), "max_model_len": 4096, "tokens": ids}
        if path == "/detokenize" and vllm and "no-tokenize" not in self.faults:
            return 200, {"prompt": "".join(self._vocab[i] for i in body["tokens"])}
        if path == "/metrics" and llama:
            return 200, (
                f"llamacpp:prompt_tokens_total {self.prompt_evaluated}\n"
                f"llamacpp:tokens_predicted_total {self.predicted}\n"
            )
        return 404, {"error": {"message": f"Not Found: {path}"}}

    def chat(self, body: dict[str, Any]) -> tuple[int, Any]:
        msgs = body["messages"]
        partial = msgs[-1]["content"] if msgs[-1]["role"] == "assistant" else None
        vllm_fields = "continue_final_message" in body or "add_generation_prompt" in body
        if "no-continue-fields" in self.faults and vllm_fields:
            return 400, {"error": {"message": "unknown field continue_final_message"}}
        if (
            self.shape != "llamacpp"
            and partial is not None
            and not body.get("continue_final_message")
        ):
            partial = None  # vLLM starts a new turn after the assistant's unless told
        if "ignores-partial" in self.faults and partial is not None:
            msgs, partial = msgs[:-1], None
        text = render(msgs, cont=partial is not None)
        echo = None
        if partial is not None and self.shape == "llamacpp":
            self.chat_continued += 1
            echo = partial
            if "echo-inconsistent" in self.faults and len(partial) < 10:
                echo = None
            if "echo-breaks" in self.faults and self.chat_continued > 2:
                echo = partial[:-1]  # no longer the whole partial message
        status, data = self.complete(text, body, chat=True)
        if echo is not None:
            for ch in data["choices"]:
                ch["message"]["content"] = echo + ch["message"]["content"]
        return status, data

    def complete(self, text: str, body: dict[str, Any], *, chat: bool = False) -> tuple[int, Any]:
        n = int(body.get("n", 1))
        seed = int(body.get("seed") or 0)
        max_tokens = int(body.get("max_tokens") or 16)
        stops = body.get("stop") or []
        prompt = tokens(text)
        cached = self._cached(prompt, body.get("id_slot"))
        self.prompt_evaluated += len(prompt) - cached
        choices, written = [], []
        for i in range(n):
            out = self.policy(text, i, seed)
            finish = "stop"
            for s in stops:
                if s in out:
                    out = out[: out.index(s) + len(s)]  # counted with the stop string
            toks = tokens(out)
            if len(toks) > max_tokens:
                toks, finish = toks[:max_tokens], "length"
            written.append(len(toks))
            shown = "".join(toks)
            for s in stops:
                shown = shown.split(s)[0]
            choice: dict[str, Any] = {"index": i, "finish_reason": finish}
            if chat:
                choice["message"] = {"role": "assistant", "content": shown}
            else:
                choice["text"] = shown
            if body.get("logprobs"):
                choice["logprobs"] = {"content": [self._logprob(t) for t in tokens(shown)]}
            choices.append(choice)
        self.predicted += sum(written)
        if isinstance(body.get("id_slot"), int):
            self.slot_text[body["id_slot"]] = text + choices[0].get("text", "")
        # llama.cpp's usage counts one choice of n; vLLM's counts them all
        completion = written[0] if self.shape == "llamacpp" else sum(written)
        usage = {
            "prompt_tokens": len(prompt),
            "completion_tokens": completion,
            "total_tokens": len(prompt) + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        return 200, {"object": "chat.completion", "choices": choices, "usage": usage}

    # -- helpers -----------------------------------------------------------------------------
    def _cached(self, prompt: list[str], slot: Any) -> int:
        if self.shape != "llamacpp" or not isinstance(slot, int):
            return 0
        held = tokens(self.slot_text[slot])
        k = 0
        while k < min(len(held), len(prompt)) and held[k] == prompt[k]:
            k += 1
        return min(k, len(prompt) - 1)  # (llama.cpp evaluates the last token again)

    def _logprob(self, token: str) -> dict[str, Any]:
        if token.strip() in ("Yes", "No"):
            p = 0.9
            other = "No" if token.strip() == "Yes" else "Yes"
            top = [
                {"token": token, "logprob": math.log(p)},
                {"token": other, "logprob": math.log(1 - p)},
            ]
            return {"token": token, "logprob": math.log(p), "top_logprobs": top}
        return {
            "token": token,
            "logprob": -0.1,
            "top_logprobs": [{"token": token, "logprob": -0.1}],
        }

    def _id(self, token: str) -> int:
        if token not in self._ids:
            self._ids[token] = len(self._vocab)
            self._vocab.append(token)
        return self._ids[token]

    def metrics(self) -> dict[str, int]:
        return {"prompt": self.prompt_evaluated, "predicted": self.predicted}

    # -- HTTP --------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            raw = await reader.readexactly(length) if length else b""
            body = json.loads(raw) if raw else {}
            self.requests.append((path, body))
            status, obj = self.route(method, path, body)
            payload = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
            kind = "text/plain" if isinstance(obj, str) else "application/json"
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()
