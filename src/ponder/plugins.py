"""One registry per kind of part, open to other packages.

Every part — strategy, verifier, backend, task, answer kind — is registered once with its name,
a one-line summary, its typed options (a pydantic model whose fields carry descriptions) and
its capabilities. ponder's own parts register with a decorator in their modules, which the
registry imports (by name) the first time it is asked; another installed package adds parts
through an entry point in the registry's group:

    [project.entry-points."ponder.strategies"]
    my_strategies = "my_package.strategies"     # a module whose decorators register parts

The CLI, the server, the harness and every error message that lists names ask the registry,
so a part is listed and usable everywhere the moment it is installed. A plugin that fails to
import, or registers a name that is taken, is a warning naming its package; ponder goes on.
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.metadata
import re
import typing
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from ponder.errors import UsageError

T = TypeVar("T")

BUILTIN = "ponder"
# The package whose entry point is being loaded (what registrations are credited to).
_origin: contextvars.ContextVar[str] = contextvars.ContextVar("ponder_plugin_origin", default="")


class PluginWarning(UserWarning):
    """A plugin that could not be loaded or registered; ponder works on without it."""


@dataclass(frozen=True)
class Part(Generic[T]):
    """A registered part: what it is called, what it is, and what it can do."""

    name: str
    obj: T
    summary: str
    options: type[BaseModel] | None = None
    capabilities: frozenset[str] = frozenset()
    origin: str = BUILTIN  # the distribution that registered it
    module: str = ""  # where it was registered (orders ponder's own parts)

    def option_help(self) -> list[tuple[str, str, str]]:
        """(name, type and default, description) of each option, for help texts."""
        if self.options is None:
            return []
        out = []
        for key, f in self.options.model_fields.items():
            if f.exclude:
                continue
            if f.is_required():
                default = "required"
            else:
                value = f.get_default(call_default_factory=True)
                shown = str(value) if isinstance(value, BaseModel) else repr(value)
                default = f"default {shown}"
            out.append((key, f"{type_name(f.annotation)}, {default}", f.description or ""))
        return out


@dataclass
class Registry(Generic[T]):
    """The parts of one kind. `builtins` are ponder's modules that register parts of this kind
    (their parts are listed in this order, whoever imports them first); `group` is the
    entry-point group other packages register through (their parts come after)."""

    kind: str
    group: str
    builtins: tuple[str, ...]
    # what a part of this kind is, as a check and said: an object of another kind, from a
    # plugin, is refused with a warning naming the package (it failed later, unnamed)
    is_part: Callable[[object], bool] = callable
    a_part: str = "a callable"
    _parts: dict[str, Part[T]] = field(default_factory=dict)
    _asked: int = 0  # calls to `add`, kept or not (a plugin that made none is said)
    _builtins_loaded: bool = False
    _plugins_loaded: bool = False
    _ordered: dict[str, Part[T]] | None = None

    # -- registering -------------------------------------------------------------------------
    def add(
        self,
        name: str,
        obj: T,
        *,
        summary: str,
        options: type[BaseModel] | None = None,
        capabilities: frozenset[str] | set[str] = frozenset(),
    ) -> T:
        """Register `obj` as `name` (credited to the package being loaded, or ponder). A
        plugin's part with a name no command can give, or that is no part of this kind, is
        ignored with a warning naming the package (ponder's own: an error)."""
        origin = _origin.get() or BUILTIN
        if origin != BUILTIN:
            self._load_builtins()  # a plugin never takes a built-in's name by loading first
        self._asked += 1
        wrong = None
        if not isinstance(name, str) or not PART_NAME.fullmatch(name):
            wrong = f"{self.kind} name {name!r} is not a name (letters, digits and _)"
        elif not self.is_part(obj):
            wrong = f"{self.kind} '{name}' is {type(obj).__name__}, not {self.a_part}"
        if wrong is not None:
            if origin == BUILTIN:
                raise TypeError(wrong)
            warnings.warn(f"package {origin}: {wrong}; ignored", PluginWarning, stacklevel=2)
            return obj
        kept = self._parts.get(name)
        if kept is not None:
            if kept.obj is not obj:
                warnings.warn(
                    f"package {origin}: {self.kind} '{name}' is taken (by {kept.origin}); "
                    f"{origin}'s is ignored",
                    PluginWarning,
                    stacklevel=2,
                )
            return obj
        module = str(getattr(obj, "__module__", "") or "")
        part = Part(name, obj, summary, options, frozenset(capabilities), origin, module)
        self._parts[name] = part
        self._ordered = None
        return obj

    # -- asking --------------------------------------------------------------------------------
    def get(self, name: str) -> Part[T]:
        """The part called `name`; a UsageError listing every name otherwise."""
        part = self.parts().get(name)
        if part is None:
            raise UsageError(f"unknown {self.kind} '{name}' (choose from: {', '.join(self)})")
        return part

    def __contains__(self, name: object) -> bool:
        return name in self.parts()

    def __iter__(self) -> Iterator[str]:
        return iter(self.parts())

    def names(self, capability: str | None = None) -> list[str]:
        """Every name, or those whose part has `capability`."""
        return [
            n for n, p in self.parts().items() if capability is None or capability in p.capabilities
        ]

    def parts(self) -> dict[str, Part[T]]:
        """Every part: ponder's in the order of `builtins`, then the plugins' as loaded."""
        if self._ordered is None:
            self._load_builtins()
            if not self._plugins_loaded:
                self._plugins_loaded = True
                self._load_plugins()
            rank = {m: i for i, m in enumerate(self.builtins)}
            seq = {name: i for i, name in enumerate(self._parts)}
            ordered = sorted(
                self._parts.values(),
                key=lambda p: (
                    rank.get(p.module, len(rank)) if p.origin == BUILTIN else len(rank) + 1,
                    seq[p.name],
                ),
            )
            self._ordered = {p.name: p for p in ordered}
        return self._ordered

    # -- loading -------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True  # first: the modules' decorators call `add`
        for module in self.builtins:
            importlib.import_module(module)

    def _load_plugins(self) -> None:
        for ep in importlib.metadata.entry_points(group=self.group):
            package = ep.dist.name if ep.dist is not None else ep.value.split(":")[0]
            token = _origin.set(package)
            before = self._asked
            entry = f"package {package}: its {self.group} entry point '{ep.name}' ({ep.value})"
            try:
                loaded = ep.load()
                if callable(loaded) and not isinstance(loaded, type):
                    loaded(self)  # a function `register(registry)`
            except (Exception, SystemExit) as e:  # a broken plugin must not break ponder
                # (SystemExit too: a module that exits on import ended every command, silently)
                warnings.warn(
                    f"{entry} failed to load: {type(e).__name__}: {e}",
                    PluginWarning,
                    stacklevel=2,
                )
            else:
                if self._asked == before and not self._registered_by(package):
                    warnings.warn(
                        f"{entry} registered no {self.kind} (a class needs its decorator, "
                        f"e.g. @{self.kind.replace(' ', '_')}; a function is called with the "
                        "registry)",
                        PluginWarning,
                        stacklevel=2,
                    )
            finally:
                _origin.reset(token)

    def _registered_by(self, package: str) -> bool:
        """Whether `package` has a part here (an entry point whose module another of its
        entry points loaded already registers nothing new)."""
        return any(p.origin == package for p in self._parts.values())


PART_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def type_name(annotation: object) -> str:
    """A type as a user reads it: `int`, `str | None`, `one of a|b`."""
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + "|".join(str(a) for a in typing.get_args(annotation))
    name = getattr(annotation, "__name__", None)
    if isinstance(name, str) and not typing.get_args(annotation):
        return name
    return str(annotation).replace("typing.", "")


def first_line(doc: str | None) -> str:
    """A docstring's first sentence or line: a part's one-line summary."""
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    # a sentence ends at ". " not preceded by an abbreviation such as "e.g." or "i.e."
    end = re.search(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bcf)(?<!\bvs)\. ", text)
    return (text[: end.start()] if end else text).rstrip(".")


def parse_options(pairs: list[str], where: str = "-o") -> dict[str, object]:
    """`-o key=value` pairs as a dict: a value that reads as JSON (a number, true/false, a list
    or object) is that value, anything else is the string as written; a key given twice is an
    error."""
    import json

    out: dict[str, object] = {}
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{where} {pair!r}: expected KEY=VALUE")
        if key in given:  # a later value silently winning would hide a mistake in the command
            raise UsageError(f"{where} {key} given twice ({given[key]!r}, then {pair!r})")
        given[key] = pair
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out
