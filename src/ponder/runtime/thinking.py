"""Thinking budgets (s1's budget forcing, Muennighoff et al., 2025) on a model that thinks when
asked to: the model thinks between <think> and </think>, then answers.

    thought ← generate("<think>", stop at </think>, at most B tokens)        (reasoning tokens)
    while thought ended before m tokens:        thought += "Wait,"; go on (at most B in all)
    if the budget ran out:                      close the thinking and ask for the answer
    answer ← generate(thought + "</think>")                                  (answer tokens)

Thinking never exceeds B tokens (each round asks for at most what is left), and those tokens are
counted apart (`Usage.reasoning_tokens`). Each round continues the same text on the same slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ponder.lm.protocol import LanguageModel, Watch
from ponder.runtime.budget import Ledger
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Lease, Scheduler
from ponder.runtime.tools import continuation, one_watch
from ponder.types import Completion, Generation, GenRequest, Message

OPEN, CLOSE = "<think>\n", "</think>"
WAIT = "\nWait,"
# the end of thinking forced when the budget runs out, and the answer asked for
FORCED = f"\n{CLOSE}\n\nFinal answer: \\boxed{{"


@dataclass
class ThinkLoop:
    policy: LanguageModel
    scheduler: Scheduler
    ledger: Ledger
    prompting: Prompting

    async def generate(
        self, req: GenRequest, lease: Lease | None, watch: Callable[[], Watch] | None = None
    ) -> Generation:
        """`req` (one choice) thought through within the budget, then answered; `watch` sees
        every token written and may stop the sample (a thought stopped is not answered)."""
        budget = self.prompting.think_budget
        assert budget is not None
        head, messages = await continuation(
            self.policy, self.scheduler, self.ledger, req, "a thinking budget"
        )
        watch = one_watch(watch)
        thought, used, rounds = "", 0, []
        capped = False
        prompt_tokens = cached = 0
        while True:
            left = budget - used
            if left <= 0:
                capped = True
                break
            gen = await self._round(
                req, head, messages, OPEN + thought, left, [CLOSE], True, lease, watch
            )
            (choice,) = gen.choices
            prompt_tokens += gen.prompt_tokens
            cached += gen.cached_tokens
            rounds.append(choice)
            thought += choice.text
            used += choice.completion_tokens
            if choice.finish_reason == "stopped":
                done = Completion(
                    text=OPEN + thought,
                    completion_tokens=used,
                    finish_reason="stopped",
                    logprobs=None,
                    reasoning=thought,
                )
                return Generation(
                    choices=[done],
                    prompt_tokens=prompt_tokens,
                    cached_tokens=cached,
                    reasoning_tokens=used,
                )
            if choice.finish_reason == "length":
                capped = True
                break
            if used < self.prompting.think_min:
                thought += WAIT  # s1: not done yet (an inserted word, not a generated one)
                continue
            break
        close = FORCED if capped else f"\n{CLOSE}\n\n"
        written = OPEN + thought.rstrip() + close
        gen = await self._round(
            req, head, messages, written, req.max_tokens, list(req.stop), False, lease, watch
        )
        (answer,) = gen.choices
        done = Completion(
            text=written + answer.text,
            completion_tokens=used + answer.completion_tokens,
            finish_reason=answer.finish_reason,
            logprobs=None,
            reasoning=thought,
        )
        return Generation(
            choices=[done],
            prompt_tokens=prompt_tokens + gen.prompt_tokens,
            cached_tokens=cached + gen.cached_tokens,
            reasoning_tokens=used,
        )

    async def _round(
        self,
        req: GenRequest,
        head: str | None,
        messages: list[Message] | None,
        text: str,
        max_tokens: int,
        stop: list[str],
        thinking: bool,
        lease: Lease | None,
        watch: Callable[[], Watch] | None,
    ) -> Generation:
        if head is not None:
            one = replace(req, prompt=head + text, messages=None, continue_final=False)
        else:
            assert messages is not None
            one = replace(
                req,
                messages=[*messages, Message(role="assistant", content=text)],
                continue_final=True,
            )
        one = replace(one, n=1, max_tokens=max(1, max_tokens), stop=stop, reasoning=thinking)
        return await self.scheduler.generate(self.policy, one, self.ledger, lease, watch)
