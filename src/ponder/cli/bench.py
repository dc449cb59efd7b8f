"""`ponder bench`: strategies over a problem set into a resumable store."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ponder.bench.harness import Plan
from ponder.bench.harness import Progress as HarnessProgress
from ponder.bench.report import summary_table
from ponder.bench.store import Store
from ponder.bench.sweep import (
    ModelSpec,
    OpenUnits,
    StrategySpec,
    Sweep,
    TaskSpec,
    load_sweep,
    prepare_sweep,
    repeated_seeds,
    run_sweep,
)
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
    RayOpt,
    RouterOpt,
    SlotsOpt,
    SystemOpt,
    TemperatureOpt,
    ThinkBudgetOpt,
    ThinkMinOpt,
    ThreadsOpt,
    TimeoutOpt,
    VerifierOpt,
    WidthOpt,
    WorkersOpt,
    app,
    check_model_flag,
    check_shared,
    err,
    open_engine,
    out,
    set_from_flag,
    strategy_options,
)
from ponder.errors import UsageError
from ponder.lm import BACKENDS, BackendConfig, Price
from ponder.plugins import parse_options
from ponder.runtime.budget import Budget
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import (
    POOLED,
    STRATEGIES,
    check_thinking,
    make_strategy,
    options_taken,
)
from ponder.tasks.registry import TASKS, get_task
from ponder.types import SEED_LIMIT, Usage

if TYPE_CHECKING:
    from ponder.bench.distributed import RayUnits
    from ponder.bench.workload import WorkloadProgress


@app.command()
def bench(
    benchmark: Annotated[
        str | None, typer.Argument(help="Task name (see `ponder tasks`); or use --data / --sweep")
    ] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option("--strategy", "-s", help="A registered strategy; repeatable"),
    ] = None,
    n: WidthOpt = None,
    option: OptionOpt = None,
    temperature: TemperatureOpt = None,
    verifier: VerifierOpt = None,
    answer_with: AnswerWithOpt = None,
    system: SystemOpt = None,
    think_budget: ThinkBudgetOpt = None,
    think_min: ThinkMinOpt = 0,
    data: Annotated[
        Path | None, typer.Option("--data", help="A custom problem set: .jsonl, .csv or .parquet")
    ] = None,
    question_field: Annotated[
        str, typer.Option("--question-field", help="--data: the question's field")
    ] = "question",
    answer_field: Annotated[
        str, typer.Option("--answer-field", help="--data: the reference answer's field")
    ] = "answer",
    answer_type: Annotated[
        str, typer.Option("--answer-type", help="--data: a registered answer kind")
    ] = "math",
    id_field: Annotated[
        str | None, typer.Option("--id-field", help="--data: a problem id field")
    ] = None,
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
    offset: Annotated[int, typer.Option("--offset", min=0, help="Problems skipped first")] = 0,
    split: Annotated[
        str | None, typer.Option("--split", help="A task's split, e.g. train [default: test]")
    ] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    backend: BackendOpt = None,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated, e.g. 0,1,2")] = "0",
    max_tokens: MaxTokOpt = 512,
    slots: SlotsOpt = 8,
    ctx_size: CtxSizeOpt = 2048,
    price: PriceOpt = None,
    parameters: ParamsOpt = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_seconds: BudgetSecondsOpt = None,
    budget_dollars: BudgetDollarsOpt = None,
    budget_tokens_total: Annotated[
        int | None,
        typer.Option(
            "--budget-tokens-total",
            min=1,
            help="One token budget (prompt + completion) over the whole set: every problem is "
            "probed, then samples go where the vote is least settled per token (-n: most "
            "per problem; --router: the answer mode and temperature it was fitted with)",
        ),
    ] = None,
    router: RouterOpt = None,
    threads: ThreadsOpt = None,
    backend_option: BackendOptionOpt = None,
    ray: RayOpt = None,
    workers: WorkersOpt = 2,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of a table")
    ] = False,
    keep_trees: Annotated[
        bool,
        typer.Option(
            "--keep-trees",
            help="Keep each search tree and refine revisions in the store (compressed), for "
            "`ponder report --html`'s tree viewer",
        ),
    ] = False,
) -> None:
    """Run strategies over a problem set into a resumable store, then print a summary.

    Re-running the same command computes only what is missing. Ctrl-C finishes the units in
    flight, stores them and exits; `ponder report STORE` draws the curves. With --ray, the
    units run on Ray workers and this process grades and stores them."""
    if workers != 2 and ray is None:
        raise UsageError("--workers: the number of Ray workers goes with --ray")
    if ray is not None:
        from ponder.lm.remote import LOCAL, split_address

        if benchmark is None and ray in TASKS.names():
            raise UsageError(
                f"--ray: '{ray}' is a task, not a Ray address; give the task before --ray "
                f"(ponder bench {ray} --ray)"
            )
        if ray not in (LOCAL, "auto"):
            split_address(ray)  # not an address: one line, before anything runs
    if sweep is not None:
        given = {
            "a task": benchmark is not None,
            "--data": data is not None,
            "--strategy": bool(strategy),
            "-n": n is not None,
            "-o": bool(option),
            "--temperature": temperature is not None,
            "--verifier": verifier is not None,
            "--answer-with": answer_with is not None,
            "--system": system is not None,
            "--think-budget": think_budget is not None,
            "--think-min": think_min != 0,
            "--offset": offset != 0,
            "--split": split is not None,
            **data_flags(question_field, answer_field, answer_type, id_field),
            "--model": model is not None,
            "--base-url": base_url is not None,
            "--backend": backend is not None,
            "--price": price is not None,
            "--parameters": parameters is not None,
            "--seeds": seeds != "0",
            "--max-tokens": max_tokens != 512,
            "--slots": slots != 8,
            "--ctx-size": ctx_size != 2048,
            "--threads": threads is not None,
            "--backend-option": bool(backend_option),
            "--budget-*": any(
                b is not None
                for b in (budget_tokens, budget_seconds, budget_dollars, budget_tokens_total)
            ),
            "--router": router is not None,
        }
        conflicts = [name for name, set_ in given.items() if set_]
        if conflicts:
            raise UsageError(
                f"--sweep: the sweep file sets {', '.join(conflicts)} itself; give them there "
                "(only --store, --limit, --keep-trees, --json, --api-key, --timeout, --ray and "
                "--workers go beside --sweep)"
            )
        plan_ = load_sweep(sweep)
        if limit is not None:
            plan_ = plan_.with_limit(limit)
        base = sweep.parent
    else:
        names = strategy or (["vote"] if budget_tokens_total is not None else ["greedy", "vote"])
        options = strategy_options(
            option,
            temperature=temperature,
            verifier=verifier,
            answer_with=answer_with,
        )
        if budget_tokens_total is not None and names == ["auto"]:
            # one budget over the set is auto's allocation across problems: the same workload
            # (a --router gives it the answer mode and temperature it was fitted with)
            names = ["vote"]
        if budget_tokens_total is not None and names != ["vote"]:
            raise UsageError(
                "--budget-tokens-total spends one budget on samples voted per problem (-s vote, "
                f"or -s auto); it does not run {', '.join(n for n in names if n != 'vote')}"
            )
        if router is not None:
            if budget_tokens_total is None and "auto" not in names:
                raise UsageError("--router is read by -s auto and by --budget-tokens-total")
            if "auto" in names:
                set_from_flag(options, "router", str(router), "--router")
        check_shared(names, options)
        per_problem = budget_tokens, budget_seconds, budget_dollars
        pooled = [s for s in names if POOLED in STRATEGIES.get(s).obj.capabilities]
        if any(b is not None for b in per_problem) and pooled:
            # a pool's samples run as units of one sample each: a cap per problem would cut
            # the pool itself; its compute is its n
            what = "; it caps the others" if len(pooled) < len(names) else ""
            runs = "runs" if len(pooled) == 1 else "run"
            raise UsageError(
                f"--budget-tokens/--budget-seconds/--budget-dollars cap one solve of a strategy "
                f"that is not pooled; {', '.join(pooled)} {runs} as a pool of n samples, whose "
                f"compute is n (give a smaller -n, or --budget-tokens-total for one budget over "
                f"the set){what}: bench them in a separate run"
            )
        check_model_flag(model)
        if n is not None:
            set_from_flag(options, "n", n, "-n")
        if backend is not None:
            BACKENDS.get(backend)  # an unknown name lists the known ones
        plan_ = sweep_from_flags(
            benchmark,
            data,
            names,
            options,
            question_field=question_field,
            answer_field=answer_field,
            answer_type=answer_type,
            id_field=id_field,
            limit=limit,
            offset=offset,
            split=split,
            model=ModelSpec(
                name=model,
                base_url=base_url,
                backend=backend,
                price=price,
                parameters=parameters,
                options=parse_options(backend_option or [], "--backend-option"),
            ),
            seeds=seeds,
            max_tokens=max_tokens,
            system=system,
            think_budget=think_budget,
            think_min=think_min,
            slots=slots,
            ctx_size=ctx_size,
            threads=threads,
            budget=Budget(tokens=budget_tokens, seconds=budget_seconds, dollars=budget_dollars),
        )
        base = Path.cwd()
    if keep_trees:
        plan_ = plan_.model_copy(update={"keep_trees": True})
    for m in plan_.models:  # a bad price fails before any model loads
        if m.price is not None:
            Price.parse(m.price)
    # a sweep file's paths are relative to the file
    store_path = store or (
        Path(os.path.normpath(base / plan_.store)) if plan_.store else Path("ponder-bench.sqlite")
    )
    if budget_tokens_total is not None:
        if ray is not None:
            raise UsageError("--budget-tokens-total runs here, not over Ray (drop --ray)")
        if len(plan_.seeds) != 1:
            raise UsageError("--budget-tokens-total runs one seed (give --seeds with one)")
        interrupted, summary_ = asyncio.run(
            workload_with_progress(
                plan_, store_path, base, api_key, timeout, budget_tokens_total, n, router
            )
        )
        if as_json:
            print(json.dumps({"store": str(store_path), "workload": summary_}, indent=2))
        else:
            out.print(
                f"workload: {summary_['spent']:,} of {summary_['budget']:,} tokens over "
                f"{summary_['problems']} problems · {summary_['samples']} samples · vote right on "
                f"{summary_['correct']} ({100 * summary_['accuracy']:.1f}%)"
            )
            out.print(f"[dim]store: {store_path} · report: ponder report {store_path}[/dim]")
        if summary_["failed"]:
            err.print(
                f"[yellow]{summary_['failed']} samples failed on the backend, charged "
                f"{summary_['lost']:,} tokens besides the spend above (not stored; a re-run "
                "retries them)[/yellow]"
            )
        if interrupted:
            err.print(
                "interrupted: the finished samples are stored; run the same command to resume"
            )
            raise typer.Exit(130)
        if summary_["samples"] == 0 and not summary_["failed"]:
            raise UsageError(
                f"--budget-tokens-total {budget_tokens_total:,} covered no sample: each sample "
                "first reserves its worst case (its prompt plus --max-tokens); give more"
            )
        return
    interrupted, failed, summary, probe = asyncio.run(
        sweep_with_progress(
            plan_, store_path, base, api_key, timeout, quiet=as_json, ray=ray, workers=workers
        )
    )
    if as_json:
        found = {"store": str(store_path), "failed": failed, "summary": summary}
        print(json.dumps(found | {"probe": probe.model_dump()}, indent=2))
    else:
        if probe.calls:  # every token ponder had a server generate is on some bill
            out.print(
                f"[dim]probe: {probe.calls} calls · {probe.completion_tokens:,} completion + "
                f"{probe.prompt_tokens:,} prompt tokens readying the server (in no problem's "
                "cost)[/dim]"
            )
        out.print(f"[dim]store: {store_path} · report: ponder report {store_path}[/dim]")
    if interrupted:
        err.print("interrupted: the finished units are stored; run the same command to resume")
        raise typer.Exit(130)
    if failed:
        raise typer.Exit(1)


def data_flags(
    question_field: str, answer_field: str, answer_type: str, id_field: str | None
) -> dict[str, bool]:
    """Which of the flags read with --data only were given (set off their defaults)."""
    return {
        "--question-field": question_field != "question",
        "--answer-field": answer_field != "answer",
        "--answer-type": answer_type != "math",
        "--id-field": id_field is not None,
    }


def sweep_from_flags(
    benchmark: str | None,
    data: Path | None,
    strategies: list[str],
    options: dict[str, Any],
    *,
    question_field: str,
    answer_field: str,
    answer_type: str,
    id_field: str | None,
    limit: int | None,
    offset: int,
    split: str | None,
    model: ModelSpec,
    seeds: str,
    max_tokens: int,
    system: str | None,
    think_budget: int | None,
    think_min: int,
    slots: int,
    ctx_size: int,
    budget: Budget,
    threads: int | None = None,
) -> Sweep:
    if (benchmark is None) == (data is None):
        raise UsageError("give a task name or --data FILE (one of them)")
    if data is not None:
        if split is not None:
            raise UsageError("--split picks a split of a named task; --data is one file")
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
        data_only = data_flags(question_field, answer_field, answer_type, id_field)
        given = [flag for flag, set_ in data_only.items() if set_]
        if given:  # a named task knows its own fields and answer kind
            raise UsageError(
                f"{', '.join(given)}: read with --data FILE; task '{benchmark}' has its own "
                "fields and answer kind"
            )
        task = TaskSpec(name=benchmark, split=split, limit=limit or 20, offset=offset)
    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--seeds: expected comma-separated integers, got '{seeds}'") from None
    if any(not 0 <= s < SEED_LIMIT for s in seed_list):  # a store keeps them as SQLite integers
        raise UsageError(f"--seeds: each seed must be in [0, 2**63), got '{seeds}'")
    if not seed_list:
        raise UsageError(f"--seeds: no seed in '{seeds}' (e.g. --seeds 0,1,2)")
    if said := repeated_seeds(seed_list):
        raise UsageError(f"--seeds: {said} in '{seeds}'")
    # bad options exit 2 before any model loads
    made = [make_strategy(name, **options_taken(name, options)) for name in strategies]
    sweep = Sweep(
        models=[model],
        tasks=[task],
        strategies=[StrategySpec(name=s, **options_taken(s, options)) for s in strategies],
        budgets=[budget if budget != Budget() else None],
        seeds=seed_list,
        max_tokens=max_tokens,
        system=system,
        think_budget=think_budget,
        think_min=think_min,
        slots=slots,
        ctx_size=ctx_size,
        threads=threads,
    )
    asking = sweep.prompting()
    for s in made:
        check_thinking(s, asking, "--think-budget")
    return sweep


async def sweep_with_progress(
    sweep: Sweep,
    store_path: Path,
    base: Path,
    api_key: str | None,
    request_timeout: float | None,
    *,
    quiet: bool = False,
    ray: str | None = None,
    workers: int = 2,
) -> tuple[bool, int, list[dict[str, object]], Usage]:
    """The sweep with a progress bar per run and Ctrl-C handling; (interrupted, failed units,
    the summary rows, which are also printed as a table unless `quiet`, what readying the
    backends spent). With `ray` (an address, or "local"), each model's units run on
    `workers` Ray workers."""
    prepared = prepare_sweep(sweep, base, api_key=api_key, request_timeout=request_timeout)
    opener: OpenUnits = open_engine
    opened: list[RayUnits] = []
    if ray is not None:
        from ponder.lm.remote import connect

        with err.status("joining Ray…"):
            connect(ray)  # a missing extra or a cluster not there: one line, store untouched
        opener = functools.partial(open_workers, address=ray, workers=workers, opened=opened)
    db = Store(store_path)
    db.claim()
    stop = asyncio.Event()
    main_task = asyncio.current_task()

    def on_interrupt() -> None:
        if stop.is_set() and main_task is not None:
            main_task.cancel()  # a second Ctrl-C: stop now (in-flight units are lost)
            return
        stop.set()
        err.print("\nstopping: finishing the units in flight (Ctrl-C again to abort)…")

    on_stop_signals(on_interrupt)
    bars = ProgressBars()
    outcome = None
    try:
        outcome = await run_sweep(prepared, db, opener, stop=stop, watch=bars.watch)
    except asyncio.CancelledError:
        return True, 0, [], Usage()
    finally:
        bars.close()
        on_stop_signals(None)
        for units in opened:
            done = ", ".join(f"{w.name()}: {w.done} units" for w in units.workers)
            err.print(f"[dim]{done}[/dim]")
        rows: list[dict[str, object]] = []
        if outcome is not None and outcome.runs:
            summary = summary_table(db, sorted(set(outcome.runs)))
            rows = summary.rows
            if not quiet:
                out.print(summary)
        db.close()
    if outcome.failed:
        err.print(
            f"[yellow]{outcome.failed} units failed on the backend or a verifier (not stored; "
            "a re-run retries them)[/yellow]"
        )
    return outcome.interrupted, outcome.failed, rows, outcome.probe


async def workload_with_progress(
    sweep: Sweep,
    store_path: Path,
    base: Path,
    api_key: str | None,
    request_timeout: float | None,
    total: int,
    n: int | None,
    router_path: Path | None,
) -> tuple[bool, dict[str, Any]]:
    """One budget over the sweep's one task (ponder.bench.workload), with a progress bar."""
    from ponder.allocation import file_sha256, load_router
    from ponder.bench.harness import Harness
    from ponder.bench.sweep import model_sha256
    from ponder.bench.workload import Workload, run_workload

    router = load_router(router_path) if router_path is not None else None
    asked = sweep.strategies[0].options()
    temperature = asked.get("temperature")
    answer_with = asked.get("answer_with")
    if router is not None:
        answer_with = router.answer_mode(answer_with, str(router_path))
    prepared = prepare_sweep(sweep, base, api_key=api_key, request_timeout=request_timeout)
    ((label, problems),) = prepared.tasks
    if router is not None:
        router.check_unseen([(p.id or p.question[:40], p.question) for p in problems])
    workload = Workload(
        tokens_total=total,
        max_n=n or 16,
        temperature=temperature
        if temperature is not None
        else (router.temperature if router else 0.7),
        answer_with=answer_with or "reasoning",
        router_sha256=file_sha256(router_path) if router_path is not None else None,
    )
    db = Store(store_path)
    db.claim()
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    config = prepared.configs[0]
    bars = ProgressBars()
    try:
        engine = open_engine(config, sweep.prompting())
        async with engine:
            harness = Harness(engine, db, model_sha256=model_sha256(config))
            done = await run_workload(
                harness,
                label,
                problems,
                workload,
                seed=sweep.seeds[0],
                stop=stop,
                on_progress=bars.budget(f"{label} workload"),
            )
            (samples,) = db.db.execute(
                "SELECT COUNT(*) FROM units WHERE rid = ?", (done.run.rid,)
            ).fetchone()
    finally:
        bars.close()
        on_stop_signals(None)
        db.close()
    pr = done.progress
    return done.interrupted, {
        "budget": total,
        "spent": pr.spent,
        "failed": pr.failed,
        "lost": pr.lost,
        "problems": pr.problems,
        "samples": int(samples),
        "correct": pr.correct,
        "accuracy": pr.correct / max(1, pr.problems),
    }


def on_stop_signals(handler: Callable[[], None] | None) -> None:
    """SIGINT and SIGTERM (a service manager, `timeout`) call `handler`, so both stop a bench
    as Ctrl-C does, keeping the units in flight; None hands them back to Python."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):  # (no signals off the main thread)
            if handler is None:
                loop.remove_signal_handler(sig)
            else:
                loop.add_signal_handler(sig, handler)


def open_workers(
    config: BackendConfig,
    prompting: Prompting,
    *,
    address: str,
    workers: int,
    opened: list[RayUnits],
) -> RayUnits:
    """`workers` Ray workers, each holding the backend `config` names (kept in `opened`)."""
    from ponder.bench.distributed import RayUnits

    with err.status(f"starting {workers} Ray workers…"):
        units = RayUnits(
            config,
            prompting,
            workers=workers,
            address=address,
            warn=lambda message: err.print(f"[yellow]warning: {message}[/yellow]"),
        )
    opened.append(units)
    return units


class LogLines:
    """Progress as plain lines for a log file: one when the run reaches another tenth, or
    when `every_s` have passed since the last; the latest line held back is printed at
    `flush` (so a log always ends with the final state)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.started = self.last = time.monotonic()
        self.tenth = -1  # the tenth of the run last shown
        self.held: str | None = None

    def elapsed(self) -> float:
        return max(1e-9, time.monotonic() - self.started)

    def offer(self, line: str, done: float) -> None:
        """`line` for a run `done` (0 to 1) through: printed, or held back."""
        now, tenth = time.monotonic(), min(10, int(10 * done))
        self.held = line
        if tenth != self.tenth or now - self.last >= self.every_s:
            self.last, self.tenth = now, tenth
            self.flush()

    def flush(self) -> None:
        if self.held is not None:
            err.print(self.held, highlight=False, markup=False, soft_wrap=True)
            self.held = None


class ProgressBars:
    """One progress bar per run: units, running accuracy, tokens/s and ETA. When stderr is
    not a terminal (a run in the background, its output in a file), plain `LogLines`
    instead, at every tenth of the run and `LINE_EVERY_S` after the last line."""

    LINE_EVERY_S = 60.0

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.log: LogLines | None = None

    def watch(self, what: str, plan: Plan) -> Callable[[HarnessProgress], None]:
        self.close()
        if not err.is_terminal:
            return self.lines(what)
        bar = self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
        )
        bar.start()
        job = bar.add_task(what, total=None, info="")
        started = time.monotonic()

        def show(pr: HarnessProgress) -> None:
            rate = pr.tokens / max(1e-9, time.monotonic() - started)
            info = f"{pr.correct}/{pr.done} right · {rate:,.0f} tok/s"
            if pr.skipped:
                info += f" · {pr.skipped} stored before"
            bar.update(job, total=pr.total, completed=pr.done + pr.failed, info=info)

        return show

    def lines(self, what: str) -> Callable[[HarnessProgress], None]:
        log = self.log = LogLines(self.LINE_EVERY_S)

        def show(pr: HarnessProgress) -> None:
            took, finished = log.elapsed(), pr.done + pr.failed
            line = (
                f"{what}: {finished}/{pr.total} units · {pr.correct}/{pr.done} right · "
                f"{pr.tokens / took:,.0f} tok/s · {timedelta(seconds=int(took))} elapsed"
            )
            if 0 < finished < pr.total:
                line += f" · ETA {timedelta(seconds=int(took / finished * (pr.total - finished)))}"
            if pr.skipped:
                line += f" · {pr.skipped} stored before"
            if pr.failed:
                line += f" · {pr.failed} failed"
            log.offer(line, finished / pr.total if pr.total else 1.0)

        return show

    def budget(self, what: str) -> Callable[[WorkloadProgress], None]:
        """A workload's progress: tokens spent of the budget, as a bar or `LogLines`."""
        self.close()
        if not err.is_terminal:
            log = self.log = LogLines(self.LINE_EVERY_S)
        else:
            bar = self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=err,
            )
            bar.start()
            job = bar.add_task(what, total=None, info="")

        def show(pr: WorkloadProgress) -> None:
            info = f"{pr.spent:,}/{pr.total:,} tokens · {pr.done} samples · {pr.correct} right"
            if self.bar is not None:
                self.bar.update(job, total=pr.total, completed=pr.spent, info=info)
                return
            took = timedelta(seconds=int(log.elapsed()))
            log.offer(f"{what}: {info} · {took} elapsed", pr.spent / pr.total if pr.total else 1.0)

        return show

    def close(self) -> None:
        if self.log is not None:
            self.log.flush()
            self.log = None
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
