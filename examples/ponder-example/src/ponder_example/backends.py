"""A backend: an offline "model" that answers the first `a op b` in the question."""

from __future__ import annotations

import operator
import re

from ponder.errors import BackendError
from ponder.lm import BackendConfig, Capabilities, Progress, backend
from ponder.lm.protocol import LanguageModel, Watch
from ponder.types import Completion, Generation, GenRequest, Message, ModelInfo

_EXPR = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/×x])\s*(-?\d+(?:\.\d+)?)")
_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "×": operator.mul,
    "x": operator.mul,
    "/": operator.truediv,
}


class Arithmetic:
    def __init__(self, slots: int) -> None:
        self.info = ModelInfo(name="arithmetic")
        self.capabilities = Capabilities(
            n=True, logprobs=False, raw_prefix=False, render=False, slots=slots
        )

    async def prepare(self) -> Capabilities:
        return self.capabilities

    async def generate(self, req: GenRequest) -> Generation:
        question = req.messages[-1].content if req.messages else (req.prompt or "")
        found = _EXPR.search(question)
        if found is None:
            text = "I only do arithmetic."
        else:
            a, op, b = found.groups()
            value = _OPS[op](float(a), float(b))
            shown = int(value) if value == int(value) else value
            text = f"{a} {op} {b} = {shown}, so the answer is \\boxed{{{shown}}}."
        words = len(text.split())
        choices = [Completion(text=text, completion_tokens=words) for _ in range(req.n)]
        return Generation(choices=choices, prompt_tokens=len(question.split()))

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        raise BackendError("arithmetic: no token streams")

    async def render(self, messages: list[Message]) -> str:
        raise BackendError("arithmetic: no chat template")

    async def aclose(self) -> None:
        return None


@backend("arithmetic", summary="an offline arithmetic 'model' (the first a op b in a question)")
def open_arithmetic(config: BackendConfig, progress: Progress | None = None) -> LanguageModel:
    return Arithmetic(config.slots)
