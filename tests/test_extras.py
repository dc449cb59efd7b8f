"""The install extras: the core (engine and CLI) imports and runs with none of them, and a part
used without its extra fails with one line naming it (or, for the report's plots, writes the
rest and says so). Each check runs in a fresh process where the extra's modules cannot be
imported, as after `pip install ponder` alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from test_report import filled_store

ROOT = Path(__file__).resolve().parent.parent

SERVE = ("fastapi", "starlette", "uvicorn")
REPORT = ("matplotlib",)

# Makes the named top-level packages unimportable, as if they were not installed.
BLOCK = textwrap.dedent(
    """
    import sys
    BLOCKED = {blocked!r}

    class Absent:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Absent)
    """
)


def without(blocked: tuple[str, ...], code: str, *args: str) -> subprocess.CompletedProcess[str]:
    program = BLOCK.format(blocked=set(blocked)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def cli_without(blocked: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    return without(
        blocked,
        "import sys\nsys.argv = ['ponder', *sys.argv[1:]]\nfrom ponder.cli import main\nmain()\n",
        *args,
    )


def test_the_core_imports_none_of_the_extras() -> None:
    """Every module outside ponder.serve imports with the extras absent, and none of them
    pulls one in."""
    done = without(
        SERVE + REPORT,
        """
        import importlib, pkgutil, sys
        import ponder
        names = [m.name for m in pkgutil.walk_packages(ponder.__path__, "ponder.")]
        for name in names:
            if not name.startswith(("ponder.serve", "ponder.__main__")):
                importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(len(names), loaded)
        """,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count, loaded = done.stdout.split(" ", 1)
    assert int(count) > 50 and loaded.strip() == "[]"


def test_the_cli_runs_without_the_extras() -> None:
    for args in (["--help"], ["solve", "--help"], ["tasks"], ["data", "list"], ["models", "list"]):
        done = cli_without(SERVE + REPORT, *args)
        assert done.returncode == 0, (args, done.stderr[-2000:])


def test_serve_without_its_extra_is_one_line_naming_it() -> None:
    done = cli_without(SERVE, "serve", "--port", "0")
    assert done.returncode == 1
    assert done.stderr == "error: ponder serve needs the serve extra: pip install 'ponder[serve]'\n"


def test_report_without_its_extra_writes_the_rest_and_says_so(tmp_path: Path) -> None:
    store = asyncio.run(filled_store(tmp_path, n=2, limit=3))
    store.close()
    out = tmp_path / "rep"
    done = cli_without(REPORT, "report", str(tmp_path / "s.sqlite"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "no plots: they need the report extra: pip install 'ponder[report]'" in done.stderr
    assert (out / "report.md").is_file() and (out / "points.csv").is_file()
    assert not list(out.glob("*.png"))
    # the library call that asks for plots names the extra instead of failing inside matplotlib
    lib = without(
        REPORT,
        f"""
        from pathlib import Path
        from ponder.bench.report import write_report
        from ponder.bench.store import Store
        from ponder.errors import PonderError
        store = Store(Path({str(tmp_path / "s.sqlite")!r}), create=False)
        try:
            write_report(store, Path({str(out)!r}))
        except PonderError as e:
            print(type(e).__name__, e)
        """,
    )
    assert lib.stdout.startswith("MissingExtra drawing the report's plots"), lib.stderr
    assert "needs the report extra: pip install 'ponder[report]'" in lib.stdout
