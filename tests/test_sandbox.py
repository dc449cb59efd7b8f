"""The sandbox against ordinary and hostile programs. Each hostile program must be stopped
within its limits, reported as a failure with a reason, and leave this process and the machine
as they were."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from ponder.sandbox import NOBODY, ExecResult, Limits, Sandbox, _uid_pool, run

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox needs Linux")

FAST = Limits(timeout_s=3, memory_mb=512, max_output_bytes=64 * 1024)


def go(code: str, limits: Limits = FAST) -> ExecResult:
    return asyncio.run(Sandbox(limits).run(code))


def test_a_plain_program_prints_and_exits_zero() -> None:
    r = run("import math\nprint(math.factorial(10))")
    assert r.ok and r.stdout == "3628800\n" and r.exit_code == 0 and r.reason is None


def test_packages_of_the_environment_import() -> None:
    r = go("import sympy\nprint(sympy.Rational(1, 3) + 1)")
    assert r.ok, r.stderr
    assert r.stdout.strip() == "4/3"


def test_an_exception_is_a_failure_with_its_last_line() -> None:
    r = go("raise ValueError('nope')")
    assert not r.ok and r.exit_code == 1
    assert r.reason == "exit code 1: ValueError: nope"


def test_empty_program_is_a_failure_not_a_crash() -> None:
    r = go("   \n")
    assert not r.ok and r.reason == "empty program"


def test_stdin_is_empty() -> None:
    r = go("import sys\nprint(repr(sys.stdin.read()))")
    assert r.ok and r.stdout.strip() == "''"


def test_many_programs_run_in_parallel_up_to_the_limit() -> None:
    async def main() -> list[ExecResult]:
        box = Sandbox(FAST, parallel=2)
        return list(await asyncio.gather(*(box.run(f"print({i} * {i})") for i in range(12))))

    results = asyncio.run(main())
    assert [r.stdout.strip() for r in results] == [str(i * i) for i in range(12)]


# -- hostile programs -----------------------------------------------------------------------------
SECRET = "PONDER_TEST_SECRET"
HOSTILE: dict[str, tuple[str, str]] = {
    # name: (program, expected reason fragment)
    "infinite loop": ("while True:\n    pass", "limit"),
    "sleep forever": ("import time\ntime.sleep(1000)", "wall time limit"),
    "fork bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "limit",
    ),
    "process flood via subprocess": (
        "import subprocess\nps = [subprocess.Popen(['sleep', '100']) for _ in range(500)]",
        "exit code 1",
    ),
    "10 GB allocation": ("x = bytearray(10 * 1024**3)\nprint(len(x))", "memory limit"),
    "slow memory growth": ("xs = []\nwhile True:\n    xs.append(' ' * 10**7)", "memory limit"),
    "huge output": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", "output limit"),
    "huge stderr": ("import sys\nwhile True:\n    sys.stderr.write('y' * 65536)", "output limit"),
    "huge file": (
        "f = open('big', 'wb')\nwhile True:\n    f.write(b'z' * 2**20)",
        "file size limit",
    ),
    "write outside its directory": (
        "open('/work/ponder-escape.txt', 'w').write('x')",
        "exit code 1: PermissionError",
    ),
    "write into the parent directory": ("open('../escape', 'w').write('x')", "PermissionError"),
    "write to root's home": ("open('/root/escape', 'w').write('x')", "exit code 1"),
    "open a network connection": (
        "import socket\nsocket.create_connection(('127.0.0.1', 1), timeout=2)",
        "exit code 1",
    ),
    "resolve a host name": (
        "import socket\nsocket.getaddrinfo('pypi.org', 443)",
        "exit code 1: socket.gaierror",
    ),
    "read the parent's environment secret": (
        f"import os\nprint(os.environ['{SECRET}'])",
        "exit code 1: KeyError",
    ),
    "read the parent's environ via /proc": (
        "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())",
        "exit code 1",
    ),
    "kill its parent": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nraise SystemExit(3)",
        "PermissionError",
    ),
    "kill every process it can see": (
        "import os, signal\nfor p in range(1, 100000):\n    if p != os.getpid():\n"
        "        try:\n            os.kill(p, signal.SIGKILL)\n        except OSError:\n"
        "            pass\n"
        "raise SystemExit(4)",
        "exit code 4",
    ),
    "deep recursion": ("def f(n):\n    return f(n + 1)\nf(0)", "recursion limit"),
    "recursion limit raised": (
        "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)",
        "limit",
    ),
    "sys.exit with a string": ("import sys\nsys.exit('bye')", "exit code 1: bye"),
    "os._exit nonzero": ("import os\nos._exit(7)", "exit code 7"),
    "ignore SIGTERM and spin": (
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass",
        "limit",
    ),
    "daemon child outlives it": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1000)\n"
        "raise SystemExit(5)",
        "exit code 5",
    ),
    "close its own stdout": ("import os\nos.close(1)\nraise SystemExit(6)", "exit code 6"),
}


# Without a PID namespace (no root and no user namespaces) a program could signal this test
# process itself; those two are only run where the sandbox reports that it has one.
NEEDS_PID_NAMESPACE = {"kill its parent", "kill every process it can see"}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_contained(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    code, expected = HOSTILE[name]
    if name in NEEDS_PID_NAMESPACE and go("print(1)").isolation == "rlimits":
        pytest.skip("this machine gives the sandbox no PID namespace")
    monkeypatch.setenv(SECRET, "hunter2")
    before = os.getpid()
    started = time.monotonic()
    r = go(code)
    assert not r.ok, r
    assert r.reason is not None and expected in r.reason, (r.reason, r.stderr[-300:])
    assert "hunter2" not in r.stdout + r.stderr
    assert time.monotonic() - started < FAST.timeout_s + 5  # within its limits
    assert os.getpid() == before
    assert len(r.stdout.encode()) <= FAST.max_output_bytes


def test_hostile_programs_leave_no_files_or_processes(tmp_path: Path) -> None:
    assert not Path("/work/ponder-escape.txt").exists()
    assert not Path("/root/escape").exists()
    assert leftover_processes() == []


def leftover_processes() -> list[str]:
    """Processes of a sandbox user (nobody or an id of the pool) still alive."""
    users = {str(NOBODY), *map(str, _uid_pool())}
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                uid_line = next(
                    line
                    for line in (entry / "status").read_text().splitlines()
                    if line.startswith("Uid:")
                )
            except (OSError, StopIteration):
                continue
            if users & set(uid_line.split()[1:]):
                leftovers.append(entry.name)
    return leftovers


def test_the_isolation_level_is_reported() -> None:
    r = go("print(1)")
    expected = "full" if os.geteuid() == 0 else r.isolation
    assert r.isolation == expected and r.isolation in ("full", "namespaces", "rlimits")


@pytest.mark.skipif(os.geteuid() != 0, reason="the full isolation level needs root")
def test_under_full_isolation_the_program_is_a_user_of_its_own_without_network() -> None:
    r = go(
        "import os, socket\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
        "print(sorted(n for _, n in socket.if_nameindex()))\nprint(sorted(os.listdir('/tmp')))"
    )
    assert r.ok, r.stderr
    ids, nics, tmp = r.stdout.splitlines()
    uid, gid, groups = ids.split(" ", 2)
    assert uid == gid and int(uid) not in (0, os.getuid()) and groups == "[]"
    assert int(uid) in set(_uid_pool()) | {NOBODY}
    assert nics in ("[]", "['lo']")
    # /tmp holds only its own directory and the way to the interpreter, if that lives in /tmp
    shown = {
        Path(p).relative_to("/tmp").parts[0] for p in Sandbox()._needs if p.startswith("/tmp/")
    }
    names = set(eval(tmp))
    own = {n for n in names if n.startswith("ponder-sbx-")}
    assert len(own) == 1 and names - shown == own


def test_the_test_process_can_still_use_the_network_and_files(tmp_path: Path) -> None:
    # the sandbox's namespaces never leak into the caller
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.close()
    (tmp_path / "ok").write_text("fine")
    assert (tmp_path / "ok").read_text() == "fine"


def test_one_sandbox_serves_successive_event_loops() -> None:
    box = Sandbox(FAST, parallel=1)
    for i in range(2):
        r = asyncio.run(box.run(f"print({i})"))
        assert r.ok and r.stdout == f"{i}\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="hiding directories needs private mounts")
def test_the_program_cannot_read_data_sets_or_sources_on_the_machine() -> None:
    """Test files and data sets hold expected values: a program must not read them. Every
    top-level directory but the system ones shows only what the interpreter needs."""
    here = Path(__file__).resolve()
    data = Path(os.environ.get("PONDER_DATA_DIR", "/nonexistent")) / "mbpp" / "mbpp.jsonl"
    r = go(
        "import os, sys\n"
        f"for path in ({str(here)!r}, {str(data)!r}, '/root/.bashrc'):\n"
        "    try:\n        open(path).read(1)\n        print('READ', path)\n"
        "    except OSError:\n        pass\n"
        "print(sorted(os.listdir('/work')) if os.path.isdir('/work') else [])\n"
        "import sympy\nprint(sys.prefix)"
    )
    assert r.ok, r.stderr
    assert "READ" not in r.stdout
    shown, prefix = r.stdout.splitlines()
    # at most the way to the interpreter is left, e.g. ['main'] for /work/main/.venv
    wanted = {
        Path(p).relative_to("/work").parts[0] for p in Sandbox()._needs if p.startswith("/work/")
    }
    assert set(eval(shown)) == wanted
    assert prefix == sys.prefix


def test_one_programs_fork_bomb_does_not_stop_another_from_starting() -> None:
    bomb = HOSTILE["fork bomb"][0]

    async def main() -> list[ExecResult]:
        box = Sandbox(FAST, parallel=4)
        first = asyncio.create_task(box.run(bomb))
        await asyncio.sleep(1)  # the bomb holds every process it may have by now
        others = await asyncio.gather(*(box.run(f"print({i})") for i in range(3)))
        return [await first, *others]

    bomb_result, *others = asyncio.run(main())
    assert not bomb_result.ok
    assert [r.stdout for r in others] == ["0\n", "1\n", "2\n"], [r.reason for r in others]
