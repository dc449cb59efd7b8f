"""`ponder solve`: one question, its answer, trace and compute bill."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ponder.cli.common import (
    AnswerWithOpt,
    ApiKeyOpt,
    BackendOpt,
    BackendOptionOpt,
    BaseUrlOpt,
    BudgetDollarsOpt,
    BudgetSecondsOpt,
    BudgetTokensOpt,
    CtxSizeOpt,
    MaxTokOpt,
    ModelOpt,
    OptionOpt,
    ParamsOpt,
    PriceOpt,
    RouterOpt,
    SeedOpt,
    SlotsOpt,
    StrategyOpt,
    SystemOpt,
    TemperatureOpt,
    ThinkBudgetOpt,
    ThinkMinOpt,
    ThreadsOpt,
    TimeoutOpt,
    VerifierOpt,
    WidthOpt,
    app,
    backend_config,
    build_strategy,
    err,
    open_engine,
    out,
    prompting,
    set_from_flag,
    strategy_options,
)
from ponder.errors import UsageError, not_utf8
from ponder.lm.protocol import Capabilities, LanguageModel
from ponder.plugins import parse_options
from ponder.runtime.budget import Budget
from ponder.runtime.strategy import STEP, check_thinking
from ponder.types import Result, Usage, blank


@app.command()
def solve(
    question: Annotated[
        str, typer.Argument(help="The question to answer; - reads it from standard input")
    ],
    strategy: StrategyOpt = "vote",
    n: WidthOpt = None,
    option: OptionOpt = None,
    router: RouterOpt = None,
    temperature: TemperatureOpt = None,
    verifier: VerifierOpt = None,
    answer_with: AnswerWithOpt = None,
    system: SystemOpt = None,
    think_budget: ThinkBudgetOpt = None,
    think_min: ThinkMinOpt = 0,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    backend: BackendOpt = None,
    backend_option: BackendOptionOpt = None,
    threads: ThreadsOpt = None,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = None,
    seed: SeedOpt = None,
    max_tokens: MaxTokOpt = 512,
    slots: SlotsOpt = 8,
    ctx_size: CtxSizeOpt = 2048,
    price: PriceOpt = None,
    parameters: ParamsOpt = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_seconds: BudgetSecondsOpt = None,
    budget_dollars: BudgetDollarsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole Result as JSON")] = False,
    trace: Annotated[
        Path | None,
        typer.Option("--trace", help="Append the search tree (step strategies) to this JSONL file"),
    ] = None,
    gold: Annotated[
        str | None, typer.Option("--gold", help="The reference answer, kept in the trace")
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Say what the backend supports (a server: as probed) first"
        ),
    ] = False,
) -> None:
    """Answer one question and print the answer with its compute bill."""
    if question == "-":  # (an argument is capped at 128 KiB; a file's text is not)
        try:
            question = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(not_utf8("standard input", e)) from None
    if blank(question):
        raise UsageError("the question is empty")
    # everything is checked before the model loads
    options = strategy_options(
        option,
        temperature=temperature,
        verifier=verifier,
        answer_with=answer_with,
    )
    if router is not None:
        if strategy != "auto":
            raise UsageError("--router is read by -s auto")
        set_from_flag(options, "router", str(router), "--router")
    strat = build_strategy(strategy, n, options)
    asking = prompting(max_tokens, system, think_budget, think_min)
    check_thinking(strat, asking, "--think-budget")
    if gold is not None and trace is None:  # it is kept only in a trace
        raise UsageError("--gold is kept in the search trace: give --trace FILE with it")
    if trace is not None:  # before the compute, not after it
        if STEP not in strat.capabilities:
            raise UsageError(f"--trace: strategy '{strat.name}' keeps no search tree")
        if trace.is_dir():
            raise UsageError(f"--trace {trace}: a directory; give a .jsonl file to append to")
        # (a path ponder cannot write would otherwise be found only after the compute)
        append_line(trace, None)
    budget = Budget(tokens=budget_tokens, seconds=budget_seconds, dollars=budget_dollars)
    config = backend_config(
        model=model,
        base_url=base_url,
        backend=backend,
        api_key=api_key,
        slots=slots,
        ctx_size=ctx_size,
        price=price,
        parameters=parameters,
        timeout=timeout,
        threads=threads,
        options=parse_options(backend_option or [], "--backend-option"),
    )

    async def go() -> Result:
        engine = open_engine(config, asking)
        async with engine:
            if verbose:
                describe_backend(engine.policy, await engine.policy.prepare())
            with err.status(f"{strat.name}: thinking…"):
                return await engine.solve(question, strat, seed=seed, budget=budget)

    result = asyncio.run(go())
    if as_json:
        print(result.to_json())
    else:
        print_result(result)
    if result.error:  # (what was computed is above; the error, as every error, on stderr)
        err.print(f"[red]error: {result.error}[/red]")
    if trace is not None:  # after the answer is out: a trace that fails now loses nothing else
        write_trace(trace, result, gold)
    if result.error:
        raise typer.Exit(1)


def describe_backend(lm: LanguageModel, caps: Capabilities) -> None:
    """One line on stderr of what the backend supports, with how a step search continues a
    partial solution there (and, on a server, what the probe tried)."""
    n = "n" if caps.n else "no n"
    lp = "logprobs" if caps.logprobs else "no logprobs"
    raw = "raw prompts" if caps.raw_prefix else "no raw prompts"
    pin = ", pinned to slots" if caps.pin_slots else ""
    how = caps.continuation or ("the chat template" if caps.render else "none")
    err.print(
        f"backend {lm.info.name}: {n}, {lp}, {raw}, {caps.slots} slots{pin}; continuation: {how}",
        markup=False,
    )
    if caps.continuation_note:
        err.print(f"  tried {caps.continuation_note}", markup=False)


def write_trace(path: Path, result: Result, gold: str | None) -> None:
    """One line per search: the question, answer, strategy, gold (if given) and every node."""
    if "tree" not in result.info:
        raise UsageError(f"--trace: strategy '{result.strategy}' keeps no search tree")
    line = {
        "question": result.question,
        "answer": result.answer,
        "gold": gold,
        "strategy": result.strategy,
        "config": result.config,
        "seed": result.seed,
        "nodes": result.info["tree"],
    }
    append_line(path, json.dumps(line, ensure_ascii=False))
    err.print(f"trace: {path}")


def append_line(path: Path, line: str | None) -> None:
    """`line` appended to the trace file at `path` (None: the file made, nothing written);
    a path ponder cannot write is a usage error naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            if line is not None:
                f.write(line + "\n")
    except OSError as e:
        raise UsageError(f"--trace {path}: cannot write there ({e.strerror or e})") from None


def bill(u: Usage, seconds: float, what: str) -> str:
    """One line of the bill; `what` says which seconds: a role's are its calls' added up
    (calls at once overlap), the total's the wall clock, so the two need not add up."""
    return (
        f"{u.calls} call{'s' * (u.calls != 1)} · {u.completion_tokens:,} completion + "
        f"{u.prompt_tokens:,} prompt tokens ({u.cached_tokens:,} cached) · "
        f"{u.flops / 1e12:.2f} TFLOPs · ${u.dollars:.4f} · {seconds:.1f} s {what}"
    )


def print_result(r: Result) -> None:
    out.print(f"[bold]answer:[/bold] {r.answer if r.answer is not None else '(none)'}")
    if r.answer is None and r.candidates:  # why: the first sample's own reason
        why = next((c.note for c in r.candidates if c.note), None)
        if why is not None:
            out.print(f"[dim]{escape(why)}[/dim]", soft_wrap=True)
    if votes := r.info.get("votes"):
        ranked = sorted(votes.items(), key=lambda kv: -kv[1])
        line = ", ".join(f"{a} ×{c}" for a, c in ranked)
        tie = " (tie, first seen wins)" if r.info.get("tie") else ""
        out.print(
            f"votes: {line}{tie}; {sum(c.answer is None for c in r.candidates)} without answer"
        )
    if weights := r.info.get("weights"):  # (none when the budget afforded no sample)
        ranked = sorted(weights.items(), key=lambda kv: -kv[1])
        out.print("weights: " + ", ".join(f"{a} {w:.2f}" for a, w in ranked))
    if r.info.get("score") is not None:
        out.print(f"verifier score of the answer: {r.info['score']:.3f}")
    if r.stopped:
        out.print(f"[yellow]stopped early: {r.stopped}[/yellow]")
    out.print(f"[dim]{r.strategy} on {r.model} · seed {r.seed}[/dim]")
    for role, u in sorted(r.usage.items()):
        out.print(f"[dim]{role}: {bill(u, u.seconds, 'in calls')}[/dim]")
    out.print(f"[dim]total: {bill(r.total, r.seconds, 'wall')}[/dim]")
