"""The README and docs/*.md say only what exists: every relative link resolves (to a file, and
an `#anchor` to one of its headings), every `ponder` command and option in their bash blocks is
one the CLI has, and every built-in part is described. In-process and fast: no model, no
subprocess."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer._click.core import Command
from typer.core import TyperGroup as Group

from ponder.answers.kinds import ANSWER_KINDS
from ponder.cli import app
from ponder.lm import BACKENDS
from ponder.plugins import BUILTIN, Registry
from ponder.runtime.strategy import STRATEGIES
from ponder.runtime.verifiers import VERIFIERS

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLI = typer.main.get_command(app)
SHELLS = {"bash", "sh", "shell", "console"}
# CommonMark: a fence is 3+ backticks or tildes, indented at most 3 spaces; a backtick fence's
# info string holds no backtick (so "```` ```python ````" starting a line is inline code)
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: list[str]


def split(page: Path) -> tuple[list[str], list[Block]]:
    """The page's prose lines (code blocks blanked, so line numbers hold) and its blocks."""
    prose: list[str] = []
    blocks: list[Block] = []
    fence: str | None = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        found = FENCE.match(line)
        if fence is None:
            if found and not (found.group(1)[0] == "`" and "`" in found.group(2)):
                fence = found.group(1)
                info = found.group(2).strip()
                blocks.append(Block(page, number, info.split()[0] if info else "", []))
                prose.append("")
            else:
                prose.append(line)
            continue
        prose.append("")
        closing = FENCE.match(line)
        if (
            closing
            and closing.group(1)[0] == fence[0]
            and len(closing.group(1)) >= len(fence)
            and not closing.group(2).strip()
        ):
            fence = None
        else:
            blocks[-1].body.append(line)
    assert fence is None, f"{page.name}: a code block opened at line {blocks[-1].line} never closes"
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = split(page)
    seen: dict[str, int] = {}
    out = set()
    for line in prose:
        found = HEADING.match(line)
        if not found:
            continue
        base = slug(found.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> Iterator[tuple[int, str]]:
    prose, _ = split(page)
    for number, line in enumerate(prose, 1):
        for found in LINK.finditer(INLINE_CODE.sub("", line)):
            target = found.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                yield number, target


LINKS = [(p, n, t) for p in PAGES for n, t in links(p)]


def test_the_pages_exist_and_have_links() -> None:
    names = {p.name for p in PAGES}
    assert {"README.md", "ARCHITECTURE.md", "cli.md", "strategies.md"} <= names
    assert len(LINKS) > 50


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for p, _, t in LINKS if p.name == "README.md"}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md links no docs/{', docs/'.join(missing)}"


@pytest.mark.parametrize(
    ("page", "line", "target"),
    LINKS,
    ids=[f"{p.relative_to(ROOT)}:{n}:{t}" for p, n, t in LINKS],
)
def test_every_relative_link_resolves(page: Path, line: int, target: str) -> None:
    path, _, anchor = target.partition("#")
    where = f"{page.relative_to(ROOT)}:{line}: {target}"
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{where}: no such file"
    assert dest.is_relative_to(ROOT), f"{where}: outside the repository"
    if anchor:
        assert dest.suffix == ".md", f"{where}: an anchor into a file that is not markdown"
        assert anchor in anchors(dest), f"{where}: no heading '#{anchor}' in {dest.name}"


# -- commands in bash blocks -----------------------------------------------------------------
@dataclass
class Shown:
    where: str
    words: list[str]  # from the word after `ponder`


def commands() -> list[Shown]:
    """Every `ponder ...` command of every shell block, continuation lines joined and comments
    dropped; a pipeline or a list gives each of its commands."""
    out: list[Shown] = []
    for page in PAGES:
        for block in split(page)[1]:
            if block.lang not in SHELLS:
                continue
            logical: list[tuple[int, str]] = []
            pending = ""
            for offset, line in enumerate(block.body, 1):
                pending += line
                if pending.endswith("\\"):
                    pending = pending[:-1] + " "
                    continue
                logical.append((block.line + offset, pending))
                pending = ""
            for number, line in logical:
                words = shlex.split(line, comments=True)
                command: list[str] = []
                for word in [*words, ";"]:
                    if word in (";", "|", "||", "&&", "&"):
                        starts = [i for i, w in enumerate(command) if Path(w).name == "ponder"]
                        if starts:
                            where = f"{page.relative_to(ROOT)}:{number}"
                            out.append(Shown(where, command[starts[0] + 1 :]))
                        command = []
                    else:
                        command.append(word)
    return out


SHOWN = commands()


def options_of(command: Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("-"))
    return names


def test_the_docs_show_many_commands() -> None:
    assert len(SHOWN) > 80
    assert {s.words[0] for s in SHOWN if s.words} >= {"solve", "bench", "report", "serve"}


@pytest.mark.parametrize("shown", SHOWN, ids=[f"{s.where}" for s in SHOWN])
def test_every_command_and_option_shown_exists(shown: Shown) -> None:
    command: Command = CLI
    path = ["ponder"]
    words = list(shown.words)
    while isinstance(command, Group) and words and not words[0].startswith("-"):
        name = words.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, (
            f"{shown.where}: `{' '.join(path)} {name}`: no such command "
            f"(choose from: {', '.join(command.commands)})"
        )
        command, path = sub, [*path, name]
    valid = options_of(command)
    for word in words:
        word = word.lstrip("[")
        if word.startswith("--") or re.fullmatch(r"-[A-Za-z]", word):
            name = word.split("=", 1)[0].rstrip("]")
            assert name in valid, (
                f"{shown.where}: `{' '.join(path)}` has no option {name} "
                f"(options: {', '.join(sorted(valid))})"
            )


# -- every built-in part is described ---------------------------------------------------------
def builtins(registry: Registry) -> list[str]:  # type: ignore[type-arg]
    return [name for name, part in registry.parts().items() if part.origin == BUILTIN]


# (name, the page that must describe it; "" any page of docs/)
PARTS = [
    *((name, "strategies.md") for name in builtins(STRATEGIES)),
    *((name, "verifiers.md") for name in builtins(VERIFIERS)),
    *((name, "verifiers.md") for name in builtins(ANSWER_KINDS)),
    *((name, "") for name in builtins(BACKENDS)),
    *((name, "cli.md") for name in CLI.commands),  # type: ignore[attr-defined]
]


@pytest.mark.parametrize(("name", "page"), PARTS, ids=[f"{p or 'docs'}:{n}" for n, p in PARTS])
def test_every_builtin_part_is_described(name: str, page: str) -> None:
    pages = [ROOT / "docs" / page] if page else sorted((ROOT / "docs").glob("*.md"))
    text = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    named = re.search(rf"`(ponder )?{re.escape(name)}[`/ \-]", text)
    assert named, f"docs/{page or '*.md'} never names {name} in code"
