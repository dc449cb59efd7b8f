"""A scripted engine with vLLM's async interface (`AsyncLLM`): what the vllm backend's
contract tests run against where vLLM is not installed.

It keeps vLLM's behaviour where the backend depends on it: outputs are cumulative and come
token by token; n choices share one prefill; a stop string's tokens are in a choice's
`token_ids` but not its text; `logprobs=k` gives each position {token id: Logprob} with the
written token and the top k; prompts find their longest block-aligned prefix in the cache
(`num_cached_tokens`); `abort` stops a request; the tokenizer has a ChatML template with
`continue_final_message`.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
Reply = Callable[[str, int, random.Random], str]  # (prompt, choice index, rng) -> text


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int = 0


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    stop: list[str] | None = None
    seed: int | None = None
    logprobs: int | None = None


@dataclass
class Tokenizer:
    """Words and marks with the spaces before them: decode(encode(t)) == t."""

    vocab: dict[str, int] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)

    def pieces(self, text: str) -> list[str]:
        return _TOKEN.findall(text)

    def id(self, piece: str) -> int:
        if piece not in self.vocab:
            self.vocab[piece] = len(self.words)
            self.words.append(piece)
        return self.vocab[piece]

    def encode(self, text: str) -> list[int]:
        return [self.id(p) for p in self.pieces(text)]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.words[i] for i in ids)

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        *,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
    ) -> str:
        turns = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
        if continue_final_message:
            turns[-1] = turns[-1].removesuffix("<|im_end|>\n")
        text = "".join(turns)
        if add_generation_prompt:
            text += "<|im_start|>assistant\n"
        return text


class FakeAsyncLLM:
    """`reply(prompt, index, rng)` writes each choice; `step_s` is the time per token."""

    def __init__(self, reply: Reply, *, step_s: float = 0.0, block: int = 4) -> None:
        self.reply = reply
        self.step_s = step_s
        self.block = block
        self.tokenizer = Tokenizer()
        self.cache: list[list[int]] = []
        self.prefilled = 0  # prompt tokens computed (not found cached), over every request
        self.requests: list[tuple[str, SamplingParams]] = []
        self.aborted: set[str] = set()
        self.running = 0
        self.shut = False

    def get_tokenizer(self) -> Tokenizer:
        return self.tokenizer

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    def shutdown(self) -> None:
        self.shut = True

    def _cached(self, ids: list[int]) -> int:
        best = 0
        for held in self.cache:
            n = 0
            for a, b in zip(ids, held, strict=False):
                if a != b:
                    break
                n += 1
            best = max(best, n)
        best = min(best, len(ids) - 1)  # the last prompt token is always computed
        return best - best % self.block

    def _choice(self, prompt: str, params: SamplingParams, index: int) -> tuple[list[int], str]:
        """(token ids as computed, finish reason); a stop string's tokens are computed."""
        key = f"{params.seed}|{index}|{prompt}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        pieces = self.tokenizer.pieces(self.reply(prompt, index, rng))
        text, out = "", []
        for piece in pieces[: params.max_tokens]:
            out.append(self.tokenizer.id(piece))
            text += piece
            if any(s and s in text for s in params.stop or []):
                return out, "stop"
        return out, "length" if len(pieces) > params.max_tokens else "stop"

    def _text(self, ids: list[int], stop: list[str] | None) -> str:
        text = self.tokenizer.decode(ids)
        cut = [text.index(s) for s in stop or [] if s and s in text]
        return text[: min(cut)] if cut else text

    def _logprobs(self, ids: list[int], k: int) -> list[dict[int, Logprob]]:
        out = []
        for pos, tid in enumerate(ids):
            mine = -0.05 * (1 + pos % 4)
            alts = {tid: Logprob(mine, 1, self.tokenizer.words[tid])}
            for j in range(k):
                other = self.tokenizer.id(f" alt{j}")
                if other != tid:
                    alts[other] = Logprob(mine - 1.0 - j, j + 2, f" alt{j}")
            out.append(alts)
        return out

    async def generate(
        self, prompt: str, sampling_params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        params = sampling_params
        self.requests.append((prompt, params))
        ids = self.tokenizer.encode(prompt)
        cached = self._cached(ids)
        self.prefilled += len(ids) - cached  # once for all n choices
        self.cache.append(ids)
        choices = [self._choice(prompt, params, i) for i in range(params.n)]
        longest = max(len(c[0]) for c in choices)
        self.running += 1
        try:
            for step in range(1, longest + 1):
                if self.step_s:
                    await asyncio.sleep(self.step_s)
                else:
                    await asyncio.sleep(0)
                if request_id in self.aborted:
                    return
                outputs = []
                for i, (tokens, reason) in enumerate(choices):
                    seen = tokens[:step]
                    done = len(seen) == len(tokens)
                    outputs.append(
                        CompletionOutput(
                            index=i,
                            text=self._text(seen, params.stop),
                            token_ids=seen,
                            cumulative_logprob=None,
                            logprobs=(
                                self._logprobs(seen, params.logprobs)
                                if params.logprobs is not None
                                else None
                            ),
                            finish_reason=reason if done else None,
                        )
                    )
                yield RequestOutput(
                    request_id,
                    prompt,
                    ids,
                    outputs,
                    finished=step == longest,
                    num_cached_tokens=cached,
                )
        finally:
            self.running -= 1
