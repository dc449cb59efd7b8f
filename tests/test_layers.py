"""The package's layers (pyproject's [tool.importlinter]): no module imports a layer above
its own, and no modules import each other in a circle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_layers_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def lint_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the package where `module` has one more import line."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "ponder", copy / "ponder", ignore=shutil.ignore_patterns("data"))
    bad = copy / "ponder" / module
    bad.write_text(bad.read_text() + f"\n{line}  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    return done


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The same check on a copy of the package with one import pointing up fails."""
    done = lint_copy(tmp_path, "types.py", "from ponder.search import vote")
    assert done.returncode != 0
    assert "ponder.types is not allowed to import ponder.search" in done.stdout


def test_the_contract_catches_an_extra_imported_by_the_core(tmp_path: Path) -> None:
    """matplotlib belongs to the report extra: the engine may not import it."""
    done = lint_copy(tmp_path, "runtime/engine.py", "import matplotlib")
    assert done.returncode != 0
    assert "ponder.runtime.engine -> matplotlib" in done.stdout
