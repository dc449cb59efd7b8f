"""The `ponder` command line: solve, bench, models."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# typer 0.29 vendors click; its UsageError is what a bad option or argument raises.
from typer._click.exceptions import NoArgsIsHelpError, NoSuchOption
from typer._click.exceptions import UsageError as ClickUsageError

from ponder.bench.harness import Harness, Outcome, Plan, plan
from ponder.bench.harness import Progress as HarnessProgress
from ponder.bench.report import summary_table, write_report
from ponder.bench.store import Store
from ponder.bench.sweep import ModelSpec, StrategySpec, Sweep, TaskSpec, load_sweep
from ponder.budget import Budget
from ponder.engine import Engine
from ponder.errors import DataError, PonderError, UsageError
from ponder.lm import Price
from ponder.lm.registry import DEFAULT_MODEL, Registry, sha256_file
from ponder.runtime import tune_gc
from ponder.search import Prompting, make_strategy
from ponder.tasks.registry import TASKS, get_task
from ponder.types import Problem, Result, Usage

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Inference-time compute scaling for language-model reasoning.",
)
models_app = typer.Typer(no_args_is_help=True, help="List and fetch models.")
app.add_typer(models_app, name="models")

out = Console(soft_wrap=True)
err = Console(stderr=True)


ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help=f"Registered name or .gguf path [default: {DEFAULT_MODEL}]"),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="An OpenAI-compatible server instead of the embedded model"),
]
ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", envvar="PONDER_API_KEY", help="Bearer key for --base-url")
]
VerifierOpt = Annotated[
    str | None,
    typer.Option(
        "--verifier",
        help="For best_of_n / weighted_vote: a name (self_judge, llm_judge, code_tests, "
        'crosscheck, prm_http) or JSON such as \'{"name": "prm_http", "options": {"url": ...}}\'',
    ),
]
AnswerWithOpt = Annotated[
    str | None,
    typer.Option(
        "--answer-with",
        help="reasoning (default), program (PAL: the sandbox runs the model's program), or both",
    ),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Fixes every sampling decision")]
MaxTokOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="Per sample")]
SlotsOpt = Annotated[int, typer.Option("--slots", min=1, help="Parallel sequences on the backend")]
PriceOpt = Annotated[
    str | None,
    typer.Option("--price", help="$ per million tokens: PROMPT,COMPLETION[,CACHED] [default: 0]"),
]
ParamsOpt = Annotated[
    int | None,
    typer.Option("--parameters", min=1, help="Model size for FLOPs (needed with --base-url)"),
]
BudgetTokensOpt = Annotated[int | None, typer.Option("--budget-tokens", min=0)]
BudgetSecondsOpt = Annotated[float | None, typer.Option("--budget-seconds", min=0.001)]
BudgetDollarsOpt = Annotated[float | None, typer.Option("--budget-dollars", min=0.0)]


# -- helpers -------------------------------------------------------------------------------
@contextmanager
def pull_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar for fetching/verifying a model (shown only when there is work to do)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"model: {stage}", total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update


def open_engine(
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    slots: int,
    prompting: Prompting,
    price: Price | None,
    parameters: int | None,
    *,
    cancellable: bool = False,
) -> Engine:
    with pull_progress() as progress, err.status("loading model…"):
        return Engine.open(
            model,
            base_url=base_url,
            api_key=api_key,
            slots=slots,
            prompting=prompting,
            price=price,
            parameters=parameters,
            progress=progress,
            cancellable=cancellable,
        )


def verifier_spec(text: str | None) -> Any:
    """--verifier: a name, or a JSON object with name/options/steps/aggregate."""
    if text is None:
        return None
    if not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--verifier: not valid JSON ({e.msg} at column {e.colno})") from None


def bill(u: Usage, seconds: float) -> str:
    return (
        f"{u.calls} call{'s' * (u.calls != 1)} · {u.completion_tokens:,} completion + "
        f"{u.prompt_tokens:,} prompt tokens ({u.cached_tokens:,} cached) · "
        f"{u.flops / 1e12:.2f} TFLOPs · ${u.dollars:.4f} · {seconds:.1f} s"
    )


def print_result(r: Result) -> None:
    out.print(f"[bold]answer:[/bold] {r.answer if r.answer is not None else '(none)'}")
    if votes := r.info.get("votes"):
        ranked = sorted(votes.items(), key=lambda kv: -kv[1])
        line = ", ".join(f"{a} ×{c}" for a, c in ranked)
        tie = " (tie, first seen wins)" if r.info.get("tie") else ""
        out.print(
            f"votes: {line}{tie}; {sum(c.answer is None for c in r.candidates)} without answer"
        )
    if (weights := r.info.get("weights")) is not None:
        ranked = sorted(weights.items(), key=lambda kv: -kv[1])
        out.print("weights: " + ", ".join(f"{a} {w:.2f}" for a, w in ranked))
    if r.info.get("score") is not None:
        out.print(f"verifier score of the answer: {r.info['score']:.3f}")
    if r.stopped:
        out.print(f"[yellow]stopped early: {r.stopped}[/yellow]")
    if r.error:
        out.print(f"[red]error: {r.error}[/red]")
    out.print(f"[dim]{r.strategy} on {r.model} · seed {r.seed}[/dim]")
    for role, u in sorted(r.usage.items()):
        out.print(f"[dim]{role}: {bill(u, u.seconds)}[/dim]")
    out.print(f"[dim]total: {bill(r.total, r.seconds)}[/dim]")


# -- commands ------------------------------------------------------------------------------
@app.command()
def solve(
    question: Annotated[str, typer.Argument(help="The question to answer")],
    strategy: Annotated[str, typer.Option("--strategy", "-s")] = "vote",
    n: Annotated[
        int | None, typer.Option("-n", "--n", min=1, help="Samples (sampling strategies)")
    ] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0)] = None,
    verifier: VerifierOpt = None,
    answer_with: AnswerWithOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    seed: SeedOpt = None,
    max_tokens: MaxTokOpt = 512,
    slots: SlotsOpt = 8,
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
) -> None:
    """Answer one question and print the answer with its compute bill."""
    if not question.strip():
        raise UsageError("the question is empty")
    strat = make_strategy(  # fails before the model loads
        strategy,
        n=n,
        temperature=temperature,
        verifier=verifier_spec(verifier),
        answer_with=answer_with,
    )
    budget = Budget(tokens=budget_tokens, seconds=budget_seconds, dollars=budget_dollars)
    price_ = Price.parse(price) if price is not None else None  # fails before the model loads

    async def go() -> Result:
        engine = open_engine(
            model, base_url, api_key, slots, Prompting(max_tokens=max_tokens), price_, parameters
        )
        async with engine:
            with err.status(f"{strat.name}: thinking…"):
                return await engine.solve(question, strat, seed=seed, budget=budget)

    result = asyncio.run(go())
    if trace is not None:
        write_trace(trace, result, gold)
    if as_json:
        print(result.to_json())
    else:
        print_result(result)
    if result.error:
        raise typer.Exit(1)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line, ensure_ascii=False) + "\n")
    err.print(f"trace: {path}")


@app.command()
def bench(
    benchmark: Annotated[
        str | None, typer.Argument(help="Task name (see `ponder tasks`); or use --data / --sweep")
    ] = None,
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", "-s", help="Repeatable")
    ] = None,
    n: Annotated[int | None, typer.Option("-n", "--n", min=1, help="Pool size / samples")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0)] = None,
    verifier: VerifierOpt = None,
    answer_with: AnswerWithOpt = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="A custom problem set: .jsonl, .csv or .parquet")
    ] = None,
    question_field: Annotated[str, typer.Option("--question-field")] = "question",
    answer_field: Annotated[str, typer.Option("--answer-field")] = "answer",
    answer_type: Annotated[
        str, typer.Option("--answer-type", help="number, math, choice or code")
    ] = "math",
    id_field: Annotated[str | None, typer.Option("--id-field")] = None,
    sweep: Annotated[
        Path | None,
        typer.Option("--sweep", help="A YAML/TOML file: models × tasks × strategies × seeds"),
    ] = None,
    store: Annotated[
        Path | None, typer.Option("--store", help="Results store [default: ponder-bench.sqlite]")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Problems per task [default: 20; a sweep file's own]"),
    ] = None,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    split: Annotated[
        str | None, typer.Option("--split", help="A task's split, e.g. train [default: test]")
    ] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated, e.g. 0,1,2")] = "0",
    max_tokens: MaxTokOpt = 512,
    slots: SlotsOpt = 8,
    price: PriceOpt = None,
    parameters: ParamsOpt = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_seconds: BudgetSecondsOpt = None,
    budget_dollars: BudgetDollarsOpt = None,
) -> None:
    """Run strategies over a problem set into a resumable store, then print a summary.

    Re-running the same command computes only what is missing. Ctrl-C finishes the units in
    flight, stores them and exits; `ponder report STORE` draws the curves."""
    if sweep is not None:
        if benchmark is not None or data is not None or strategy:
            raise UsageError("--sweep lists tasks and strategies itself; give no task/--strategy")
        plan_ = load_sweep(sweep)
        if limit is not None:
            plan_ = plan_.with_limit(limit)
        base = sweep.parent
    else:
        plan_ = sweep_from_flags(
            benchmark,
            data,
            strategy or ["greedy", "vote"],
            n=n,
            temperature=temperature,
            verifier=verifier_spec(verifier),
            answer_with=answer_with,
            question_field=question_field,
            answer_field=answer_field,
            answer_type=answer_type,
            id_field=id_field,
            limit=limit,
            offset=offset,
            split=split,
            model=model,
            base_url=base_url,
            price=price,
            parameters=parameters,
            seeds=seeds,
            max_tokens=max_tokens,
            slots=slots,
            budget=Budget(tokens=budget_tokens, seconds=budget_seconds, dollars=budget_dollars),
        )
        base = Path.cwd()
    # a sweep file's paths are relative to the file
    store_path = store or (
        Path(os.path.normpath(base / plan_.store)) if plan_.store else Path("ponder-bench.sqlite")
    )
    interrupted = asyncio.run(run_sweep(plan_, store_path, base, api_key))
    out.print(f"[dim]store: {store_path} · report: ponder report {store_path}[/dim]")
    if interrupted:
        err.print("interrupted: the finished units are stored; run the same command to resume")
        raise typer.Exit(130)


def sweep_from_flags(
    benchmark: str | None,
    data: Path | None,
    strategies: list[str],
    *,
    verifier: Any,
    question_field: str,
    answer_field: str,
    answer_type: str,
    id_field: str | None,
    limit: int | None,
    offset: int,
    split: str | None,
    model: str | None,
    base_url: str | None,
    price: str | None,
    parameters: int | None,
    seeds: str,
    max_tokens: int,
    slots: int,
    budget: Budget,
    **options: Any,
) -> Sweep:
    if (benchmark is None) == (data is None):
        raise UsageError("give a task name or --data FILE (one of them)")
    if data is not None:
        task = TaskSpec(
            data=str(data.resolve()),
            question_field=question_field,
            answer_field=answer_field,
            answer_type=answer_type,
            id_field=id_field,
            limit=limit,
            offset=offset,
        )
    else:
        assert benchmark is not None
        get_task(benchmark).path(split)  # an unknown task or split lists the known ones
        task = TaskSpec(name=benchmark, split=split, limit=limit or 20, offset=offset)
    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--seeds: expected comma-separated integers, got '{seeds}'") from None
    given = {k: v for k, v in options.items() if v is not None}
    if verifier is not None:
        given["verifier"] = verifier
    return Sweep(
        models=[ModelSpec(name=model, base_url=base_url, price=price, parameters=parameters)],
        tasks=[task],
        strategies=[StrategySpec(name=s, **given) for s in strategies],
        budgets=[budget if budget != Budget() else None],
        seeds=seed_list or [0],
        max_tokens=max_tokens,
        slots=slots,
    )


async def run_sweep(sweep: Sweep, store_path: Path, base: Path, api_key: str | None) -> bool:
    """Every model × task × plan × seed into the store; True if interrupted by Ctrl-C."""
    # Fail on bad strategies, prices, tasks and data before any model loads.
    strategies = [make_strategy(s.name, shared=True, **s.options()) for s in sweep.strategies]
    prices = [Price.parse(m.price) if m.price is not None else None for m in sweep.models]
    plans = [p for b in sweep.budgets for p in plan(strategies, b)]
    tasks = [(t.label(), t.load(base=base, limit=sweep.limit)) for t in sweep.tasks]
    db = Store(store_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_interrupt() -> None:
        if stop.is_set() and main_task is not None:
            main_task.cancel()  # a second Ctrl-C: stop now (in-flight units are lost)
            return
        stop.set()
        err.print("\nCtrl-C: finishing the units in flight (Ctrl-C again to abort)…")

    with suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    rids: list[int] = []
    try:
        for m, price_ in zip(sweep.models, prices, strict=True):
            engine = open_engine(
                m.name,
                m.base_url,
                api_key,
                sweep.slots,
                Prompting(max_tokens=sweep.max_tokens),
                price_,
                m.parameters,
            )
            async with engine:
                harness = Harness(engine, db, model_sha256=model_sha256(m.name, m.base_url))
                for label_, problems in tasks:
                    for p in plans:
                        for seed in sweep.seeds:
                            if stop.is_set():
                                return True
                            outcome = await run_with_progress(
                                harness, label_, problems, p, seed, stop
                            )
                            rids.append(outcome.run.rid)
                            if outcome.progress.failed:
                                err.print(
                                    f"[yellow]{outcome.progress.failed} units failed on the "
                                    "backend (not stored; a re-run retries them)[/yellow]"
                                )
    except asyncio.CancelledError:
        return True
    finally:
        with suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        if rids:
            out.print(summary_table(db, sorted(set(rids))))
        db.close()
    return stop.is_set()


async def run_with_progress(
    harness: Harness, task: str, problems: list[Problem], p: Plan, seed: int, stop: asyncio.Event
) -> Outcome:
    """One run with a progress bar: units, running accuracy, tokens/s and ETA."""
    what = f"{task} {'+'.join(p.methods)}{'@' + str(p.n) if p.kind == 'pool' else ''}"
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        job = bar.add_task(what, total=None, info="")
        started = time.monotonic()

        def show(pr: HarnessProgress) -> None:
            rate = pr.tokens / max(1e-9, time.monotonic() - started)
            info = f"{pr.correct}/{pr.done} right · {rate:,.0f} tok/s"
            if pr.skipped:
                info += f" · {pr.skipped} stored before"
            bar.update(job, total=pr.total, completed=pr.done + pr.failed, info=info)

        return await harness.execute(task, problems, p, seed=seed, stop=stop, on_progress=show)


def model_sha256(model: str | None, base_url: str | None) -> str:
    """What identifies the model's weights in the store: the registered sha256, a local
    file's sha256, or (for a server) its URL, since its weights cannot be checked."""
    if base_url:
        return f"server:{base_url}"
    reg = Registry()
    name = model or DEFAULT_MODEL
    if name.endswith(".gguf") or "/" in name:
        return sha256_file(Path(name).expanduser())
    return reg.spec(name).sha256


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    model: ModelOpt = None,
    upstream: Annotated[
        str | None,
        typer.Option("--upstream", help="An OpenAI-compatible server to add strategies on top of"),
    ] = None,
    api_key: ApiKeyOpt = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="Keys clients must send, one per line (optionally with limits such as "
            "max_n=8); or set PONDER_SERVE_API_KEYS=key1,key2",
        ),
    ] = None,
    max_n: Annotated[int, typer.Option("--max-n", min=1, help="Default per-key limit on n")] = 64,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Per sample, when a request gives none")
    ] = 512,
    max_request_tokens: Annotated[
        int, typer.Option("--max-request-tokens", min=1, help="Default per-key max_tokens limit")
    ] = 4096,
    max_budget_tokens: Annotated[
        int | None,
        typer.Option("--max-budget-tokens", min=1, help="Default per-key cap on a request's bill"),
    ] = None,
    max_in_flight: Annotated[
        int, typer.Option("--max-in-flight", min=1, help="Requests at once; more get 429")
    ] = 512,
    slots: SlotsOpt = 8,
    price: PriceOpt = None,
    parameters: ParamsOpt = None,
) -> None:
    """Serve OpenAI's API: the model STRATEGY[-N]/MODEL (e.g. vote-8/qwen2.5-coder-0.5b) runs
    that strategy; the plain model name passes straight through."""
    import uvicorn

    from ponder.serve import Keys, Limits, create_app

    limits = Limits(max_n=max_n, max_tokens=max_request_tokens, max_budget_tokens=max_budget_tokens)
    keys = Keys([])
    if api_key_file is not None:
        keys = Keys.from_file(api_key_file, limits)
    elif os.environ.get("PONDER_SERVE_API_KEYS"):
        keys = Keys.from_env(os.environ["PONDER_SERVE_API_KEYS"], limits)
    if not keys and host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(
            f"--host {host} exposes the server beyond this machine: give --api-key-file "
            "or set PONDER_SERVE_API_KEYS"
        )
    price_ = Price.parse(price) if price is not None else None
    # a disconnected client's generation stops on the backend too
    engine = open_engine(
        model,
        upstream,
        api_key,
        slots,
        Prompting(max_tokens=max_tokens),
        price_,
        parameters,
        cancellable=True,
    )
    app_ = create_app(
        engine,
        keys=keys,
        limits=limits,
        max_in_flight=max_in_flight,
        max_tokens=max_tokens,
        close_engine=True,
    )
    where = f"http://{host}:{port}/v1"
    err.print(f"ponder serve: {where} ({'API keys required' if keys else 'no auth'})")
    uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level="warning")).run()


@app.command()
def report(
    store: Annotated[Path, typer.Argument(help="A store written by `ponder bench`")],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for report.md, CSVs, PNGs [default: STORE's name + -report]"
        ),
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw PNG plots")] = True,
    price: Annotated[
        str | None,
        typer.Option(
            "--price",
            help="Price the stored tokens: PROMPT,COMPLETION[,CACHED] $ per million tokens",
        ),
    ] = None,
) -> None:
    """Scaling curves with confidence intervals from a store: markdown, CSV tables, PNG plots."""
    if not store.is_file():
        raise UsageError(f"{store}: no such store")
    price_ = Price.parse(price) if price is not None else None
    db = Store(store, create=False)
    try:
        target = out_dir or store.with_name(store.stem + "-report")
        path, summary = write_report(db, target, plots=plots, price=price_)
        out.print(summary)
    finally:
        db.close()
    out.print(f"report: {path}")


trace_app = typer.Typer(no_args_is_help=True, help="Search traces: preference pairs.")
app.add_typer(trace_app, name="trace")


@trace_app.command("pairs")
def trace_pairs(
    trace: Annotated[Path, typer.Argument(help="A JSONL trace written by `ponder solve --trace`")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the pairs here [default: stdout]")
    ] = None,
    kind: Annotated[str, typer.Option("--kind", help="Answer kind for gold checks")] = "math",
    min_margin: Annotated[
        float, typer.Option("--min-margin", min=0.0, help="Score gap below which no pair")
    ] = 0.0,
) -> None:
    """Step-level preference pairs (same prefix; chosen step on a better path, rejected
    sibling) as JSONL for Step-DPO / MCTS-DPO style training."""
    from ponder.answers import equivalent
    from ponder.search.tree import Tree, preference_pairs
    from ponder.tasks.data import read_jsonl

    lines = []
    for lineno, record in read_jsonl(trace):
        try:
            tree = Tree.from_records(record["question"], record["nodes"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{trace}:{lineno}: not a search trace ({e})") from None
        gold_answer = record.get("gold")
        correct = (
            {
                n.id: equivalent(n.answer, gold_answer, kind)
                for n in tree.terminals()
                if n.answer is not None
            }
            if gold_answer is not None
            else {}
        )
        for pair in preference_pairs(tree, correct, min_margin=min_margin):
            lines.append(json.dumps({"trace_line": lineno, **pair}, ensure_ascii=False))
    text = "\n".join(lines) + ("\n" if lines else "")
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text, encoding="utf-8")
        err.print(f"{len(lines)} pairs: {out_file}")


@app.command("tasks")
def tasks_list() -> None:
    """The problem sets `ponder bench` knows, with their answer kinds and sizes."""
    for name, task in TASKS.items():
        out.print(f"[bold]{name}[/bold] ({task.kind}): {task.description}", soft_wrap=True)


@models_app.command("list")
def models_list() -> None:
    """Registered models and whether each is cached."""
    reg = Registry()
    for name, spec in reg.models.items():
        sources = ["local dirs ($PONDER_MODEL_DIRS)"]
        if spec.hub_repo:
            sources.append(f"hub {spec.hub_repo}")
        if spec.pypi_parts:
            p = spec.pypi_parts
            sources.append(f"PyPI {p.package_prefix}1..{p.count}=={p.version}")
        default = " (default)" if name == DEFAULT_MODEL else ""
        cached = "cached" if reg.is_verified(spec) else "not cached"
        out.print(
            f"[bold]{name}[/bold]{default}: {spec.parameters / 1e9:.2f} B parameters, "
            f"{spec.size / 2**20:,.0f} MiB, {cached}",
            soft_wrap=True,
        )
        out.print(f"  sha256 {spec.sha256}", soft_wrap=True)
        out.print(f"  chat template: {spec.chat_template}", soft_wrap=True)
        out.print(f"  sources: {'; '.join(sources)}", soft_wrap=True)
    out.print(f"[dim]cache: {reg.root}[/dim]", soft_wrap=True)


@models_app.command("pull")
def models_pull(name: Annotated[str, typer.Argument(help="A registered model name")]) -> None:
    """Fetch a model, verify its sha256, and cache it."""
    reg = Registry()
    spec = reg.spec(name)
    with pull_progress() as progress:
        path = reg.pull(spec, progress)
    out.print(f"{name}: {path} (sha256 verified)")


def fail(message: str, code: int) -> None:
    print(
        f"error: {' '.join(message.split())}" if code == 2 else f"error: {message}", file=sys.stderr
    )
    sys.exit(code)


def main() -> None:
    """Entry point: every error is one line on stderr; usage errors exit 2, others 1."""
    tune_gc()  # a long-running process with many searches in flight (ponder/runtime.py)
    try:
        rv = typer.main.get_command(app).main(standalone_mode=False)
    except NoArgsIsHelpError as e:
        print(e.format_message(), file=sys.stderr)
        sys.exit(2)
    except ClickUsageError as e:
        message = e.format_message()
        if isinstance(e, NoSuchOption) and e.ctx is not None:
            names = sorted(o for p in e.ctx.command.params for o in p.opts if o.startswith("-"))
            message = f"No such option: {e.option_name} (options: {', '.join(names)})"
        fail(message, 2)
    except typer.Abort:
        sys.exit(130)
    except UsageError as e:
        fail(str(e), 2)
    except PonderError as e:
        fail(str(e), 1)
    sys.exit(rv if isinstance(rv, int) else 0)
