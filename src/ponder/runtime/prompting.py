"""How a problem becomes a request: the system prompts (chain of thought, program-aided,
both), the sampling limits and the stop strings every strategy shares."""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import BaseModel, Field

from ponder.types import Message, Problem

# Measured on the first 30 GSM8K test problems, 0.5B greedy: this prompt 7/30; without its
# second sentence 4/30 (the model writes Python and invents its output); with two worked
# examples 0/30.
DEFAULT_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}. "
    "Do not write code; solve with arithmetic in words."
)
# Program-aided answering (PAL): the sandbox runs the program; what it prints is the answer.
PROGRAM_SYSTEM_PROMPT = (
    "Solve the problem by writing a Python program that computes the answer and prints only "
    "the final answer. Put the whole program in one ```python code block."
)
# CoT × PoT: two answers per candidate that a cross-check verifier compares.
BOTH_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}. Then check it: "
    "write a Python program in one ```python code block that computes the answer and prints it."
)
# Coder models like to run code in their heads and then invent its printed output.
DEFAULT_STOP = ["```output"]

AnswerWith = Literal["reasoning", "program", "both"]


@functools.lru_cache(maxsize=4096)
def _conversation(system: str, question: str) -> tuple[Message, Message]:
    """A question's two messages, made once per (system prompt, question): a search asks for
    them on every request (a memo of a pure function: the messages are never changed)."""
    return Message(role="system", content=system), Message(role="user", content=question)


class Prompting(BaseModel):
    """How a problem becomes a request: shared by every strategy."""

    system: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = Field(default=512, ge=1)
    stop: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP))
    # Top-k log-probabilities asked for with every sample, where the backend gives them: the
    # candidates' confidence signals are read from them (ponder.signals). 0: none.
    logprobs: int = Field(default=20, ge=0, le=20)

    program_system: str = PROGRAM_SYSTEM_PROMPT
    both_system: str = BOTH_SYSTEM_PROMPT

    def messages(self, problem: Problem, answer_with: AnswerWith = "reasoning") -> list[Message]:
        return list(self.conversation(problem, answer_with))

    def conversation(
        self, problem: Problem, answer_with: AnswerWith = "reasoning"
    ) -> tuple[Message, ...]:
        """The problem's messages as one shared tuple (the same object for the same system
        prompt and question while the memo holds it: never change its messages)."""
        if answer_with == "reasoning":
            system = problem.system or self.system
        elif answer_with == "program":
            system = self.program_system
        elif answer_with == "both":
            system = self.both_system
        else:
            raise ValueError(f"unknown answer_with {answer_with!r}")
        return _conversation(system, problem.question)
