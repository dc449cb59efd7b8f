"""The shape every strategy has, and the registry that names them.

A strategy is its config (plain data, a pydantic model whose fields are its options, each
with a description) plus `run(problem, ctx)`, which reads like the paper. `@strategy`
registers a class under its `name`; other packages register theirs through the
`ponder.strategies` entry point group.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from pydantic_core import PydanticSerializationError

from ponder.errors import UsageError
from ponder.plugins import Registry, first_line
from ponder.runtime.context import Context
from ponder.runtime.prompting import Prompting
from ponder.runtime.verifiers import options_error
from ponder.types import AnswerWith, Problem, Result

# What a strategy's registry entry may say it is (its capabilities):
POOLED = "pooled"  # its units are independent samples: a bench draws one pool for every k
STEP = "step"  # it searches over steps (continues partial solutions)
SCORED = "scored"  # it needs a verifier

# Field metadata (`json_schema_extra`) of an integer option that multiplies a solve's work
# (samples, expansions, passes, steps): what `ponder serve` caps by a key's max_n.
MULTIPLIES: dict[str, JsonValue] = {"multiplies_work": True}
# The most a width (samples, beams, iterations) may be for one problem: past it a run is far
# more likely a typo than a plan, and would take hours before saying so.
MAX_WIDTH = 4096
# ... and the product of those options (beam's n × m generations a step)
MAX_WORK = 2**20


class TooWide(UsageError):
    """An option that multiplies the work set past MAX_WIDTH (`ponder serve`: 413)."""


class Strategy(BaseModel):
    """A strategy is its config (plain data) plus `run`, which reads like the paper."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    name: ClassVar[str]
    # The option `-n` sets: the strategy's natural width (samples, beam width, iterations);
    # None if it has none.
    width: ClassVar[str | None] = None
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # PAL: "program" answers with the printed output of the model's program; "both" keeps
    # the reasoning's answer and the program's for a CoT × PoT cross-check.
    answer_with: AnswerWith = Field(
        default="reasoning",
        description="reasoning (chain of thought), program (PAL: the sandbox runs the model's "
        "program), both, tir (Python called mid-reasoning, its real output read) or no_cot "
        "(the answer alone)",
    )

    def config(self) -> dict[str, Any]:
        """The options as plain data (what a Result and the store record)."""
        return self.model_dump(mode="json")

    def check_fits(self, problem: Problem) -> None:
        """Raise UsageError when this strategy, as configured, cannot answer `problem` (asked
        before anything is generated: by the engine per problem, by a bench per run)."""
        if problem.kind == "code" and self.answer_with in ("program", "both"):
            raise UsageError(
                f"answer_with {self.answer_with}: a program's printed output cannot answer a "
                f"code problem{where(problem)}; use reasoning or tir"
            )

    def thinking_unkept(self, prompting: Prompting) -> str | None:
        """Why this strategy, as configured, cannot keep `prompting`'s thinking budget (None:
        it can, or there is none). The budget is kept by the thinking loop, which writes
        reasoning samples turn by turn; elsewhere it would be ignored."""
        if prompting.think_budget is not None and self.answer_with != "reasoning":
            return f"thinking budgets apply to answer_with reasoning, not {self.answer_with}"
        return None

    async def run(self, problem: Problem, ctx: Context) -> Result:
        raise NotImplementedError


class OptionsClash(ValueError):
    """A check across a strategy's options (a model validator's): `options` are those it
    involves, most likely at fault first; make_strategy names the first one its caller gave
    (a server's error `param`)."""

    def __init__(self, message: str, *options: str) -> None:
        super().__init__(message)
        self.options = options


def check_thinking(strategy: Strategy, prompting: Prompting, option: str = "think_budget") -> None:
    """UsageError naming `option` when `strategy` cannot keep `prompting`'s thinking budget
    (it would be ignored)."""
    if (why := strategy.thinking_unkept(prompting)) is not None:
        raise UsageError(f"{option} {prompting.think_budget}: {why}")


def where(problem: Problem) -> str:
    """ " (ID)" naming a problem in an error, or nothing when it has no id."""
    return f" ({problem.id})" if problem.id else ""


S = TypeVar("S", bound=type[Strategy])

STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy",
    "ponder.strategies",
    tuple(
        f"ponder.search.{module}"
        for module in (
            "greedy",
            "sample",
            "vote",
            "best_of_n",
            "weighted_vote",
            "confidence_vote",
            "deepconf_filter",
            "certainty_borda",
            "cross_vote",
            "adaptive",
            "auto",
            "deepconf",
            "refine",
            "beam",
            "dvts",
            "lookahead",
            "step_bon",
            "particles",
            "particle_gibbs",
            "mcts",
        )
    ),
    is_part=lambda obj: isinstance(obj, type) and issubclass(obj, Strategy),
    a_part="a Strategy class",
)


def strategy(cls: S) -> S:
    """Register a Strategy class under its `name` (summary: its docstring's first sentence)."""
    STRATEGIES.add(
        cls.name,
        cls,
        summary=first_line(cls.__doc__),
        options=cls,
        capabilities=cls.capabilities,
    )
    return cls


def make_strategy(name: str, /, *, n: int | None = None, **options: Any) -> Strategy:
    """A strategy by name with its options (None means the default). `n` sets the strategy's
    width (see `Strategy.width`). Options it does not take are an error naming the valid ones
    (options meant for several strategies at once: `options_taken` first)."""
    cls = STRATEGIES.get(name).obj
    if n is not None and not isinstance(n, bool):
        with contextlib.suppress(TypeError):  # a numpy integer is a width too (strict: int only)
            n = operator.index(n)
    if n is not None:
        if cls.width is None:
            raise UsageError(
                f"strategy '{name}' has no width for -n to set (its options: "
                f"{', '.join(option_names(cls))}; give them with -o KEY=VALUE)"
            )
        if options.get(cls.width) not in (None, n):
            raise UsageError(
                f"strategy '{name}': its width {cls.width} is given twice ({n} and "
                f"{options[cls.width]}); give it once"
            )
        options[cls.width] = n
    known = {k: v for k, v in options.items() if v is not None}
    try:
        strategy = cls(**known)
    except ValidationError as e:
        locs = {str(error["loc"][0]) for error in e.errors() if error["loc"]}
        option = locs.pop() if len(locs) == 1 else None
        for error in e.errors():
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, OptionsClash):  # the option the caller gave is the one named
                option = next((o for o in cause.options if o in known), cause.options[0])
            elif isinstance(cause, UsageError):  # a validator's own says it best (a file's)
                raise cause from None
        raise UsageError(options_error(f"strategy '{name}'", cls, e), option=option) from None
    try:  # what is stored and keyed must be text (a lone surrogate failed after the compute)
        strategy.model_dump_json()
    except PydanticSerializationError as e:
        raise UsageError(f"bad options for strategy '{name}': not text ({e})") from None
    work, widths = 1, []
    for field, info in cls.model_fields.items():
        wide = isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(
            "multiplies_work"
        )
        value = getattr(strategy, field)
        if wide and isinstance(value, int) and value > MAX_WIDTH:
            raise TooWide(
                f"strategy '{name}': {field}={value} is more than {MAX_WIDTH}, the most ponder "
                f"runs for one problem",
                option=field,
            )
        if wide and isinstance(value, int):
            work *= value
            widths.append(f"{field}={value}")
    if work > MAX_WORK:  # each within MAX_WIDTH, together (beam's n × m a step) past it
        raise TooWide(
            f"strategy '{name}': {' × '.join(widths)} = {work:,} is more than {MAX_WORK:,}, the "
            "most ponder runs for one problem",
            option=None,
        )
    return strategy


def options_taken(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Of options meant for several strategies at once (one `-o` list for `-s a,b`), those
    strategy `name` takes; `n`, the width, only if it has one."""
    cls = STRATEGIES.get(name).obj
    fields = set(option_names(cls)) | ({"n"} if cls.width is not None else set())
    return {k: v for k, v in options.items() if k in fields}


def option_names(cls: type[BaseModel]) -> list[str]:
    return [k for k, f in cls.model_fields.items() if not f.exclude]
