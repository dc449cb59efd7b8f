"""The `ponder` command line: solve, bench, models."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
)
from rich.table import Table

# typer 0.29 vendors click; its UsageError is what a bad option or argument raises.
from typer._click.exceptions import NoArgsIsHelpError, NoSuchOption
from typer._click.exceptions import UsageError as ClickUsageError

from ponder.bench.runner import Row, label, run_strategy
from ponder.budget import Budget
from ponder.engine import Engine
from ponder.errors import PonderError, UsageError
from ponder.lm import Price
from ponder.lm.registry import DEFAULT_MODEL, Registry
from ponder.search import Prompting, Strategy, make_strategy
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
    budget_tokens: Annotated[int | None, typer.Option("--budget-tokens", min=0)] = None,
    budget_seconds: Annotated[float | None, typer.Option("--budget-seconds", min=0.001)] = None,
    budget_dollars: Annotated[float | None, typer.Option("--budget-dollars", min=0.0)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole Result as JSON")] = False,
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
    if as_json:
        print(result.to_json())
    else:
        print_result(result)
    if result.error:
        raise typer.Exit(1)


@app.command()
def bench(
    benchmark: Annotated[str, typer.Argument(help="Task name (see `ponder tasks`)")],
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", "-s", help="Repeatable")
    ] = None,
    n: Annotated[int | None, typer.Option("-n", "--n", min=1)] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0)] = None,
    verifier: VerifierOpt = None,
    answer_with: AnswerWithOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_tokens: MaxTokOpt = 512,
    slots: SlotsOpt = 8,
    price: PriceOpt = None,
    parameters: ParamsOpt = None,
) -> None:
    """Run strategies over a benchmark's test problems and print accuracy against compute."""
    task = get_task(benchmark)
    price_ = Price.parse(price) if price is not None else None
    names = strategy or ["greedy", "vote"]
    # -n and --temperature apply to every strategy that samples
    spec = verifier_spec(verifier)
    strategies = [
        make_strategy(
            s, shared=True, n=n, temperature=temperature, verifier=spec, answer_with=answer_with
        )
        for s in names
    ]
    problems = task.load(limit=limit, offset=offset)

    async def go() -> list[Row]:
        engine = open_engine(
            model, base_url, api_key, slots, Prompting(max_tokens=max_tokens), price_, parameters
        )
        rows = []
        async with engine:
            for strat in strategies:
                with Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[acc]}"),
                    TimeElapsedColumn(),
                    console=err,
                ) as bar:
                    row, _ = await run_strategy(
                        engine,
                        problems,
                        strat,
                        seed=seed,
                        on_result=progress_of(bar, strat, problems),
                    )
                rows.append(row)
            model_name = engine.policy.info.name
        out.print(results_table(rows, benchmark, model_name, offset))
        return rows

    asyncio.run(go())


def progress_of(
    bar: Progress, strategy: Strategy, problems: list[Problem]
) -> Callable[[Problem, Result, bool], None]:
    """Advance the bar and show the running count of correct answers."""
    task = bar.add_task(f"{label(strategy):>8}", total=len(problems), acc="")
    right = 0

    def done(problem: Problem, result: Result, correct: bool) -> None:
        nonlocal right
        right += correct
        bar.update(task, advance=1, acc=f"correct {right}")

    return done


def _opt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def results_table(rows: list[Row], benchmark: str, model: str, offset: int) -> Table:
    n = rows[0].problems if rows else 0
    t = Table(title=f"{benchmark} test problems {offset + 1}–{offset + n} · {model}")
    cols = ["strategy", "accuracy", "any sample right", "completion tokens", "seconds"]
    scored = any(r.verifier_auroc is not None for r in rows)
    if scored:
        cols += ["verifier AUROC", "verifier FPR"]
    for col in cols:
        t.add_column(col, justify="left" if col == "strategy" else "right")
    for r in rows:
        note = f" ({r.errors} errors)" if r.errors else ""
        t.add_row(
            r.strategy + note,
            f"{r.correct}/{r.problems} = {r.accuracy:.0%}",
            f"{r.any_correct}/{r.problems}",
            f"{r.completion_tokens:,}",
            f"{r.seconds:.0f}",
            *([_opt(r.verifier_auroc), _opt(r.verifier_fpr)] if scored else []),
        )
    return t


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
