"""How a problem becomes a request: the system prompts (chain of thought, program-aided,
both), the sampling limits and the stop strings every strategy shares."""

from __future__ import annotations

import functools

from pydantic import BaseModel, ConfigDict, Field

from ponder.types import AnswerWith, Message, Problem

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

# Tool-integrated reasoning (ponder.runtime.tools): the model runs Python as it reasons.
TIR_SYSTEM_PROMPT = (
    "Solve the problem step by step. Where a calculation helps, write Python code in a "
    "```python block: it will be run and its output shown to you in an ```output block, so "
    "never write the output yourself. Put the final answer within \\boxed{}."
)
TOOLS_NOTE = (
    "You may run Python: write it in a ```python block and its output will be shown to you in "
    "an ```output block."
)
# Prompted thinking, for a thinking budget (ponder.runtime.thinking).
THINK_SYSTEM_PROMPT = (
    "First think step by step between <think> and </think>. Then give the final answer "
    "within \\boxed{}."
)
# "Mind Your Step": chain of thought can hurt; no reasoning at all, the answer alone.
NO_COT_SYSTEM_PROMPT = (
    "Give only the final answer, within \\boxed{}, with no explanation and no working."
)


class ToolSettings(BaseModel):
    """How a sample may call Python (plain data, part of the strategy's prompting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_calls: int = Field(default=4, ge=0, description="Python calls per sample at most")
    timeout_s: float = Field(default=5.0, gt=0, description="seconds per call")
    max_output_chars: int = Field(
        default=800, ge=64, description="output shown to the model (the rest is cut, and said)"
    )
    hint: bool = Field(
        default=False,
        description="START's hint: a sample that answers without running code is asked to "
        "check its answer with Python (once)",
    )


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
    tir_system: str = TIR_SYSTEM_PROMPT
    no_cot_system: str = NO_COT_SYSTEM_PROMPT
    tools: ToolSettings = Field(default_factory=ToolSettings)
    think_system: str = THINK_SYSTEM_PROMPT
    think_budget: int | None = Field(
        default=None, ge=1, description="thinking tokens at most per sample (s1 budget forcing)"
    )
    think_min: int = Field(
        default=0, ge=0, description='thinking tokens at least: an early end gets "Wait," (s1)'
    )

    def messages(self, problem: Problem, answer_with: AnswerWith = "reasoning") -> list[Message]:
        return list(self.conversation(problem, answer_with))

    def conversation(
        self, problem: Problem, answer_with: AnswerWith = "reasoning"
    ) -> tuple[Message, ...]:
        """The problem's messages as one shared tuple (the same object for the same system
        prompt and question while the memo holds it: never change its messages)."""
        if answer_with == "reasoning":
            system = problem.system or (
                self.system if self.think_budget is None else self.think_system
            )
        elif answer_with == "program":
            system = self.program_system
        elif answer_with == "both":
            system = self.both_system
        elif answer_with == "tir":
            # a task's own instructions (code sets) keep their say, with the tool added
            system = f"{problem.system}\n\n{TOOLS_NOTE}" if problem.system else self.tir_system
        elif answer_with == "no_cot":
            system = problem.system or self.no_cot_system
        else:
            raise ValueError(f"unknown answer_with {answer_with!r}")
        return _conversation(system, problem.question)
