"""Tool-integrated reasoning (TIR): the model calls Python in the middle of its reasoning and
reads the real output (ToRA; START's tool use with hint insertion).

    text ← ""
    loop:
        text += generate(prompt + text)                  stops where a ```python block closes
                                                         (or where the model starts an
                                                         ```output block to invent one)
        if the text ends with a finished python block and calls < K:
            output ← run it in the sandbox, after the sample's earlier blocks (a notebook)
            text += ```output block with the real output (a traceback is an output too)
        elif hint and no call was made and the text holds a final answer:
            text += hint                                  (START: check it with code)
        else: done

Each round continues the same sample on the same backend slot (a lease), so the prefix cache
holds everything written so far and only the inserted output is prefilled. Tool time is
charged to the `tool` role; every call is kept with the sample (`Candidate.tool_calls`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ponder.errors import UsageError
from ponder.lm.protocol import LanguageModel, Watch
from ponder.runtime.budget import Ledger
from ponder.runtime.prompting import ToolSettings
from ponder.runtime.scheduler import Lease, Scheduler
from ponder.sandbox import Sandbox
from ponder.types import Completion, Generation, GenRequest, Message, ToolCall

ROLE = "tool"
OUTPUT_OPEN = "```output"
FENCE_CLOSE = "\n```\n"
STOPS = [OUTPUT_OPEN, FENCE_CLOSE]
_OPEN = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n")


HINT = "\n\nWait, let me check this with Python.\n```python\n"


def open_block(text: str) -> str | None:
    """The code of a ```python block that `text` leaves open at its end (the stop string cut
    its closing fence, or the model began an ```output block after it); None otherwise."""
    starts = list(_OPEN.finditer(text))
    if not starts:
        return None
    last = starts[-1]
    body = text[last.end() :]
    closed = body.find("\n```")
    if closed >= 0:
        rest = body[closed + 4 :].strip()
        if rest:  # closed and written past: nothing left to run
            return None
        body = body[:closed]
    code = body.strip("\n")
    return code or None


def notebook_program(earlier: list[str], code: str) -> str:
    """A program that runs the sample's earlier blocks quietly (restoring their state, as a
    notebook's kernel would hold it: a block that raised keeps what it did before the error),
    then `code` with its output shown; an error in `code` is printed as a notebook prints it
    (the cell's own frames with their source lines, not this wrapper's)."""
    return (
        "import contextlib as _c, io as _io, linecache as _lc, sys as _s, traceback as _tb\n"
        f"for _block in {earlier!r}:\n"
        "    with _c.redirect_stdout(_io.StringIO()), _c.redirect_stderr(_io.StringIO()):\n"
        "        try:\n"
        "            exec(compile(_block, '<earlier cell>', 'exec'), globals())\n"
        "        except BaseException:\n"
        "            pass\n"
        f"_cell = {code!r}\n"
        "_lc.cache['<cell>'] = (len(_cell), None, _cell.splitlines(True), '<cell>')\n"
        "try:\n"
        "    exec(compile(_cell, '<cell>', 'exec'), globals())\n"
        "except SystemExit:\n"
        "    raise\n"
        "except BaseException as _e:\n"
        "    _t = _tb.TracebackException.from_exception(_e)\n"
        "    _t.stack = _tb.StackSummary.from_list(list(_t.stack)[1:])\n"
        "    _m = ''.join(_t.format())\n"
        # Python 3.11's traceback module leaves out the interpreter's "Did you mean" (3.12 has it)
        "    if isinstance(_e, NameError) and _e.name and 'Did you mean' not in _m:\n"
        "        import builtins as _b, difflib as _d\n"
        "        _names = [k for k in globals() if not k.startswith('_')] + dir(_b)\n"
        "        _near = _d.get_close_matches(_e.name, _names, n=1)\n"
        "        if _near:\n"
        "            _m = _m.rstrip('\\n') + f'. Did you mean: {_near[0]!r}?\\n'\n"
        "    _s.stderr.write(_m)\n"
        "    _s.exit(1)\n"
    )


def replayable(call: ToolCall) -> bool:
    """Whether a later block's notebook re-runs this one first: a block that ran, or raised
    (what it did before the error stands, as in a kernel); not one a limit stopped (it would
    only hit the limit again)."""
    return call.ok or (call.reason or "").startswith("exit code")


def shown(out: str, limit: int) -> tuple[str, bool]:
    """What the model is shown of an output: at most `limit` characters, cut in the middle."""
    if len(out) <= limit:
        return out, False
    half = limit // 2
    cut = len(out) - 2 * half
    return f"{out[:half]}\n… ({cut} characters cut) …\n{out[-half:]}", True


async def run_call(
    sandbox: Sandbox, ledger: Ledger, earlier: list[str], code: str, settings: ToolSettings
) -> ToolCall:
    """Run one block after the earlier ones; charged to the ledger's `tool` role."""
    started = time.monotonic()
    result = await sandbox.run(
        notebook_program(earlier, code),
        sandbox.limits.model_copy(update={"timeout_s": settings.timeout_s}),
    )
    seconds = time.monotonic() - started
    ledger.record(ROLE, "sandbox", (1, 0, 0, 0, seconds, 0.0, 0.0, 0))
    out = result.stdout
    if not result.ok:
        lines = result.stderr.strip().splitlines()
        tail = "\n".join(lines[-8:])  # the traceback's end
        why = result.reason or f"exit code {result.exit_code}"
        if lines and why == f"exit code {result.exit_code}: {lines[-1][:200]}":
            out = f"{out}{tail}"  # an error the traceback's last line already names
        else:
            out = f"{out}{tail}\n({why})".strip() if tail or out else f"({why})"
    text, truncated = shown(out.rstrip("\n"), settings.max_output_chars)
    return ToolCall(
        code=code,
        output=text,
        ok=result.ok,
        seconds=round(seconds, 3),
        reason=result.reason,
        truncated=truncated or result.reason == "output limit",
    )


@dataclass
class ToolLoop:
    """One sample written with Python calls (see the module docstring)."""

    policy: LanguageModel
    scheduler: Scheduler
    ledger: Ledger
    sandbox: Sandbox
    settings: ToolSettings
    # told of each call as it ends (the server streams it as progress)
    report: Callable[..., None] = field(default=lambda event, **data: None)

    async def generate(
        self, req: GenRequest, lease: Lease | None, watch: Callable[[], Watch] | None = None
    ) -> Generation:
        """`req` (one choice) continued round by round until it answers, stops, runs out of
        tokens or of calls; the rounds' tokens and log-probabilities add up. `watch` sees
        every token the model writes (not the tool's output) and may stop the sample: the
        round stops there and no call follows."""
        head, messages = await continuation(
            self.policy, self.scheduler, self.ledger, req, "tool-integrated reasoning"
        )
        watch = one_watch(watch)
        text = ""
        calls: list[ToolCall] = []
        rounds: list[Completion] = []
        prompt_tokens = cached = 0
        budget = req.max_tokens
        hinted = False
        while True:
            round_req = self._continue(req, head, messages, text, budget, len(rounds))
            gen = await self.scheduler.generate(self.policy, round_req, self.ledger, lease, watch)
            (choice,) = gen.choices
            prompt_tokens += gen.prompt_tokens
            cached += gen.cached_tokens
            rounds.append(choice)
            text += choice.text
            budget -= choice.completion_tokens
            code = open_block(text) if choice.finish_reason == "stop" else None
            if code is not None and len(calls) < self.settings.max_calls and budget > 0:
                call = await run_call(
                    self.sandbox,
                    self.ledger,
                    [c.code for c in calls if replayable(c)],
                    code,
                    self.settings,
                )
                calls.append(call)
                self.report("tool_call", ok=call.ok, seconds=call.seconds, output=call.output[:200])
                text = text.rstrip()
                if not text.endswith("```"):
                    text += "\n```"
                text += f"\n{OUTPUT_OPEN}\n{call.output}\n```\n"
                continue
            if (
                self.settings.hint
                and not hinted
                and not calls
                and budget > 0
                and choice.finish_reason == "stop"
                and "\\boxed" in text
            ):
                hinted = True
                self.report("hint")
                text += HINT
                continue
            break
        done = Completion(
            text=text,
            completion_tokens=sum(c.completion_tokens for c in rounds),
            finish_reason=rounds[-1].finish_reason,
            logprobs=(
                [t for c in rounds for t in (c.logprobs or [])]
                if all(c.logprobs is not None for c in rounds)
                else None
            ),
        )
        done.tool_calls = calls
        return Generation(choices=[done], prompt_tokens=prompt_tokens, cached_tokens=cached)

    def _continue(
        self,
        req: GenRequest,
        head: str | None,
        messages: list[Message] | None,
        text: str,
        budget: int,
        round_: int,
    ) -> GenRequest:
        seed = None if req.seed is None else req.seed + round_
        stop = list(dict.fromkeys([*req.stop, *STOPS]))
        if head is not None:
            return replace(
                req,
                prompt=head + text,
                messages=None,
                max_tokens=max(1, budget),
                stop=stop,
                seed=seed,
                continue_final=False,
            )
        assert messages is not None
        if not text:
            return replace(req, max_tokens=max(1, budget), stop=stop, seed=seed)
        return replace(
            req,
            messages=[*messages, Message(role="assistant", content=text)],
            continue_final=True,
            max_tokens=max(1, budget),
            stop=stop,
            seed=seed,
        )


def one_watch(watch: Callable[[], Watch] | None) -> Callable[[], Watch] | None:
    """One watch for all the rounds of a sample (a sliding window of confidence runs on
    across a tool call), however many times the scheduler asks for one."""
    if watch is None:
        return None
    made = watch()
    return lambda: made


async def continuation(
    policy: LanguageModel, scheduler: Scheduler, ledger: Ledger, req: GenRequest, what: str
) -> tuple[str | None, list[Message] | None]:
    """How later rounds continue a sample: the rendered conversation as a raw prompt (the
    slot's prefix cache then holds everything written), or the messages a final assistant
    message continues (chat-only servers); a usage error naming `what` otherwise. A server
    is probed first (on its first request), so what it can do is known, not assumed."""
    if req.prompt is not None:
        return req.prompt, None
    assert req.messages is not None
    caps = await scheduler.prepared(policy, ledger)
    if caps.render and caps.raw_prefix:
        return await policy.render(req.messages), None
    if caps.continue_final:
        return None, list(req.messages)
    raise UsageError(
        f"{what} continues the model's text; the backend {policy.info.name} can neither "
        "render its chat template nor continue a final assistant message"
    )
