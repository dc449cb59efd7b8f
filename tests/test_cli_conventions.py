"""CLI conventions: help on every option, `--version`, `--json` on the listing commands, and a
wrong value for any option exits 2 with one line naming the option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from unittest.mock import patch

import pytest
import typer
from typer._click.core import Command
from typer.core import TyperGroup as Group
from typer.core import TyperOption as Option

from helpers import run_ponder
from ponder import __version__
from ponder.cli import app, main

ROOT = typer.main.get_command(app)


def commands(
    group: Group = ROOT, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Command]]:  # type: ignore[assignment]
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, Group):
            out += commands(cmd, (*path, name))
        else:
            out.append(((*path, name), cmd))
    return out


ALL = commands()


@pytest.mark.parametrize(("path", "cmd"), ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_option_has_help(path: tuple[str, ...], cmd: Command) -> None:
    missing = [
        o.opts[0] for o in cmd.params if isinstance(o, Option) and not o.hidden and not o.help
    ]
    assert not missing, f"ponder {' '.join(path)}: options without help: {missing}"
    assert cmd.help, f"ponder {' '.join(path)} has no help"


def bad_values() -> list[tuple[tuple[str, ...], str, str]]:
    """(command, option, a value of the wrong type) for every typed option."""
    out = []
    for path, cmd in ALL:
        for o in cmd.params:
            if not isinstance(o, Option) or o.is_flag or o.hidden:
                continue
            if o.bare_type() in ("int", "float"):
                out.append((path, o.opts[-1], "not-a-number"))
    return out


BAD = bad_values()


@pytest.mark.parametrize(
    ("path", "option", "value"), BAD, ids=[f"{' '.join(p)} {o}" for p, o, _ in BAD]
)
def test_a_wrong_value_is_one_line_exit_2_naming_the_option(
    path: tuple[str, ...], option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = list(path)
    if path in (("solve",),):
        args.append("q")
    if path[-1] in ("report",):
        args.append("nothing.sqlite")
    # in process (the same entry point as the command; a subprocess each would take minutes)
    with (
        patch.object(sys, "argv", ["ponder", *args, option, value]),
        patch("ponder.cli.tune_gc"),  # (process-wide settings: not for the test process)
        patch.object(warnings, "showwarning", warnings.showwarning),
        pytest.raises(SystemExit) as done,
    ):
        main()
    assert done.value.code == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert option in lines[0] or option.lstrip("-") in lines[0], lines[0]


def test_version_and_json_listings() -> None:
    done = run_ponder("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"ponder {__version__}"
    for what in ("strategies", "verifiers", "backends", "tasks", "kinds"):
        listed = json.loads(run_ponder(what, "--json").stdout)
        assert listed and all("name" in p for p in listed), what


def test_a_parts_options_are_listed_as_they_are_given() -> None:
    """Strategies take -o, a verifier's options sit in its JSON spec, a backend's own
    settings are --backend-option; a backend without any says so (the embedded one listed
    the engine's whole configuration as -o options, none of which -o takes)."""
    shown = {
        ("strategies", "vote"): "  -o n=…  (int, default 8)",
        ("verifiers", "prm_http"): '  "options": {"url": …}  (str, required)',
        ("backends", "scripted"): "  --backend-option latency_s=…  (float, default 0.0)",
        ("backends", "llamacpp"): "  options: none",
        ("backends", "openai"): "  options: none",
    }
    for (what, name), line in shown.items():
        listed = run_ponder(what, name).stdout
        assert line in listed.splitlines() or any(
            row.startswith(line) for row in listed.splitlines()
        ), listed
    assert "-o model=" not in run_ponder("backends", "llamacpp").stdout


def test_sweep_with_flags_it_sets_itself_is_an_error(tmp_path: object) -> None:
    done = run_ponder("bench", "--sweep", "s.yaml", "--model", "x", "-n", "4")
    assert done.returncode == 2
    assert "--sweep: the sweep file sets -n, --model itself" in done.stderr
    done = run_ponder("bench", "--sweep", "s.yaml", "--offset", "5", "--split", "train")
    assert done.returncode == 2
    assert "--sweep: the sweep file sets --offset, --split itself" in done.stderr


def test_listings_keep_brackets_and_whole_summaries() -> None:
    # rich would read "[vllm]" as markup and drop it; a summary is cut at a sentence's end,
    # not at an abbreviation's dot
    from ponder.plugins import first_line

    assert first_line("A reward model (e.g. a PRM). More text.") == "A reward model (e.g. a PRM)"
    assert first_line("One line.") == "One line"
    backends = run_ponder("backends").stdout
    assert "(extra [vllm])" in backends
    prm = run_ponder("verifiers", "prm_http").stdout
    assert "(e.g. Qwen2.5-Math-PRM)" in prm and "[bad, good]" in prm


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("solve", "q", "--answer-with", "tir"), "not tir"),
        (("solve", "q", "-s", "beam"), "strategy 'beam' writes its steps as raw text"),
        (
            ("bench", "gsm8k", "--limit", "1", "-s", "vote", "-s", "mcts", "--store", "x.sqlite"),
            "strategy 'mcts' writes its steps as raw text",
        ),
    ],
)
def test_a_thinking_budget_nothing_would_keep_is_an_error(
    args: tuple[str, ...], named: str, tmp_path: Path
) -> None:
    """A step search continues raw text, and TIR samples call tools: neither goes through the
    thinking loop, so a budget there would be ignored (it was, for step searches)."""
    store = str(tmp_path / "x.sqlite")
    args = tuple(store if a == "x.sqlite" else a for a in args)
    done = run_ponder(*args, "--think-budget", "64", "--backend", "scripted")
    assert done.returncode == 2, done.stderr
    assert "--think-budget 64" in done.stderr and named in done.stderr
    assert not (tmp_path / "x.sqlite").exists()  # refused before anything ran


def test_system_prompt_with_a_thinking_budget_replaces_the_thinking_prompt() -> None:
    from ponder.cli.common import prompting
    from ponder.types import Problem

    asked = prompting(256, "Think in <think></think>, then answer in \\boxed{}.", 64)
    (system, _) = asked.messages(Problem(question="1+1?"))
    assert system.content == "Think in <think></think>, then answer in \\boxed{}."
    assert prompting(256, "Be brief.").messages(Problem(question="1+1?"))[0].content == (
        "Be brief."
    )


def test_solve_takes_backend_options() -> None:
    done = run_ponder(
        "solve",
        "What is 2+3?",
        "-s",
        "greedy",
        "--backend",
        "scripted",
        "--backend-option",
        'replies=["So \\\\boxed{5}."]',
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "5"


@pytest.mark.parametrize("columns", ["0", "-5", "abc", "3"])
def test_a_columns_value_rich_cannot_draw_in_is_ignored(columns: str) -> None:
    # before: COLUMNS=0 made every table and bill print nothing at all, with exit 0
    env = {**os.environ, "COLUMNS": columns}
    r = subprocess.run(
        [sys.executable, "-m", "ponder", "solve", "What is 2+3?", "--backend", "scripted"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "answer:" in r.stdout and "total: 1 call" in r.stdout


def test_paths_that_are_folders_or_missing_are_named_as_such(tmp_path: Path) -> None:
    folder = tmp_path / "set.jsonl"
    folder.mkdir()
    for args, says in (
        (["bench", "--data", str(folder), "--backend", "scripted"], "a folder, not a file"),
        (["report", str(tmp_path)], "a folder, not a store"),
        (["router", "show", str(tmp_path)], "a folder, not a router file"),
        (["serve", "--upstream", "notaurl"], "--upstream: 'notaurl' is not an http(s) URL"),
    ):
        r = run_ponder(*args)
        assert r.returncode in (1, 2) and says in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PONDER_DATA_DIR", "{tmp}/missing", "PONDER_DATA_DIR: {tmp}/missing: no such folder"),
        ("PONDER_CACHE_DIR", "{tmp}/afile", "PONDER_CACHE_DIR={tmp}/afile: a file, not a folder"),
        ("PONDER_SERVE_API_KEYS", " , ", "PONDER_SERVE_API_KEYS=' , ': no key in it"),
    ],
)
def test_environment_settings_that_cannot_work_are_exit_2(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    # before: a missing data folder was skipped without a word, a cache "folder" that is a
    # file was a NotADirectoryError traceback, keys of only commas started a server with none
    (tmp_path / "afile").write_text("")
    command = {
        "PONDER_DATA_DIR": ["data", "list"],
        "PONDER_CACHE_DIR": ["models", "list"],
        "PONDER_SERVE_API_KEYS": ["serve", "--backend", "scripted", "--port", "0"],
    }[name]
    env = {**os.environ, name: value.format(tmp=tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "ponder", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert r.returncode == 2 and says.format(tmp=tmp_path) in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("127.0.0.1 ", "--host '127.0.0.1 ': not a host name or address"),
        ("localhost:80", "--host localhost:80: give the host alone and the port with --port"),
    ],
)
def test_a_host_that_is_no_address_is_said_so(host: str, says: str) -> None:
    # before: refused as "exposes the server beyond this machine", which it did not
    r = run_ponder("serve", "--backend", "scripted", "--host", host, "--port", "0")
    assert r.returncode == 2 and says in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        # a URL that is none was a traceback or "unreachable", as if the network failed
        (("models", "probe", "http://[::1"), "URL 'http://[::1' is not a URL"),
        (("models", "probe", "http://127.0.0.1:99999"), "Port out of range"),
        (("models", "probe", "ftp://x"), "is not an http(s) URL with a host"),
        # paths are appended to a base URL: a query or fragment would swallow them
        (("models", "probe", "http://h:9/v1?x=1"), "a base URL has no ?query or #fragment"),
        (("solve", "q", "--base-url", "http://h:9/v1#f"), "--base-url: 'http://h:9/v1#f': a base"),
        # pull fetches registered models; a path needs no fetching (the hint said to give one)
        (("models", "pull", "/tmp/own.gguf"), "unknown model '/tmp/own.gguf' (choose from: "),
    ],
)
def test_urls_and_models_that_are_none_are_named(args: tuple[str, ...], said: str) -> None:
    done = run_ponder(*args)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "give a path" not in done.stderr


def test_every_loopback_spelling_is_this_machine_and_others_are_not() -> None:
    """Loopback hosts were refused as "exposing the server" unless spelt one of three ways."""
    from ponder.cli.serve import loopback

    for host in ("127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"):
        assert loopback(host), host
    for host in ("0.0.0.0", "10.0.0.1", "example.com", "::", "localhost.example"):
        assert not loopback(host), host


def test_solve_reads_a_question_from_standard_input() -> None:
    """`ponder solve -` (an argument is capped at 128 KiB; a question of 200 KB is not)."""
    long = "What is 2+3? " + "Some context. " * 15_000
    for text, code, said in (
        (b"What is 2+3?", 0, '"question": "What is 2+3?"'),
        (long.encode(), 0, '"question": "What is 2+3? Some context.'),
        (b"\xff\xfe", 2, "standard input: not UTF-8 text (invalid start byte at byte 0)"),
        (b"  \n", 2, "the question is empty"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "ponder", "solve", "-", "--backend", "scripted", "--json"],
            input=text,
            capture_output=True,
            timeout=60,
            check=False,
        )
        shown = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == code and said in shown, shown[-500:]


def test_kinds_takes_a_name_as_the_other_listings_do() -> None:
    assert run_ponder("kinds", "number").stdout.startswith("number: integers and decimals")
    done = run_ponder("kinds", "nope")
    assert done.returncode == 2 and "unknown answer kind 'nope' (choose from: number" in done.stderr
