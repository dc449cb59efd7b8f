"""`ponder strategies | verifiers | backends | tasks | kinds`: every registered part, built-in
or from an installed plugin, with its options."""

from __future__ import annotations

import json
from typing import Annotated, Any, Generic, TypeVar

import typer
from rich.markup import escape

from ponder.answers import ANSWER_KINDS
from ponder.cli.common import app, out
from ponder.lm import BACKENDS
from ponder.plugins import BUILTIN, Part, Registry
from ponder.runtime.strategy import STRATEGIES
from ponder.runtime.verifiers import VERIFIERS
from ponder.tasks.registry import TASKS

T = TypeVar("T")

NameArg = Annotated[
    str | None, typer.Argument(help="One part's name, to see its options", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the list as JSON")]


class Listing(Generic[T]):
    """A registry's parts; with a name, that part's options as they are given (`given`: a
    format of the option's name)."""

    def __init__(self, registry: Registry[T], given: str = "-o {}=…") -> None:
        self.registry = registry
        self.given = given

    def show(self, name: str | None, as_json: bool = False) -> None:
        if as_json:
            parts = [self.registry.get(name)] if name else list(self.registry.parts().values())
            print(json.dumps([part_json(p) for p in parts], indent=2))
            return
        if name is not None:
            part = self.registry.get(name)  # an unknown name lists the known ones
            self.one(part.name, part.summary, part.capabilities, part.origin)
            rows = part.option_help()
            if not rows:
                out.print("  options: none")
            for key, kind, description in rows:
                named = self.given.format(key)
                out.print(escape(f"  {named}  ({kind}) {description}"), soft_wrap=True)
            return
        for part in self.registry.parts().values():
            self.one(part.name, part.summary, part.capabilities, part.origin)

    def one(self, name: str, summary: str, capabilities: frozenset[str], origin: str) -> None:
        tags = ", ".join(sorted(capabilities))
        where = "" if origin == BUILTIN else escape(f" [from {origin}]")
        out.print(
            f"[bold]{escape(name)}[/bold]{where}: {escape(summary)}"
            + (f" ({tags})" if tags else ""),
            soft_wrap=True,
        )


@app.command("strategies")
def strategies(name: NameArg = None, as_json: JsonOpt = False) -> None:
    """Registered strategies; with a name, its options (`-o KEY=VALUE`)."""
    Listing(STRATEGIES).show(name, as_json)


@app.command("verifiers")
def verifiers(name: NameArg = None, as_json: JsonOpt = False) -> None:
    """Registered verifiers; with a name, its options (a JSON spec's "options")."""
    Listing(VERIFIERS, '"options": {{"{}": …}}').show(name, as_json)


@app.command("backends")
def backends(name: NameArg = None, as_json: JsonOpt = False) -> None:
    """Registered backends (`--backend`); with a name, its own settings (`--backend-option`)."""
    Listing(BACKENDS, "--backend-option {}=…").show(name, as_json)


@app.command("tasks")
def tasks(name: NameArg = None, as_json: JsonOpt = False) -> None:
    """The problem sets `ponder bench` knows, with their answer kinds."""
    if as_json:
        chosen = [TASKS.get(name)] if name else list(TASKS.parts().values())
        print(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "kind": p.obj.kind,
                        "summary": p.summary,
                        "splits": ["test", *p.obj.splits],
                        "origin": p.origin,
                    }
                    for p in chosen
                ],
                indent=2,
            )
        )
        return
    if name is not None:
        task = TASKS.get(name).obj
        out.print(
            f"[bold]{task.name}[/bold] ({task.kind}): {escape(task.description)}", soft_wrap=True
        )
        out.print(f"  splits: {', '.join(['test', *task.splits])}")
        return
    for task_name, part in TASKS.parts().items():
        where = "" if part.origin == BUILTIN else escape(f" [from {part.origin}]")
        kind = part.obj.kind
        out.print(
            f"[bold]{task_name}[/bold]{where} ({kind}): {escape(part.summary)}", soft_wrap=True
        )


@app.command("kinds")
def kinds(name: NameArg = None, as_json: JsonOpt = False) -> None:
    """Registered answer kinds (`bench --answer-type` for your own data; a named task knows
    its own)."""
    Listing(ANSWER_KINDS).show(name, as_json)


def part_json(part: Part[Any]) -> dict[str, object]:
    return {
        "name": part.name,
        "summary": part.summary,
        "capabilities": sorted(part.capabilities),
        "origin": part.origin,
        "options": [
            {"name": key, "type": kind, "description": description}
            for key, kind, description in part.option_help()
        ],
    }
