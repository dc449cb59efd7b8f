"""Sweep files: models × tasks × strategies × budgets × seeds as plain data (YAML or TOML).

    store: runs/gsm8k.sqlite
    models: [qwen2.5-coder-0.5b]
    tasks: [{name: gsm8k, limit: 50}]
    strategies:
      - greedy
      - {name: vote, n: 16}
      - {name: weighted_vote, n: 16, verifier: self_judge}
    seeds: [0]

Budgets (per problem) apply to strategies that are not pooled; for pooled ones (sample, vote,
weighted_vote, best_of_n) the pool size n is the compute axis.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ponder.bench.harness import Harness, Plan, Progress, Units, plan
from ponder.bench.store import Store
from ponder.errors import UsageError, not_utf8, problems
from ponder.lm import BackendConfig, Price
from ponder.lm.config import ServerUrl
from ponder.lm.registry import DEFAULT_MODEL, sha256_file
from ponder.lm.registry import Registry as Models
from ponder.runtime.budget import Budget
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.strategy import check_thinking, make_strategy
from ponder.tasks.registry import get_task
from ponder.types import SEED_LIMIT, Problem, Usage, blank

DATA_ONLY = frozenset({"question_field", "answer_field", "answer_type", "id_field"})


class TaskSpec(BaseModel):
    """A registered task by name, or a custom file (`data`) with its field names."""

    # strict: YAML reads `yes` as true and 2.0 as a float; neither is a seed or a limit
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = None
    split: str | None = None  # a registered task's split (default: test)
    data: str | None = None
    question_field: str = "question"
    answer_field: str = "answer"
    answer_type: str = "math"
    id_field: str | None = None
    limit: int | None = Field(default=None, ge=1)
    offset: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _fields_of_a_file(self) -> TaskSpec:
        given = sorted(DATA_ONLY & self.model_fields_set)
        if self.name is not None and given:  # a named task knows its own
            raise ValueError(f"{', '.join(given)}: read with 'data' (a file), not a named task")
        return self

    def label(self) -> str:
        if self.data is not None:
            return f"data:{Path(self.data).name}"
        assert self.name is not None
        return self.name if self.split in (None, "test") else f"{self.name}:{self.split}"

    def load(self, *, base: Path | None = None, limit: int | None = None) -> list[Problem]:
        """The problems; none (an empty file, an offset past the end) is an error."""
        problems = self._load(base, self.limit if self.limit is not None else limit)
        if not problems:
            where = f" from --offset {self.offset}" if self.offset else ""
            what = self.data if self.data is not None else self.label()
            raise UsageError(f"{what}: no problems{where} (an empty set runs nothing)")
        return problems

    def _load(self, base: Path | None, limit: int | None) -> list[Problem]:
        if self.data is not None:
            from ponder.tasks.custom import load_custom

            path = Path(self.data)
            if base is not None and not path.is_absolute():
                path = base / path
            return load_custom(
                path,
                question_field=self.question_field,
                answer_field=self.answer_field,
                answer_type=self.answer_type,
                id_field=self.id_field,
                limit=limit,
                offset=self.offset,
            )
        assert self.name is not None
        return get_task(self.name).load(limit=limit, offset=self.offset, split=self.split)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None  # registered name or .gguf path (or the server's model name)
    base_url: ServerUrl | None = None
    backend: str | None = None
    price: str | None = None
    parameters: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # the backend's own settings

    @field_validator("name")
    @classmethod
    def _named(cls, name: str | None) -> str | None:
        if name is not None and blank(name):  # ("" ran the default model without a word)
            raise ValueError("empty: give a model name or a .gguf path, or leave it out")
        return name

    def config(
        self, sweep: Sweep, *, api_key: str | None = None, timeout: float | None = None
    ) -> BackendConfig:
        """The backend this model runs on, with the sweep's slots and context size."""
        return BackendConfig(
            backend=self.backend,
            model=self.name,
            base_url=self.base_url,
            api_key=api_key,
            slots=sweep.slots,
            ctx_size=sweep.ctx_size,
            price=Price.parse(self.price) if self.price is not None else None,
            parameters=self.parameters,
            timeout=timeout,
            threads=sweep.threads,
            options=self.options,
        )


class StrategySpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _no_budget() -> list[Budget | None]:
    return [None]


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # (as TaskSpec: no yes for 1)
    store: str | None = None
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec()])
    tasks: list[TaskSpec]
    strategies: list[StrategySpec]
    budgets: list[Budget | None] = Field(default_factory=_no_budget)
    seeds: list[Annotated[int, Field(ge=0, lt=SEED_LIMIT)]] = Field(default_factory=lambda: [0])
    limit: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=512, ge=1)
    system: str | None = None  # the system prompt (default: ponder's)
    think_budget: int | None = Field(default=None, ge=1)  # thinking tokens at most
    think_min: int = Field(default=0, ge=0)
    slots: int = Field(default=8, ge=1)
    ctx_size: int = Field(default=2048, ge=64)
    # keep each direct unit's trace (search tree, refine revisions) in the store
    keep_trees: bool = False
    threads: int | None = Field(default=None, ge=1)  # an embedded model's CPU threads

    def prompting(self) -> Prompting:
        """How the sweep's problems become requests."""
        settings: dict[str, object] = {"max_tokens": self.max_tokens}
        if self.system is not None:
            # with a thinking budget, the prompt in force is the thinking one (cli.common)
            settings["system" if self.think_budget is None else "think_system"] = self.system
        if self.think_budget is not None:
            settings.update(think_budget=self.think_budget, think_min=self.think_min)
        return Prompting.model_validate(settings)

    def with_limit(self, limit: int) -> Sweep:
        """This sweep on `limit` problems per task (a task's own smaller limit stays)."""
        tasks = [
            t.model_copy(update={"limit": None if t.limit is None else min(t.limit, limit)})
            for t in self.tasks
        ]
        return self.model_copy(update={"limit": limit, "tasks": tasks})

    @field_validator("models", "tasks", "strategies", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        # a bare string is a name
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("tasks", "strategies", "seeds")
    @classmethod
    def _not_empty(cls, v: list[Any]) -> list[Any]:
        if not v:
            raise ValueError("must list at least one")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if said := repeated_seeds(v):
            raise ValueError(said)
        return v


def repeated_seeds(seeds: Sequence[int]) -> str | None:
    """Which seeds are given more than once, said (the same seed again draws the same
    samples: twice the cost, no new data), or None."""
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    return f"seed {', '.join(map(str, twice))} given twice" if twice else None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that names one key twice (the last one was
    kept without a word: `seeds:` twice ran the second list only)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' given twice (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_sweep(path: Path) -> Sweep:
    """Parse a YAML (.yaml/.yml) or TOML (.toml) sweep file; errors name the file and field."""
    if not path.is_file():
        raise UsageError(f"{path}: no such sweep file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(not_utf8(path, e)) from None
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.load(text, Loader=_UniqueKeyLoader)
        else:
            raise UsageError(f"{path}: a sweep file is .yaml, .yml or .toml")
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{at}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of sweep settings at the top level")

    def where(loc: tuple[int | str, ...]) -> str:  # the file, and the line in YAML
        line = yaml_line(text, loc) if path.suffix != ".toml" else None
        return f"{path}:{line}" if line is not None else str(path)

    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]["loc"]
        raise UsageError(f"{where(first)}: {problems(e)}") from None
    for t in sweep.tasks:
        if (t.name is None) == (t.data is None):
            raise UsageError(f"{path}: each task needs exactly one of 'name' or 'data'")
        if t.name is not None:
            get_task(t.name).path(t.split)  # an unknown task or split lists the known ones
    for i, s in enumerate(sweep.strategies):  # a misspelt option is an error, not a default
        try:
            make_strategy(s.name, **s.options())
        except UsageError as e:
            loc = ("strategies", i) if e.option is None else ("strategies", i, e.option)
            raise UsageError(f"{where(loc)}: strategies[{i}]: {e}") from None
    return sweep


def yaml_line(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (mapping keys and list indices, as a
    pydantic error's loc), or of its deepest ancestor in the file (a missing key: the mapping
    that lacks it). None when the text does not compose."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line: int = node.start_mark.line
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == str(part)]
            if not found:
                break
            key, node = found[0]
            line = key.start_mark.line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 1


class SweepOutcome(BaseModel):
    """What a sweep did: the runs it wrote to, whether it was stopped, units that failed."""

    runs: list[int] = Field(default_factory=list)
    interrupted: bool = False
    failed: int = 0
    # what readying the backends spent before any unit (a server's capability probe): on
    # no unit's bill, so a problem's cost is its own
    probe: Usage = Field(default_factory=Usage)


Watch = Callable[[str, Plan], Callable[[Progress], None] | None]
# Opens what computes a model's units: an Engine here, or workers elsewhere (RayUnits).
OpenUnits = Callable[[BackendConfig, Prompting], AbstractAsyncContextManager[Engine | Units]]


class PreparedSweep(BaseModel):
    """A sweep checked and loaded: its strategies' plans, backends and problems."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    sweep: Sweep
    configs: list[BackendConfig]
    plans: list[Plan]
    tasks: list[tuple[str, list[Problem]]]


def prepare_sweep(
    sweep: Sweep,
    base: Path,
    *,
    api_key: str | None = None,
    request_timeout: float | None = None,
) -> PreparedSweep:
    """Check everything a sweep names and load its problems: bad strategies, prices, tasks
    and data fail here, before any store is written or model loaded."""
    strategies = [make_strategy(s.name, **s.options()) for s in sweep.strategies]
    asking = sweep.prompting()
    for s in strategies:
        check_thinking(s, asking)
    configs = [m.config(sweep, api_key=api_key, timeout=request_timeout) for m in sweep.models]
    plans = [p for b in sweep.budgets for p in plan(strategies, b)]
    tasks = [(t.label(), t.load(base=base, limit=sweep.limit)) for t in sweep.tasks]
    for s in strategies:  # a router (auto) is never evaluated on problems it was trained on
        check = getattr(s, "check_unseen", None)
        if check is not None:
            for _, problems in tasks:
                check(problems)
    return PreparedSweep(sweep=sweep, configs=configs, plans=plans, tasks=tasks)


async def run_sweep(
    prepared: PreparedSweep,
    store: Store,
    open_engine: OpenUnits,
    *,
    stop: asyncio.Event | None = None,
    watch: Watch | None = None,
) -> SweepOutcome:
    """Every model × task × plan × seed into `store`. `open_engine` opens each model (the
    CLI's shows a progress bar while a model is fetched); `watch(what, plan)` may return a
    progress callback for one run. When `stop` is set, no new unit starts and the units in
    flight are stored. `open_engine` may open workers elsewhere instead of an engine here
    (`ponder.bench.distributed.RayUnits`): the harness stays the store's only writer."""
    stop = stop or asyncio.Event()
    outcome = SweepOutcome()
    prompting = prepared.sweep.prompting()
    for config in prepared.configs:
        async with open_engine(config, prompting) as engine:
            harness = Harness(
                engine,
                store,
                model_sha256=model_sha256(config),
                keep_trees=prepared.sweep.keep_trees,
            )
            for label, problems in prepared.tasks:
                for p in prepared.plans:
                    for seed in prepared.sweep.seeds:
                        if stop.is_set():
                            outcome.interrupted = True
                            return outcome
                        what = f"{label} {'+'.join(p.methods)}"
                        if p.kind == "pool":
                            what += f"@{p.n}"
                        done = await harness.execute(
                            label,
                            problems,
                            p,
                            seed=seed,
                            stop=stop,
                            on_progress=watch(what, p) if watch else None,
                        )
                        outcome.runs.append(done.run.rid)
                        outcome.failed += done.progress.failed
                        outcome.probe += done.probe
    outcome.interrupted = stop.is_set()
    return outcome


def model_sha256(config: BackendConfig) -> str:
    """What identifies the model's weights in the store: the registered sha256, a local
    file's sha256, or (for a server) its URL, since its weights cannot be checked."""
    if config.base_url:
        return f"server:{config.base_url}"
    if config.backend_name() != "llamacpp":
        return f"backend:{config.backend_name()}:{config.model or ''}"
    name = config.model or DEFAULT_MODEL
    if name.endswith(".gguf") or "/" in name:
        return sha256_file(Path(name).expanduser())
    return Models().spec(name).sha256
