"""What the commands share: the app, consoles, options, and turning flags into library objects
(a backend config, a strategy from `-s NAME -n N -o KEY=VALUE`, a verifier spec)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ponder.errors import UsageError, problem_line
from ponder.lm import DEFAULT_MODEL, BackendConfig, Price
from ponder.plugins import parse_options
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import STRATEGIES, Strategy, make_strategy, option_names
from ponder.types import SEED_LIMIT, blank

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Inference-time compute scaling for language-model reasoning.",
)

# Written to a file or a pipe (a log, `| tee`), rich would fit tables to 80 columns and cut
# method labels short; there, lines as wide as a table needs, up to LOG_WIDTH.
LOG_WIDTH = 200


def _width(stream: object) -> int | None:
    columns = os.environ.get("COLUMNS")
    if columns is not None:  # rich's own reading of it, unless it cannot draw in it
        usable = columns.strip().isdigit() and int(columns) >= MIN_COLUMNS
        return None if usable else LOG_WIDTH
    isatty = getattr(stream, "isatty", None)
    terminal = bool(isatty()) if callable(isatty) else False
    return None if terminal else LOG_WIDTH


# COLUMNS below this (0, say) made rich print nothing at all: such a value is ignored
MIN_COLUMNS = 20


out = Console(soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))

# -- options shared by commands ------------------------------------------------------------
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=f"Registered name or .gguf path, or the server's model [default: {DEFAULT_MODEL}]",
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="An OpenAI-compatible server instead of the embedded model"),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="A registered backend (see `ponder backends`) [default: llamacpp, or "
        "openai with --base-url]",
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="PONDER_API_KEY", help="Bearer key sent to --base-url"),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0.001,
        help="Seconds each attempt of a request to a server may take (a retry gets as long "
        "again); the capability probe included",
    ),
]
StrategyOpt = Annotated[
    str, typer.Option("--strategy", "-s", help="A registered strategy (see `ponder strategies`)")
]
WidthOpt = Annotated[
    int | None,
    typer.Option(
        "-n", "--n", min=1, help="The strategy's width: samples, beam width, MCTS iterations"
    ),
]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        help="A strategy option KEY=VALUE (repeatable; see `ponder strategies "
        "NAME`); VALUE is read as JSON when it can be",
    ),
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="[ADDRESS]",
        help="Run on Ray workers (the [ray] extra): a cluster's HOST:PORT, ray://HOST:PORT or "
        "auto; alone, a Ray instance on this machine",
    ),
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", min=1, help="With --ray: workers, each with its own backend")
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads of the embedded model [default: all cores; with --ray, the cores "
        "shared among the workers]",
    ),
]
BackendOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--backend-option",
        help="A backend setting KEY=VALUE (repeatable; see `ponder backends NAME`); VALUE is "
        "read as JSON when it can be",
    ),
]
TemperatureOpt = Annotated[
    float | None, typer.Option("--temperature", min=0.0, help="Sampling temperature")
]
VerifierOpt = Annotated[
    str | None,
    typer.Option(
        "--verifier",
        help="A registered verifier (see `ponder verifiers`) or JSON such as "
        '\'{"name": "prm_http", "options": {"url": "..."}}\'',
    ),
]
AnswerWithOpt = Annotated[
    str | None,
    typer.Option(
        "--answer-with",
        help="reasoning (default); program (PAL: the sandbox runs the model's program); both; "
        "tir (Python run mid-reasoning, its real output read back); no_cot (the answer alone)",
    ),
]
SystemOpt = Annotated[
    str | None,
    typer.Option(
        "--system",
        help="The system prompt [default: ponder's CoT prompt; with --think-budget it replaces "
        "the thinking prompt, so it must ask for thinking between <think> and </think>]",
    ),
]
ThinkBudgetOpt = Annotated[
    int | None,
    typer.Option(
        "--think-budget",
        min=1,
        help="Thinking tokens at most per sample (prompted <think>; "
        "the end is forced and the answer asked for)",
    ),
]
ThinkMinOpt = Annotated[
    int,
    typer.Option("--think-min", min=0, help='Thinking tokens at least ("Wait," extends it)'),
]
RouterOpt = Annotated[
    Path | None,
    typer.Option(
        "--router",
        help="A router file (`ponder router fit`): what -s auto runs per problem",
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", min=0, max=SEED_LIMIT - 1, help="Fixes every sampling decision"),
]
MaxTokOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="Per sample")]
SlotsOpt = Annotated[int, typer.Option("--slots", min=1, help="Parallel sequences on the backend")]
CtxSizeOpt = Annotated[
    int, typer.Option("--ctx-size", min=64, help="Context tokens per slot (embedded model)")
]
PriceOpt = Annotated[
    str | None,
    typer.Option(
        "--price",
        help="$ per million tokens: PROMPT,COMPLETION[,CACHED], or one for all [default: 0]",
    ),
]
ParamsOpt = Annotated[
    int | None,
    typer.Option("--parameters", min=1, help="Model size for FLOPs (needed with --base-url)"),
]
BudgetTokensOpt = Annotated[
    int | None, typer.Option("--budget-tokens", min=0, help="Cap on tokens per problem")
]
BudgetSecondsOpt = Annotated[
    float | None, typer.Option("--budget-seconds", min=0.001, help="Cap on seconds per problem")
]
BudgetDollarsOpt = Annotated[
    float | None, typer.Option("--budget-dollars", min=0.0, help="Cap on dollars per problem")
]


# -- flags into objects ----------------------------------------------------------------------
# the flag each backend setting comes from, named in errors
BACKEND_FLAGS = {
    "backend": "--backend",
    "model": "--model",
    "base_url": "--base-url",
    "api_key": "--api-key",
    "slots": "--slots",
    "ctx_size": "--ctx-size",
    "parameters": "--parameters",
    "timeout": "--timeout",
    "threads": "--threads",
}


def check_model_flag(model: str | None) -> None:
    """--model given empty ("" ran the default model without a word)."""
    if model is not None and blank(model):
        raise UsageError("--model: empty; give a model name or a .gguf path, or leave it out")


def backend_config(
    *,
    model: str | None,
    base_url: str | None,
    backend: str | None,
    api_key: str | None,
    slots: int,
    ctx_size: int,
    price: str | None,
    parameters: int | None,
    timeout: float | None,
    cancellable: bool = False,
    threads: int | None = None,
    options: dict[str, Any] | None = None,
    flags: dict[str, str] | None = None,
) -> BackendConfig:
    """The backend the flags name (checked now, before any model loads); `flags` renames
    the flag an error names for a field (serve's --upstream gives base_url)."""
    named = BACKEND_FLAGS | (flags or {})
    check_model_flag(model)
    cores = os.cpu_count() or 1
    if threads is not None and threads > cores:  # (500 on 2 cores: 74 s for 3.5 s of work)
        err.print(
            f"[yellow]--threads {threads} is more than this machine's {cores} cores: "
            "llama.cpp's threads then wait on each other and run far slower[/yellow]"
        )
    if backend is not None:
        from ponder.lm import BACKENDS

        BACKENDS.get(backend)  # an unknown name lists the known ones
    try:
        return BackendConfig(
            backend=backend,
            model=model,
            base_url=base_url,
            api_key=api_key,
            slots=slots,
            ctx_size=ctx_size,
            price=Price.parse(price) if price is not None else None,
            parameters=parameters,
            timeout=timeout,
            cancellable=cancellable,
            threads=threads,
            options=options or {},
        )
    except ValidationError as e:
        raise UsageError(
            "; ".join(
                problem_line(tuple(named.get(str(k), k) for k in x["loc"]), x["msg"])
                for x in e.errors()
            )
        ) from None


def prompting(
    max_tokens: int,
    system: str | None,
    think_budget: int | None = None,
    think_min: int = 0,
) -> Prompting:
    if system is not None and blank(system):
        raise UsageError("--system: the system prompt is empty")
    if think_min and think_budget is None:
        raise UsageError("--think-min needs --think-budget (the most it may think)")
    if think_budget is not None and think_min > think_budget:
        raise UsageError(f"--think-min {think_min} exceeds --think-budget {think_budget}")
    settings: dict[str, object] = {"max_tokens": max_tokens}
    if system is not None:
        # with a thinking budget, the prompt in force is the thinking one: the user's replaces it
        settings["system" if think_budget is None else "think_system"] = system
    if think_budget is not None:
        settings.update(think_budget=think_budget, think_min=think_min)
    return Prompting.model_validate(settings)


def strategy_options(
    pairs: list[str] | None,
    *,
    temperature: float | None = None,
    verifier: str | None = None,
    answer_with: str | None = None,
) -> dict[str, Any]:
    """`-o` pairs and the named strategy flags as one options dict; a flag and an `-o` pair
    setting one option to different values is an error (as `-n` and `-o n=` are)."""
    options = parse_options(pairs or [])
    named = {
        "temperature": temperature,
        "verifier": verifier_spec(verifier),
        "answer_with": answer_with,
    }
    for key, value in named.items():
        if value is not None:
            set_from_flag(options, key, value, "--" + key.replace("_", "-"))
    return options


def set_from_flag(options: dict[str, Any], key: str, value: object, flag: str) -> None:
    """`options[key] = value` for a flag; the same key given by -o with another value is an
    error (neither silently wins)."""
    if key in options and options[key] != value:
        raise UsageError(
            f"{flag} {as_written(value)} and -o {key}={as_written(options[key])} both set "
            f"{key}; give one"
        )
    options[key] = value


def as_written(value: object) -> str:
    """An option's value as a command line writes it (JSON but for a plain string)."""
    return value if isinstance(value, str) else json.dumps(value)


def build_strategy(name: str, n: int | None, options: dict[str, Any]) -> Strategy:
    """`-s NAME -n N -o ...` as a strategy; bad options exit 2 naming the valid keys."""
    options = dict(options)
    given = options.pop("n", None)  # -o n=N: the width too (the strategy says if it has one)
    if n is not None and given is not None and given != n:
        raise UsageError(f"-n {n} and -o n={given} both set the width; give one")
    return make_strategy(name, n=n if n is not None else given, **options)


def check_shared(names: list[str], options: dict[str, Any]) -> None:
    """Options given once for several strategies: each must be taken by at least one."""
    valid = {k for s in names for k in option_names(STRATEGIES.get(s).obj)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UsageError(
            f"-o {', '.join(unknown)}: no strategy among {', '.join(names)} takes "
            f"{'it' if len(unknown) == 1 else 'them'} (valid keys: {', '.join(sorted(valid))})"
        )


def verifier_spec(text: str | None) -> str | dict[str, Any] | None:
    """--verifier: a name, or a JSON object with name/options/steps/aggregate."""
    if text is None:
        return None
    if not text.lstrip().startswith("{"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--verifier: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, dict):
        raise UsageError("--verifier: expected a JSON object")
    return value


# -- files a command writes ----------------------------------------------------------------
def output_file(path: Path, option: str, *, inputs: Sequence[Path] = (), keeps: str = "") -> Path:
    """`path` checked as a file a command may write: not a folder, not one of its `inputs`
    (written over before, or as, they are read), its folder made. With `keeps`, an existing
    file is replaced only if its first bytes hold that text (a file this command wrote), so
    a store or data file given by mistake is never written over."""
    if str(path) in ("", ".") or path.is_dir():
        raise UsageError(f"{option} {path}: a folder; give a file to write")
    for given in inputs:
        if path.exists() and given.exists() and path.samefile(given):
            raise UsageError(f"{option} {path}: that is the input {given}; give another file")
    if keeps and path.is_file() and path.stat().st_size:
        with path.open("rb") as f:
            head = f.read(4096)
        if keeps.encode() not in head:
            raise UsageError(
                f"{option} {path}: exists and is not a file this command wrote; give a new "
                "path or remove it first"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot make its folder ({e.strerror})") from None
    return path


# -- opening a model -------------------------------------------------------------------------
@contextmanager
def pull_progress(what: str = "model") -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per stage of fetching/verifying a model or a data set, started at the
    first report (nothing is drawn when there is no work to do)."""
    bar: Progress | None = None
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"{what}: {stage}", total=total or None)
        bar.update(tasks[stage], completed=done, total=total or None)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


def open_engine(config: BackendConfig, prompting: Prompting) -> Engine:
    with pull_progress() as progress, err.status("loading model…"):
        return Engine.open(config, prompting=prompting, progress=progress)
