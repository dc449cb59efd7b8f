"""The plugin core: registries, entry points, and a third-party package used by `ponder solve`,
`ponder bench` and `ponder serve` without any edit to ponder."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from unittest.mock import patch

import httpx
import pytest
from pydantic import BaseModel

from ponder.errors import UsageError
from ponder.plugins import PluginWarning, Registry, parse_options

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ponder-example"


# -- the registry ------------------------------------------------------------------------------
class _Options(BaseModel):
    k: int = 1


def _registry(*eps: EntryPoint) -> Registry[object]:
    reg: Registry[object] = Registry(
        "widget",
        "ponder.widgets",
        (),
        is_part=lambda obj: not isinstance(obj, int),
        a_part="a widget",
    )
    reg.add("first", object(), summary="ponder's own", options=_Options)
    found = list(eps)

    def entry_points(group: str) -> list[EntryPoint]:
        return found if group == "ponder.widgets" else []

    reg._load_plugins = _with(entry_points, reg._load_plugins)  # type: ignore[method-assign]
    return reg


def _with(entry_points: object, load: object) -> object:
    def run() -> None:
        with patch("importlib.metadata.entry_points", entry_points):
            load()  # type: ignore[operator]

    return run


def test_a_plugin_that_fails_to_import_is_a_warning_naming_it_and_the_rest_works() -> None:
    bad = EntryPoint("broken", "no_such_module_anywhere", "ponder.widgets")
    reg = _registry(bad)
    with pytest.warns(PluginWarning, match=r"no_such_module_anywhere.*failed to load"):
        assert list(reg) == ["first"]
    assert reg.get("first").summary == "ponder's own"


def test_a_plugin_that_takes_a_name_is_a_warning_and_the_first_stays(tmp_path: Path) -> None:
    (tmp_path / "takes_first.py").write_text(
        "def register(registry):\n    registry.add('first', 'theirs', summary='an impostor')\n"
        "    registry.add('second', 'theirs', summary='new')\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        reg = _registry(EntryPoint("t", "takes_first:register", "ponder.widgets"))
        with pytest.warns(PluginWarning, match=r"widget 'first' is taken \(by ponder\)"):
            names = list(reg)
    finally:
        sys.path.remove(str(tmp_path))
    assert names == ["first", "second"]
    assert reg.get("first").summary == "ponder's own"
    assert reg.get("second").origin == "takes_first"  # no distribution: named by its module


def _loaded(tmp_path: Path, source: str, value: str = "plug:register") -> list[str]:
    """The parts of a widget registry with one plugin module `plug.py` holding `source`,
    loaded through an entry point to `value`; the warnings it gave are asserted by callers."""
    (tmp_path / "plug.py").write_text(source)
    sys.path.insert(0, str(tmp_path))
    try:
        return list(_registry(EntryPoint("p", value, "ponder.widgets")))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("plug", None)


@pytest.mark.parametrize(
    ("source", "said"),
    [
        # an object of another kind failed later, with a traceback naming no plugin
        (
            "def register(r):\n    r.add('bad', 42, summary='x')",
            "widget 'bad' is int, not a widget",
        ),
        # a name with markup broke `ponder strategies`; one with a space or comma no command
        # can give
        (
            "def register(r):\n    r.add('[/bold]', 'x', summary='x')",
            "name '[/bold]' is not a name",
        ),
        ("def register(r):\n    r.add('a,b', 'x', summary='x')", "name 'a,b' is not a name"),
        ("def register(r):\n    r.add('', 'x', summary='x')", "name '' is not a name"),
    ],
)
def test_a_plugins_part_that_is_no_part_is_a_warning_naming_it(
    tmp_path: Path, source: str, said: str
) -> None:
    with pytest.warns(PluginWarning, match=f"package plug: .*{re.escape(said)}.*; ignored"):
        assert _loaded(tmp_path, source) == ["first"]


def test_a_plugin_that_exits_or_registers_nothing_is_a_warning(tmp_path: Path) -> None:
    # sys.exit at import ended every command with no word
    with pytest.warns(PluginWarning, match=r"plug:register\) failed to load: SystemExit: 3"):
        assert _loaded(tmp_path, "import sys\nsys.exit(3)") == ["first"]
    with pytest.warns(PluginWarning, match=r"'p' \(plug:Widget\) registered no widget"):
        assert _loaded(tmp_path, "class Widget:\n    pass\n", "plug:Widget") == ["first"]


def test_ponders_own_part_of_the_wrong_kind_is_an_error() -> None:
    reg = _registry()
    with pytest.raises(TypeError, match="widget 'two' is int, not a widget"):
        reg.add("two", 2, summary="x")


def test_unknown_names_list_every_choice() -> None:
    reg = _registry()
    with pytest.raises(UsageError, match=r"unknown widget 'nope' \(choose from: first\)"):
        reg.get("nope")


def test_option_pairs_read_json_values_and_name_bad_ones() -> None:
    assert parse_options(["n=3", "t=0.5", 'v={"name": "x"}', "s=hello", "b=true"]) == {
        "n": 3,
        "t": 0.5,
        "v": {"name": "x"},
        "s": "hello",
        "b": True,
    }
    with pytest.raises(UsageError, match="-o 'n3': expected KEY=VALUE"):
        parse_options(["n3"])


def test_every_builtin_part_is_registered_with_a_summary_and_options() -> None:
    from ponder.answers import ANSWER_KINDS
    from ponder.lm import BACKENDS
    from ponder.runtime.strategy import STRATEGIES
    from ponder.runtime.verifiers import VERIFIERS
    from ponder.tasks.registry import TASKS

    for registry in (STRATEGIES, VERIFIERS, BACKENDS, TASKS, ANSWER_KINDS):
        for name, part in registry.parts().items():
            assert part.summary, (registry.kind, name)
    for registry in (STRATEGIES, VERIFIERS, BACKENDS):
        for name, part in registry.parts().items():
            # a backend may have no settings of its own (its config refuses any)
            assert part.options is not None or registry is BACKENDS, name
            for key, _, description in part.option_help():
                assert description, f"{registry.kind} {name}: option {key} has no description"


# -- a third-party package in its own virtualenv ---------------------------------------------
@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv that sees ponder (this checkout and its dependencies) and has the
    example package installed with pip, plus a broken plugin package."""
    venv = tmp_path_factory.mktemp("plugin-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    host = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "ponder-host.pth").write_text("\n".join([str(ROOT / "src"), *host]) + "\n")
    broken = tmp_path_factory.mktemp("broken")
    (broken / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "ponder-broken"\nversion = "0.0.1"\n'
        '[project.entry-points."ponder.strategies"]\nbroken = "ponder_broken.missing"\n'
        'taken = "ponder_broken.taken"\n'
    )
    (broken / "ponder_broken").mkdir()
    (broken / "ponder_broken" / "__init__.py").write_text("")
    (broken / "ponder_broken" / "taken.py").write_text(
        "from ponder.runtime.strategy import strategy\nfrom ponder.search.vote import Vote\n\n"
        "@strategy\nclass Mine(Vote):\n    '''An impostor.'''\n    name = 'vote'\n"
    )
    for package in (EXAMPLE, broken):
        subprocess.run(
            # (ponder and its dependencies come from the host through the .pth above; the
            # build backend comes from the package index, as for any `pip install`)
            [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(package)],
            check=True,
            timeout=600,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
    yield venv


def _ponder(venv: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "ponder", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_the_plugin_is_listed_with_its_options_and_broken_plugins_are_warnings(
    plugin_env: Path,
) -> None:
    done = _ponder(plugin_env, "strategies")
    assert done.returncode == 0, done.stderr
    assert "shortest_vote [from ponder-example]: n samples, then a majority vote" in done.stdout
    assert "vote: Self-consistency" in done.stdout  # ponder's vote kept
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert any("package ponder-broken" in w and "failed to load" in w for w in warnings)
    assert any("strategy 'vote' is taken (by ponder)" in w for w in warnings)
    one = _ponder(plugin_env, "strategies", "shortest_vote")
    assert "-o keep=…  (float, default 0.5) share of shortest kept" in one.stdout
    assert "numeric [from ponder-example]" in _ponder(plugin_env, "verifiers").stdout
    assert "arithmetic [from ponder-example]" in _ponder(plugin_env, "backends").stdout
    bad = _ponder(plugin_env, "solve", "q", "-s", "shortest_vote", "-o", "keepp=1")
    assert bad.returncode == 2
    assert "valid keys: answer_with, n, temperature, keep" in bad.stderr


def test_solve_and_bench_use_the_plugins_parts(plugin_env: Path, tmp_path: Path) -> None:
    done = _ponder(
        plugin_env,
        "solve",
        "What is 6 * 7?",
        "-s",
        "shortest_vote",
        "-n",
        "3",
        "--backend",
        "arithmetic",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == "42" and result["strategy"] == "shortest_vote"
    assert result["model"] == "arithmetic" and len(result["candidates"]) == 3
    scored = _ponder(
        plugin_env,
        "solve",
        "What is 6 * 7?",
        "-s",
        "best_of_n",
        "-n",
        "2",
        "--verifier",
        "numeric",
        "--backend",
        "arithmetic",
        "--json",
    )
    assert scored.returncode == 0, scored.stderr
    assert [c["score"] for c in json.loads(scored.stdout)["candidates"]] == [1.0, 1.0]
    data = tmp_path / "sums.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": f"What is {a} + {a}?", "answer": 2 * a}) + "\n"
            for a in range(1, 5)
        )
    )
    bench = _ponder(
        plugin_env,
        "bench",
        "--data",
        str(data),
        "--answer-type",
        "number",
        "-s",
        "shortest_vote",
        "-s",
        "best_of_n",
        "--verifier",
        "numeric",
        "-n",
        "2",
        "--backend",
        "arithmetic",
        "--store",
        str(tmp_path / "s.sqlite"),
        cwd=tmp_path,
    )
    assert bench.returncode == 0, bench.stderr
    assert "shortest_vote" in bench.stdout and "100.0%" in bench.stdout


def test_serve_offers_the_plugins_strategy(plugin_env: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            str(plugin_env / "bin" / "python"),
            "-m",
            "ponder",
            "serve",
            "--backend",
            "arithmetic",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        models = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
        assert "shortest_vote/arithmetic" in models
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={
                "model": "shortest_vote-3/arithmetic",
                "messages": [{"role": "user", "content": "What is 12 * 3?"}],
            },
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert "36" in reply.json()["choices"][0]["message"]["content"]
        assert reply.json()["usage"]["ponder"]["strategy"] == "shortest_vote"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_option_key_given_twice_is_an_error_naming_both_pairs() -> None:
    from ponder.plugins import parse_options

    with pytest.raises(UsageError, match=r"-o n given twice \('n=3', then ' n=4'\)"):
        parse_options(["n=3", " n=4"])  # the key as written, spaces around it ignored
    with pytest.raises(UsageError, match=r"--backend-option a given twice"):
        parse_options(["a=1", "a=1"], "--backend-option")
    assert parse_options(["n=3", "m=x"]) == {"n": 3, "m": "x"}


def test_a_flag_agreeing_with_its_option_pair_is_accepted_and_one_disagreeing_is_not() -> None:
    from ponder.cli.common import strategy_options

    assert strategy_options(["temperature=1"], temperature=1.0) == {"temperature": 1.0}
    assert strategy_options(["answer_with=tir"], answer_with="tir") == {"answer_with": "tir"}
    with pytest.raises(UsageError, match="--answer-with tir and -o answer_with=program both set"):
        strategy_options(["answer_with=program"], answer_with="tir")


def test_every_strategys_stored_config_makes_it_again() -> None:
    """A bench re-makes each unit's strategy from its stored config (every field set): a
    check that reads "set" as "given" must not refuse its own defaults."""
    from ponder.runtime.strategy import STRATEGIES, make_strategy

    for name in STRATEGIES:
        made = make_strategy(name)
        assert make_strategy(name, **made.config()) == made, name
