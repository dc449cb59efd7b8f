"""Make a virtualenv with a working pip, on machines with or without Python's venv support.

    python3 scripts/venv.py .venv

A folder that is already a virtualenv with a working pip is kept. One without a working pip
(left by an earlier failed attempt: Debian's `python3 -m venv` without python3-venv stops
after creating the interpreter) is removed and made again. Ways tried, in order:

1. `python -m venv`;
2. as root with apt-get, Debian's python3-venv (python3.X-venv) installed, then 1 again
   (PONDER_SETUP_APT=0 skips this);
3. `virtualenv` or `uv` where already on PATH;
4. virtualenv from the package registry, installed with the system's pip into a throw-away
   folder (`pip install --target`: no root needed, nothing on the system changes);
5. `python -m venv --without-pip`, then pip's wheel from PyPI (sha256 from PyPI's JSON API)
   installing itself into the new environment.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

PYPI = "https://pypi.org/pypi/{name}/json"


def log(message: str) -> None:
    print(f"venv: {message}", file=sys.stderr, flush=True)


def run(*cmd: str, env: dict[str, str] | None = None) -> bool:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        log(f"{' '.join(cmd[:4])}… failed: {' / '.join(tail) or f'exit {done.returncode}'}")
    return done.returncode == 0


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def has_pip(venv: Path) -> bool:
    py = python_of(venv)
    if not py.exists():
        return False
    done = subprocess.run(
        [str(py), "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    return done.returncode == 0


def clear(venv: Path) -> None:
    if venv.exists() or venv.is_symlink():
        shutil.rmtree(venv, ignore_errors=True)


# -- the ways ---------------------------------------------------------------------------------
def with_venv(venv: Path) -> bool:
    return run(sys.executable, "-m", "venv", str(venv))


def with_apt(venv: Path) -> bool:
    if os.environ.get("PONDER_SETUP_APT", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    if sys.base_prefix != "/usr":
        log(f"{sys.executable} is not the system's python: python3-venv would not help it")
        return False
    version = f"python3.{sys.version_info.minor}-venv"
    log(f"installing python3-venv ({version}) with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not run("apt-get", "update", "-qq", env=env):
        return False
    if not run("apt-get", "install", "-y", "-qq", "python3-venv", version, env=env):
        return False
    clear(venv)
    return with_venv(venv)


def with_tool_on_path(venv: Path) -> bool:
    if (tool := shutil.which("virtualenv")) is not None:
        clear(venv)
        if run(tool, "-p", sys.executable, str(venv)):
            return True
    if (tool := shutil.which("uv")) is not None:
        clear(venv)
        if run(tool, "venv", "--seed", "--python", sys.executable, str(venv)):
            return True
    return False


def with_virtualenv_from_registry(venv: Path) -> bool:
    if not run(sys.executable, "-m", "pip", "--version"):
        return False
    with tempfile.TemporaryDirectory(prefix="ponder-virtualenv-") as tools:
        log("installing virtualenv from the package registry into a temporary folder")
        if not run(
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--target", tools, "virtualenv",
        ):  # fmt: skip
            return False
        clear(venv)
        env = {**os.environ, "PYTHONPATH": tools}
        return run(sys.executable, "-m", "virtualenv", "-p", sys.executable, str(venv), env=env)


def with_pip_from_pypi(venv: Path) -> bool:
    clear(venv)
    if not run(sys.executable, "-m", "venv", "--without-pip", str(venv)):
        return False
    log("fetching pip's wheel from PyPI")
    try:
        index = PYPI.format(name="pip")
        with urllib.request.urlopen(index, timeout=30) as r:
            release = json.load(r)
        (wheel,) = [u for u in release["urls"] if u["filename"].endswith("-py3-none-any.whl")]
        with urllib.request.urlopen(urllib.parse.urljoin(index, wheel["url"]), timeout=120) as r:
            body = r.read()
    except (OSError, ValueError, KeyError) as e:
        log(f"could not fetch pip from PyPI: {e}")
        return False
    if hashlib.sha256(body).hexdigest() != wheel["digests"]["sha256"]:
        log("pip's wheel does not match PyPI's sha256")
        return False
    with tempfile.TemporaryDirectory(prefix="ponder-pip-") as d:
        path = Path(d) / wheel["filename"]
        path.write_bytes(body)
        # a pip wheel runs from itself: python pip.whl/pip install pip.whl
        return run(str(python_of(venv)), f"{path}/pip", "install", "--quiet", str(path))


WAYS: list[tuple[str, Callable[[Path], bool]]] = [
    ("python -m venv", with_venv),
    ("apt-get install python3-venv, then python -m venv", with_apt),
    ("virtualenv or uv on PATH", with_tool_on_path),
    ("virtualenv from the package registry", with_virtualenv_from_registry),
    ("python -m venv --without-pip, then pip from PyPI", with_pip_from_pypi),
]


def make(venv: Path) -> int:
    if has_pip(venv):
        return 0
    if venv.exists():
        log(f"{venv} has no working pip (an earlier attempt stopped half-way): making it again")
    clear(venv)
    for name, way in WAYS:
        if way(venv) and has_pip(venv):
            log(f"{venv} made ({name})")
            return 0
        clear(venv)
    print(
        f"error: could not make a virtualenv at {venv} with {sys.executable}: python -m venv "
        "needs ensurepip (Debian: apt-get install python3-venv), and neither virtualenv nor uv "
        "nor pip was available (see the lines above)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python3 scripts/venv.py FOLDER", file=sys.stderr)
        sys.exit(2)
    sys.exit(make(Path(sys.argv[1])))
