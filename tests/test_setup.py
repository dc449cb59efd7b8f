"""The README's set-up on a fresh machine.

A clone of this commit in a temporary folder (so no ../shared/data beside it), with the hub
unreachable (`HF_ENDPOINT` pointing where nothing listens) and no pulled data, runs
`scripts/demo.sh` on two problems: set-up into the clone's own .venv (pip's cache and the model
cache under ~/.cache/ponder are shared with this machine), the bench, the report. And the venv
fallbacks of `scripts/venv.py` on a Python whose `-m venv` fails as Debian's does without
python3-venv.

Marked slow (a few minutes on 2 cores, and they reach the package registry): `.ci/run` runs
them after the test suite; by hand: `.venv/bin/python -m pytest -m slow tests/test_setup.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

UNREACHABLE_HUB = "http://127.0.0.1:9"  # nothing listens: connections are refused at once


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This machine's environment without ponder's, the hub's or a venv's settings; the hub
    unreachable; an empty user data folder."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PONDER_", "HF_", "PYTEST"))
        and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "XDG_DATA_HOME")
    }
    bin_dir = str(Path(sys.executable).parent)  # not this venv's tools: the clone makes its own
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bin_dir)
    env.update(HF_ENDPOINT=UNREACHABLE_HUB, XDG_DATA_HOME=str(tmp_path / "xdg"), **extra)
    return env


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in its own process group; on timeout the whole group is killed."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} took over {timeout:.0f} s:\n{out[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def fresh_clone(tmp_path: Path) -> Path:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    clone = tmp_path / "ponder"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head], check=True)
    return clone


def test_the_readme_set_up_and_demo_on_a_clean_clone(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    assert not any((p / "shared").exists() for p in clone.parents)  # nothing beside it
    env = clean_env(tmp_path, LIMIT="2", N="2")
    started = time.monotonic()
    done = run(["bash", "scripts/demo.sh", "--max-tokens", "64"], clone, env, timeout=1500)
    took = time.monotonic() - started
    print(f"clean clone: set-up and demo took {took:.0f} s")
    assert done.returncode == 0, done.stdout[-5000:]
    out = done.stdout
    assert "gsm8k · qwen2.5-coder-0.5b" in out and "greedy" in out and "vote" in out, out[-3000:]
    report = clone / "runs" / "demo-report"
    assert (report / "report.md").is_file() and list(report.glob("*.png")), out[-3000:]
    assert "report: runs/demo-report/report.md" in out

    venv = clone / ".venv" / "bin"
    # the demo installs the engine, the CLI and the report's plots, not serve or the dev tools
    probe = "import importlib.util as u; print([m for m in {} if u.find_spec(m)])"
    found = run(
        [str(venv / "python"), "-c", probe.format(["matplotlib", "fastapi", "pytest", "mypy"])],
        clone,
        env,
        timeout=60,
    )
    assert found.stdout.strip() == "['matplotlib']", found.stdout
    serve = run([str(venv / "ponder"), "serve"], clone, env, timeout=60)
    assert serve.returncode == 1
    assert (
        serve.stdout == "error: ponder serve needs the serve extra: pip install 'ponder[serve]'\n"
    )
    listed = run([str(venv / "ponder"), "data", "list", "--json"], clone, env, timeout=60)
    where = {s["name"]: s["where"] for s in json.loads(listed.stdout)["sets"]}
    assert where["gsm8k"] == "bundled" and where["aime24"] == "missing"
    pull = run([str(venv / "ponder"), "data", "pull", "math500", "--force"], clone, env, timeout=60)
    assert pull.returncode == 1 and "ConnectError" in pull.stdout  # the hub is unreachable

    # run again: everything is in place, so set-up is quick and the store has every unit
    started = time.monotonic()
    again = run(["bash", "scripts/demo.sh", "--max-tokens", "64"], clone, env, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "installing ponder" not in again.stdout
    print(f"clean clone: the second run took {time.monotonic() - started:.0f} s")


def test_the_wheel_carries_the_bundled_data(tmp_path: Path) -> None:
    done = run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        ROOT,
        clean_env(tmp_path),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    (wheel,) = tmp_path.glob("ponder-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "ponder/data/README.md",
        "ponder/data/gsm8k/test.jsonl",
        "ponder/data/gsm8k/train.jsonl",
        "ponder/data/gsm8k/LICENSE",
        "ponder/data/mbpp/LICENSE.Archon-Apache-2.0",
        "ponder/py.typed",
    ):
        assert name in names, name
    assert wheel.stat().st_size < 4_000_000, wheel.stat().st_size


# -- scripts/venv.py where `python3 -m venv` fails ---------------------------------------------
SHIM = """#!/bin/bash
# {python} as on Debian 12 without python3-venv: `-m venv` makes the interpreter, then fails
# for want of ensurepip (leaving a venv without pip); {no_pip}
if [ "$0" = "{shim}" ] && [ "${{1:-}}" = -m ] && [ "${{2:-}}" = venv ] \\
    && [[ " $* " != *" --without-pip "* ]]; then
  {python} -m venv --without-pip "${{@: -1}}"
  echo "The virtual environment was not created successfully because ensurepip is not" \\
    "available." >&2
  exit 1
fi
if [ "$0" = "{shim}" ] && [ "${{1:-}}" = -m ] && [ "${{2:-}}" = pip ] && [ -n "{no_pip}" ]; then
  echo "{python}: No module named pip" >&2
  exit 1
fi
exec -a "$0" {python} "$@"
"""


def debian_python(tmp_path: Path, *, pip: bool) -> Path:
    """A python3 on PATH whose `-m venv` fails as Debian's does without python3-venv (and,
    with pip=False, that has no pip either). It stays sys.executable (`exec -a`)."""
    shim = tmp_path / "bin" / "python3"
    shim.parent.mkdir()
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    shim.write_text(SHIM.format(python=python, shim=shim, no_pip="" if pip else "no pip either"))
    shim.chmod(0o755)
    return shim


@pytest.mark.parametrize("pip", [True, False], ids=["with-pip", "without-pip"])
def test_venv_falls_back_where_python_has_no_venv_support(tmp_path: Path, pip: bool) -> None:
    shim = debian_python(tmp_path, pip=pip)
    venv = tmp_path / ".venv"
    half = run([str(shim), "-m", "venv", str(venv)], tmp_path, clean_env(tmp_path), timeout=120)
    assert half.returncode == 1 and (venv / "bin" / "python").exists()  # half-made, no pip
    env = clean_env(tmp_path, PONDER_SETUP_APT="0")  # as a user who is not root
    done = run([str(shim), str(ROOT / "scripts" / "venv.py"), str(venv)], tmp_path, env, 600)
    assert done.returncode == 0, done.stdout
    assert "has no working pip (an earlier attempt stopped half-way)" in done.stdout
    way = "virtualenv from the package registry" if pip else "then pip from PyPI"
    assert f"made ({way}" in done.stdout or f"{way})" in done.stdout, done.stdout
    ok = run([str(venv / "bin" / "python"), "-m", "pip", "--version"], tmp_path, env, 60)
    assert ok.returncode == 0, ok.stdout
    # a second run keeps the working venv
    again = run([str(shim), str(ROOT / "scripts" / "venv.py"), str(venv)], tmp_path, env, 60)
    assert again.returncode == 0 and again.stdout == ""
