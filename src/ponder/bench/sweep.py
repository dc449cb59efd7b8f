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

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ponder.budget import Budget
from ponder.errors import UsageError
from ponder.tasks.registry import get_task
from ponder.types import Problem


class TaskSpec(BaseModel):
    """A registered task by name, or a custom file (`data`) with its field names."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    split: str | None = None  # a registered task's split (default: test)
    data: str | None = None
    question_field: str = "question"
    answer_field: str = "answer"
    answer_type: str = "math"
    id_field: str | None = None
    limit: int | None = Field(default=None, ge=1)
    offset: int = Field(default=0, ge=0)

    def label(self) -> str:
        if self.data is not None:
            return f"data:{Path(self.data).name}"
        assert self.name is not None
        return self.name if self.split in (None, "test") else f"{self.name}:{self.split}"

    def load(self, *, base: Path | None = None, limit: int | None = None) -> list[Problem]:
        limit = self.limit if self.limit is not None else limit
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
    base_url: str | None = None
    price: str | None = None
    parameters: int | None = None


class StrategySpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _no_budget() -> list[Budget | None]:
    return [None]


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store: str | None = None
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec()])
    tasks: list[TaskSpec]
    strategies: list[StrategySpec]
    budgets: list[Budget | None] = Field(default_factory=_no_budget)
    seeds: list[int] = Field(default_factory=lambda: [0])
    limit: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=512, ge=1)
    slots: int = Field(default=8, ge=1)

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


def load_sweep(path: Path) -> Sweep:
    """Parse a YAML (.yaml/.yml) or TOML (.toml) sweep file; errors name the file and field."""
    if not path.is_file():
        raise UsageError(f"{path}: no such sweep file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise UsageError(f"{path}: a sweep file is .yaml, .yml or .toml")
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of sweep settings at the top level")
    try:
        sweep = Sweep.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise UsageError(f"{path}: {problems}") from None
    for t in sweep.tasks:
        if (t.name is None) == (t.data is None):
            raise UsageError(f"{path}: each task needs exactly one of 'name' or 'data'")
        if t.name is not None:
            get_task(t.name).path(t.split)  # an unknown task or split lists the known ones
    return sweep
