"""The `ponder` command line: one module per command, thin over the library."""

from __future__ import annotations

import sys
import warnings
from types import ModuleType
from typing import Annotated, TextIO

import typer

# typer 0.29 vendors click; its UsageError is what a bad option or argument raises.
from typer._click.core import Command
from typer._click.exceptions import NoArgsIsHelpError, NoSuchOption
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperGroup, TyperOption

from ponder import __version__
from ponder.cli import bench, data, models, parts, report, router, serve, solve, trace
from ponder.cli.common import app
from ponder.errors import PonderError, UsageError
from ponder.plugins import PluginWarning
from ponder.runtime.settings import tune_gc

COMMANDS: tuple[ModuleType, ...] = (solve, bench, report, router, serve, trace, parts, models, data)


def show_version(value: bool) -> None:
    if value:
        print(f"ponder {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Print the version and exit"
        ),
    ] = None,
) -> None:
    """Inference-time compute scaling for language-model reasoning."""


def fail(message: str, code: int) -> None:
    print(
        f"error: {' '.join(message.split())}" if code == 2 else f"error: {message}", file=sys.stderr
    )
    sys.exit(code)


def one_line_warnings(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Plugin warnings as one line each ('warning: package X: ...'); others as usual."""
    if issubclass(category, PluginWarning):
        print(f"warning: {message}", file=sys.stderr)
        return
    print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr)


# Options whose value may be left out (`--ray` alone: a local Ray instance), and what they
# then mean; typer has no such options, so a value is put in before it parses.
OPTIONAL_VALUES = {"--ray": "local"}


def fill_optional_values(args: list[str]) -> list[str]:
    """`args` with the implied value after an optional-value option given without one (last,
    or followed by another option)."""
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg in OPTIONAL_VALUES and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(OPTIONAL_VALUES[arg])
    return out


def refuse_repeated_options(root: Command, args: list[str]) -> None:
    """An option that takes one value given twice is an error naming both values (click would
    keep the last one silently)."""
    command, i = root, 0
    while isinstance(command, TyperGroup) and i < len(args):  # down to the subcommand given
        if args[i] in command.commands:
            command = command.commands[args[i]]
        i += 1
    takes_value = {
        name: param
        for param in command.params
        if isinstance(param, TyperOption) and not param.is_flag and not param.count
        for name in (*param.opts, *param.secondary_opts)
    }
    seen: dict[str, tuple[str, str]] = {}  # the option's first name -> (as written, its value)
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        name, value = [*arg.split("=", 1), ""][:2] if arg.startswith("--") else (arg, "")
        param = takes_value.get(name)
        if param is None and len(arg) > 2 and arg[:2] in takes_value and arg[1] != "-":
            name, value, param = arg[:2], arg[2:], takes_value[arg[:2]]  # -n8
        if param is None:
            i += 1
            continue
        if not value and "=" not in arg:
            i += 1
            value = args[i] if i < len(args) else ""
        if not param.multiple:
            key = param.opts[0]
            if key in seen:
                first, before = seen[key]
                raise UsageError(
                    f"{name} given twice ({first} {before}, then {name} {value}); give it once"
                )
            seen[key] = (name, value)
        i += 1


def main() -> None:
    """Entry point: every error is one line on stderr; usage errors exit 2, others 1."""
    tune_gc()  # a long-running process with many searches in flight (ponder/runtime/settings.py)
    warnings.showwarning = one_line_warnings
    for i, arg in enumerate(sys.argv[1:], 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # bytes the locale could not decode, kept as surrogates
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            fail(f"argument {i} ({shown!r}) is not UTF-8 text", 2)
    try:
        command = typer.main.get_command(app)
        args = fill_optional_values(sys.argv[1:])
        refuse_repeated_options(command, args)
        rv = command.main(args=args, standalone_mode=False)
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


__all__ = ["COMMANDS", "app", "main"]
