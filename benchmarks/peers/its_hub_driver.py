"""Run one its-hub 1.2.0 method over a list of problems (executed with its-hub's own venv python).

Reads a JSON job on stdin:
    {"base_url", "model", "problems": [{"id", "question"}], "method", "options", "n",
     "temperature", "max_tokens", "system", "concurrency"}
and writes JSON lines to stdout: first {"event": "ready", ...}, then one line per problem
{"id", "text", "peer_usage", "seconds", "info"} (or "error" instead of "text").

Methods (its-hub's classes, its own defaults except the shared n / temperature / max_tokens /
system prompt):
    self_consistency  its_hub.SelfConsistency(consistency_space_projection_func=...)
    adaptive          its_hub.AdaptiveSelfConsistency(threshold=0.75, ...)  2 → 4 → 8 samples
    beta              its_hub.BetaSelfConsistency(confidence_threshold=0.95, ...)  all n launched,
                      the rest cancelled once 1 − I_0.5(v1+1, v2+1) ≥ 0.95
with `algorithm.ainfer(lm, messages, budget=n, return_response_only=False)` on an
`its_hub.OpenAICompatibleLanguageModel(endpoint, api_key, model_name, system_prompt,
max_completion_tokens, temperature)`; one algorithm object for all problems, up to
`concurrency` problems in flight.

Option `orchestrator` (how many requests reach the server at once):
    slots (default)  an `LMOrchestrator` whose limit is an asyncio semaphore of
                     `max_concurrency` (default 8, the server's slots, as ponder's scheduler
                     keeps it), the documented way to bound parallel calls
                     (docs/orchestration.md: AbstractOrchestrator enforces rate limits).
    library          the library's own `LMOrchestrator(max_concurrency=32)` unchanged. Two
                     problems with it here: (1) its `_ThreadSafeAsyncSemaphore` acquires in a
                     thread (`run_in_executor(None, threading.Semaphore.acquire)`); a task
                     cancelled while that thread waits (Beta cancels the rest of its budget)
                     never releases the permit it then gets, so permits leak and a shared
                     orchestrator deadlocks (seen with max_concurrency=8 and a fake LM: 2 of 8
                     permits left after one round of 8 problems, deadlock in the next);
                     (2) 32 requests queued at an 8-slot llama.cpp wait their turn inside
                     aiohttp's default 300 s total timeout (its-hub sets none), and a timeout
                     is retried from the back of the queue.

Option `projection` (what the vote is taken over):
    boxed (default)  the docs' math example (docs/algorithms.md, "Text-Based Example"): the last
                     `\\boxed{[^{}]+}` of the response, "" when there is none. Quirks: every
                     response without a box projects to "" and those vote together (they can
                     win); nested braces (`\\boxed{\\frac{1}{2}}`) never match; "18" and "18.00"
                     and "$18" are different answers (string equality).
    text             the library's default (`_default_projection_func`): the whole stripped
                     response, so on free-form reasoning every sample is its own cluster and
                     the "vote" is a random pick among n singletons.
Ties are broken with `random.choice` on the global RNG (unseeded in the library); this driver
seeds it (`seed`, default 0) so a rerun makes the same picks.

Quirks seen (1.2.0): the adaptive and Beta stopping rules count the "" of unboxed responses as
an answer, so two truncated responses "agree" and stop adaptive at 2 samples (smoke, problem 1);
Beta's rule 1 − I_0.5(v1+1, v2+1) ≥ 0.95 first holds at 4–0 (0.969) or 6–1 (0.965), so at
n=4 it can never save a sample and at n=8 it stops only after 4 unanimous or 7 samples; the LM
client calls any endpoint whose URL lacks "openai" a vLLM one and puts a literal
`"extra_body": {}` into the JSON body (llama.cpp ignores it); plain `pip install its-hub`
installs no LM client (the [lm] extra is needed, the ImportError is swallowed).

Reported usage (`peer_usage`) is its-hub's own `GenerationUsage`: one `usage` per HTTP call. Beta
cancels the calls still running when it stops and never counts them, though the server may have
generated part of them: the server's /metrics delta is the truth.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from its_hub import (
    AdaptiveSelfConsistency,
    BetaSelfConsistency,
    OpenAICompatibleLanguageModel,
    SelfConsistency,
)
from its_hub.api import ChatMessage, ChatMessages
from its_hub.core.orchestrator import LMOrchestrator


def extract_boxed(text: str) -> str:
    """The its-hub docs' projection for math problems, verbatim in behaviour."""
    matches = re.findall(r"\\boxed\{([^{}]+)\}", text)
    return matches[-1] if matches else ""


PROJECTIONS: dict[str, Callable[[str], str] | None] = {"boxed": extract_boxed, "text": None}


class SlotOrchestrator(LMOrchestrator):
    """its-hub's LMOrchestrator, its limit an asyncio semaphore: a cancelled waiter gives its
    place back (the library's thread-backed semaphore leaks it)."""

    def __init__(self, max_concurrency: int) -> None:
        super().__init__(max_concurrency)
        self._semaphore = asyncio.Semaphore(max_concurrency)


def make_algorithm(method: str, options: dict[str, Any]) -> SelfConsistency:
    """The its-hub algorithm for `method`, with its own defaults unless an option says else."""
    projection = PROJECTIONS[options.get("projection", "boxed")]
    if options.get("orchestrator", "slots") == "library":
        orchestrator = LMOrchestrator(**_pick(options, {"max_concurrency": int}))
    else:
        orchestrator = SlotOrchestrator(int(options.get("max_concurrency", 8)))
    if method == "self_consistency":
        return SelfConsistency(
            consistency_space_projection_func=projection, orchestrator=orchestrator
        )
    if method == "adaptive":
        return AdaptiveSelfConsistency(
            consistency_space_projection_func=projection,
            orchestrator=orchestrator,
            **_pick(options, {"threshold": float}),
        )
    if method == "beta":
        return BetaSelfConsistency(
            consistency_space_projection_func=projection,
            orchestrator=orchestrator,
            **_pick(options, {"confidence_threshold": float}),
        )
    raise SystemExit(f"its_hub: unknown method {method!r} (self_consistency, adaptive, beta)")


def _pick(options: dict[str, Any], types: dict[str, type]) -> dict[str, Any]:
    return {k: t(options[k]) for k, t in types.items() if k in options}


async def solve(
    algorithm: SelfConsistency,
    lm: OpenAICompatibleLanguageModel,
    problem: dict[str, Any],
    n: int,
    gate: asyncio.Semaphore,
) -> dict[str, Any]:
    """One problem: the algorithm's selected response and its-hub's own account of the run."""
    async with gate:
        started = time.perf_counter()
        messages = ChatMessages([ChatMessage(role="user", content=problem["question"])])
        try:
            result = await algorithm.ainfer(lm, messages, budget=n, return_response_only=False)
        except Exception as e:  # reported per problem, the run goes on
            return {
                "id": problem["id"],
                "error": f"{type(e).__name__}: {e}",
                "seconds": time.perf_counter() - started,
            }
        seconds = time.perf_counter() - started
    counts = result.response_counts.most_common()
    top = counts[0][1] if counts else 0
    usage = result.usage
    return {
        "id": problem["id"],
        "text": result.the_one.get("content") or "",
        "seconds": seconds,
        "peer_usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "calls": usage.num_calls,
        },
        "info": {
            "samples": len(result.responses),
            "selected_index": result.selected_index,
            # the projected values voted on (whole texts cut short) and their counts
            "votes": [[str(v)[:60], c] for v, c in counts[:8]],
            "tie": sum(1 for _, c in counts if c == top) > 1,
        },
    }


async def main() -> None:
    job = json.load(sys.stdin)
    options = dict(job.get("options") or {})
    random.seed(int(options.pop("seed", 0)))
    started = time.perf_counter()
    algorithm = make_algorithm(job["method"], options)
    lm = OpenAICompatibleLanguageModel(
        endpoint=job["base_url"],
        api_key="sk-no-key",
        model_name=job["model"],
        system_prompt=job["system"],
        max_completion_tokens=job["max_tokens"],
        temperature=job["temperature"],
    )
    emit(
        {
            "event": "ready",
            "setup_seconds": time.perf_counter() - started,
            "versions": {"its_hub": version("its_hub")},
            "endpoint_type": lm.endpoint_type,
        }
    )
    gate = asyncio.Semaphore(int(job.get("concurrency", 8)))
    async with lm:
        tasks = [
            asyncio.create_task(solve(algorithm, lm, p, int(job["n"]), gate))
            for p in job["problems"]
        ]
        for done in asyncio.as_completed(tasks):
            emit(await done)


def emit(row: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
