"""Sandboxed execution of generated code: `run(code) -> ExecResult`.

Each program runs in a fresh process tree with CPU, memory, process-count, open-file and
file-size limits, a wall timeout, a private working directory, a scrubbed environment, and
(where the OS allows: as root, or with unprivileged user namespaces) no network, its own PID
namespace and throw-away /tmp; see `launcher.py`. Output is capped. A failure is a result
with a reason, never an exception.

`Sandbox.open(code)` starts a program that stays up and exchanges lines with its caller over
its stdin and stdout (a `Session`, under the same limits); `ponder.sandbox.grading` builds the
unit-test grader on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import BaseModel, Field

LAUNCHER = Path(__file__).with_name("launcher.py")
NOBODY = 65534
POOL_SIZE = 512


def _uid_pool() -> collections.deque[int]:
    """User ids for programs, one per running program, so that per-user limits (processes
    above all) are per program: one program's fork bomb cannot starve another's start. High
    ids where the user namespace maps them (as in most containers), else 65000-65511 (below
    nobody, reserved by Debian's policy); shuffled by a random turn so that two ponder
    processes rarely hand out the same id at once."""
    top = 65535
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            start, _, count = (int(x) for x in line.split())
            top = max(top, start + count - 1)
    base = 1_900_000_000 if top >= 1_900_000_000 + POOL_SIZE else 65000
    pool = collections.deque(range(base, base + POOL_SIZE))
    pool.rotate(secrets.randbelow(POOL_SIZE))
    return pool


_UIDS: collections.deque[int] | None = None


def _take_uid() -> int:
    global _UIDS
    if _UIDS is None:
        _UIDS = _uid_pool()
    return _UIDS.popleft() if _UIDS else NOBODY  # all in use: share nobody, as before


def _give_uid(uid: int) -> None:
    if uid != NOBODY and _UIDS is not None:
        _UIDS.append(uid)  # to the back: the longest time before it is handed out again


class Limits(BaseModel):
    timeout_s: float = Field(default=10.0, gt=0)
    memory_mb: int = Field(default=1024, ge=64)
    max_processes: int = Field(default=32, ge=1)
    file_size_mb: int = Field(default=16, ge=1)
    max_open_files: int = Field(default=64, ge=16)
    max_output_bytes: int = Field(default=1 << 20, ge=1024)


class ExecResult(BaseModel):
    """What a program did. `ok` means it exited 0 within every limit; otherwise `reason` says
    which limit or failure stopped it."""

    ok: bool
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    reason: str | None = None
    seconds: float = 0.0
    isolation: str = ""


def _world_enterable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXOTH)


def _reveal_plan(paths: list[Path]) -> list[tuple[str, list[str]]]:
    """For each path the program needs (interpreter, site-packages) below a directory others
    may not enter (e.g. /root), that directory and the paths to show inside it."""
    plan: dict[str, list[str]] = {}
    for path in paths:
        path = path.resolve()
        for ancestor in reversed(path.parents):
            if ancestor != Path("/") and not _world_enterable(ancestor):
                plan.setdefault(str(ancestor), [])
                if str(path) not in plan[str(ancestor)]:
                    plan[str(ancestor)].append(str(path))
                break
    return sorted(plan.items())


# Top-level directories a program sees as they are; every other one (/work, /home, /root,
# /srv, /opt, /mnt, ...) is covered by an empty tmpfs showing only the interpreter's paths and
# the working directory, so a program cannot read data sets, stores or sources on the machine.
SYSTEM_DIRS = frozenset(
    {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "sys"}
    | {"tmp", "var", "run"}
)


def _hide_plan(needs: list[str], root: Path = Path("/")) -> list[tuple[str, list[str]]]:
    """Each top-level directory outside SYSTEM_DIRS, with the needed paths inside it."""
    plan = []
    for entry in sorted(root.iterdir()):
        if entry.name in SYSTEM_DIRS or entry.is_symlink() or not entry.is_dir():
            continue
        plan.append((str(entry), [n for n in needs if n.startswith(f"{entry}/")]))
    return plan


def _interpreter_paths() -> list[Path]:
    import site

    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent]
    paths += [Path(p) for p in site.getsitepackages() if Path(p).exists()]
    return paths


_SIGNAL_REASONS = {
    signal.SIGXCPU: "cpu time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGSEGV: "crashed (segmentation fault; often the stack or memory limit)",
}


class Sandbox:
    """Runs programs, at most `parallel` at once (default: the core count)."""

    def __init__(self, limits: Limits | None = None, parallel: int | None = None) -> None:
        self.limits = limits or Limits()
        self.parallel = parallel or max(1, os.cpu_count() or 1)
        self._gate: asyncio.Semaphore | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None
        paths = _interpreter_paths()
        self._needs = sorted({str(p.resolve()) for p in paths})
        hidden = _hide_plan(self._needs)
        private = _reveal_plan(paths) if os.geteuid() == 0 else []
        tops = [h for h, _ in hidden]
        self._plan = hidden + [
            (h, keep)
            for h, keep in private
            if not any(h == t or h.startswith(t + "/") for t in tops)
        ]
        # The program runs the venv's interpreter so its packages (sympy, numpy) import.
        self._python = sys.executable

    async def run(self, code: str, limits: Limits | None = None) -> ExecResult:
        async with self.slot():
            return await self._run(code, limits or self.limits)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `parallel` places (what `run` does around each program), for work
        that runs programs through `open`."""
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate_loop is not loop:  # a semaphore serves one loop
            self._gate, self._gate_loop = asyncio.Semaphore(self.parallel), loop
        async with self._gate:
            yield

    async def open(self, code: str, limits: Limits | None = None) -> Session:
        """Start `code` as a program that stays up: the caller writes lines to its stdin and
        reads lines from its stdout (at most `max_output_bytes` each); stderr is drained and
        capped. Every limit of `run` applies, `timeout_s` to the program's whole life. The
        caller must `close()` it. Not counted against `parallel` (see `slot`)."""
        lim = limits or self.limits
        if not code.strip():
            return Session(None, lim, "empty program")
        spawned = await self._spawn(code, lim, interactive=True)
        if isinstance(spawned, str):
            return Session(None, lim, spawned)
        return Session(spawned, lim)

    async def _spawn(self, code: str, lim: Limits, *, interactive: bool = False) -> _Spawned | str:
        """Start the launcher on `code`: the running program, or why it could not start."""
        # outer (root-only, 0700) / work (the program's): '..' from work leads nowhere
        outer = Path(tempfile.mkdtemp(prefix="ponder-sbx-"))
        work = outer / "work"
        work.mkdir()
        (work / "main.py").write_text(code, encoding="utf-8")
        uid = _take_uid() if os.geteuid() == 0 else -1
        if uid >= 0:
            os.chown(work, uid, uid)
            os.chown(work / "main.py", uid, uid)
        work.chmod(0o700)
        status_r, status_w = os.pipe()
        cfg = {
            "status_fd": status_w,
            "python": self._python,
            "cpu_s": int(lim.timeout_s) + 1,
            "memory_mb": lim.memory_mb,
            "max_processes": lim.max_processes,
            "file_size_mb": lim.file_size_mb,
            "max_open_files": lim.max_open_files,
            "reveal": self._plan,
            "uid": uid,
            "needs": self._needs,
            "env": {
                "PATH": "/usr/bin:/bin",
                "HOME": str(work),
                "LANG": "C.UTF-8",
                "USER": "sandbox",  # the id has no passwd entry: getpass reads this
                "LOGNAME": "sandbox",
                "PYTHONHASHSEED": "0",
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
            },
        }
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                str(LAUNCHER),
                json.dumps(cfg),
                cwd=work,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                stdin=asyncio.subprocess.PIPE if interactive else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(status_w,),
                start_new_session=True,
                # a session reads whole lines: one may be as long as the output cap
                limit=max(lim.max_output_bytes, 1 << 16) if interactive else 1 << 16,
            )
        except OSError as e:  # e.g. out of processes or file descriptors: a result, not a crash
            os.close(status_r)
            shutil.rmtree(outer, ignore_errors=True)
            _give_uid(uid)
            return f"the sandbox could not start: {e}"
        finally:
            os.close(status_w)
        return _Spawned(proc, status_r, outer, started, uid)

    async def _run(self, code: str, lim: Limits) -> ExecResult:
        if not code.strip():
            return ExecResult(ok=False, reason="empty program")
        spawned = await self._spawn(code, lim)
        if isinstance(spawned, str):
            return ExecResult(ok=False, reason=spawned)
        proc = spawned.proc
        assert proc.stdout is not None and proc.stderr is not None
        over: list[str] = []
        try:
            async with asyncio.timeout(lim.timeout_s):
                out, err = await asyncio.gather(
                    _read_capped(proc.stdout, lim.max_output_bytes, "stdout", over, proc),
                    _read_capped(proc.stderr, lim.max_output_bytes, "stderr", over, proc),
                )
                await proc.wait()
            timed_out = False
        except TimeoutError:
            timed_out = True
            out = err = b""
        finally:
            status = await spawned.end()
        seconds = asyncio.get_running_loop().time() - spawned.started
        return _result(status, out, err, timed_out, over, lim, seconds)


class _Spawned:
    """A started launcher: its process, the pipe its status comes on, its directory."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        status_r: int,
        outer: Path,
        started: float,
        uid: int = -1,
    ) -> None:
        self.proc, self.status_r, self.outer, self.started = proc, status_r, outer, started
        self.uid = uid
        self.ended: dict[str, object] | None = None

    async def end(self, stderr: asyncio.Task[bytes] | None = None) -> dict[str, object]:
        """Kill the process group, drain the pipes (stderr by the task reading it, if one
        does), remove the directory: the status."""
        if self.ended is not None:
            return self.ended
        proc = self.proc
        _kill_group(proc)
        # Drain to EOF (the whole PID namespace is gone, so it comes): asyncio's wait()
        # returns only once the pipes are closed.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                assert proc.stdout is not None and proc.stderr is not None
                err = stderr if stderr is not None else _drain(proc.stderr)
                await asyncio.gather(_drain(proc.stdout), err)
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        self.ended = _read_status(self.status_r)
        shutil.rmtree(self.outer, ignore_errors=True)
        _give_uid(self.uid)  # its PID namespace is gone, and every process in it
        return self.ended


async def _drain(stream: asyncio.StreamReader) -> bytes:
    while await stream.read(65536):
        pass
    return b""


class Session:
    """A sandboxed program the caller talks to line by line (`Sandbox.open`). Nothing here
    raises: a program that is gone, silent too long or writes a line over the cap makes
    `receive` return None and `why` say which; `close()` gives its `ExecResult`."""

    def __init__(self, spawned: _Spawned | None, lim: Limits, failed: str | None = None) -> None:
        self._spawned = spawned
        self._lim = lim
        self.why: str | None = failed
        self._over: list[str] = []
        self._timed_out = False
        self._result: ExecResult | None = None
        self._err: asyncio.Task[bytes] | None = None
        self._watch: asyncio.Task[None] | None = None
        if spawned is not None:
            proc = spawned.proc
            assert proc.stderr is not None
            cap = lim.max_output_bytes
            reader = _read_capped(proc.stderr, cap, "stderr", self._over, proc)
            self._err = asyncio.create_task(reader)
            self._watch = asyncio.create_task(self._watchdog())

    async def _watchdog(self) -> None:
        await asyncio.sleep(self._lim.timeout_s)
        self._timed_out = True
        assert self._spawned is not None
        _kill_group(self._spawned.proc)

    @property
    def alive(self) -> bool:
        """Started and not known to be gone (it may still have died a moment ago)."""
        return self._spawned is not None and self._result is None and self.why is None

    def _gone(self, why: str) -> None:
        if self._over:
            why = f"output limit ({self._lim.max_output_bytes} bytes on {self._over[0]})"
        elif self._timed_out:
            why = f"wall time limit ({self._lim.timeout_s:g} s)"
        self.why = self.why or why
        if self._spawned is not None:
            _kill_group(self._spawned.proc)

    async def send(self, line: bytes, until: float) -> bool:
        """Write one line (a newline is added) by `until` (event loop time); False if the
        program is gone or not reading."""
        if not self.alive:
            return False
        assert self._spawned is not None and self._spawned.proc.stdin is not None
        stdin = self._spawned.proc.stdin
        try:
            stdin.write(line + b"\n")
            async with asyncio.timeout_at(until):
                await stdin.drain()
            return True
        except TimeoutError:
            self._gone("it stopped reading its input")
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            self._gone("it ended")
        return False

    async def receive(self, until: float) -> bytes | None:
        """The next line the program writes (without its newline) by `until` (event loop
        time), or None: then `why` says why (and the program is stopped, unless it was only
        too slow: then `why` is None)."""
        if not self.alive:
            return None
        assert self._spawned is not None and self._spawned.proc.stdout is not None
        stdout = self._spawned.proc.stdout
        try:
            async with asyncio.timeout_at(until):
                line = await stdout.readuntil(b"\n")
            return line[:-1]
        except TimeoutError:
            return None
        except asyncio.IncompleteReadError:
            self._gone("it ended")
        except (asyncio.LimitOverrunError, ValueError):
            self._gone(f"a line over {self._lim.max_output_bytes} bytes")
        return None

    async def close(self) -> ExecResult:
        """Stop the program (if it still runs) and say what it did."""
        if self._result is not None:
            return self._result
        if self._spawned is None:
            self._result = ExecResult(ok=False, reason=self.why)
            return self._result
        if self._watch is not None:
            self._watch.cancel()
        status = await self._spawned.end(self._err)
        err = b""
        if self._err is not None and self._err.done() and not self._err.cancelled():
            err = self._err.result()
        seconds = asyncio.get_running_loop().time() - self._spawned.started
        self._result = _result(status, b"", err, self._timed_out, self._over, self._lim, seconds)
        return self._result


async def _read_capped(
    stream: asyncio.StreamReader,
    cap: int,
    name: str,
    over: list[str],
    proc: asyncio.subprocess.Process,
) -> bytes:
    buf = bytearray()
    while chunk := await stream.read(65536):
        if len(buf) > cap:
            continue  # already over: drain to EOF so the pipe closes and wait() can return
        buf += chunk
        if len(buf) > cap:
            over.append(name)
            _kill_group(proc)  # a flood of output: stop it now, keep the first `cap` bytes
    return bytes(buf[:cap])


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher's group; its PID namespace dies too


def _read_status(fd: int) -> dict[str, object]:
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    finally:
        os.close(fd)
    status: dict[str, object] = {}
    for line in data.decode(errors="replace").replace("}{", "}\n{").splitlines():
        with contextlib.suppress(ValueError):
            status.update(json.loads(line))
    return status


def _result(
    status: dict[str, object],
    out: bytes,
    err: bytes,
    timed_out: bool,
    over: list[str],
    lim: Limits,
    seconds: float,
) -> ExecResult:
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")
    isolation = str(status.get("isolation", ""))
    code = status.get("exit")
    sig = status.get("signal")
    exit_code = int(code) if isinstance(code, int) else None
    reason: str | None = None
    if timed_out:
        reason = f"wall time limit ({lim.timeout_s:g} s)"
    elif over:
        reason = f"output limit ({lim.max_output_bytes} bytes on {over[0]})"
    elif isinstance(sig, int):
        reason = _SIGNAL_REASONS.get(signal.Signals(sig), f"killed by {signal.Signals(sig).name}")
        if sig == signal.SIGKILL:
            reason = "killed (cpu time or memory limit)"
        exit_code = -sig
    elif exit_code is None:
        reason = "the sandbox could not start the program: " + (stderr.strip()[-300:] or "?")
    elif exit_code != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        if "MemoryError" in stderr:
            reason = f"memory limit ({lim.memory_mb} MB)"
        elif "RecursionError" in stderr:
            reason = "recursion limit"
        elif "[Errno 27] File too large" in stderr:  # Python ignores SIGXFSZ
            reason = f"file size limit ({lim.file_size_mb} MB)"
        elif exit_code == 125 and "sandbox:" in stderr:
            reason = last
        else:
            reason = f"exit code {exit_code}" + (f": {last[:200]}" if last else "")
    return ExecResult(
        ok=reason is None,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        reason=reason,
        seconds=seconds,
        isolation=isolation,
    )


async def arun(code: str, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> ExecResult:
    return await Sandbox(Limits(timeout_s=timeout_s, memory_mb=memory_mb)).run(code)


def run(code: str, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> ExecResult:
    """Run a Python program in the sandbox and wait for it (outside any running event loop;
    use `arun` or `Sandbox.run` inside one)."""
    return asyncio.run(arun(code, timeout_s=timeout_s, memory_mb=memory_mb))


__all__ = ["ExecResult", "Limits", "Sandbox", "Session", "arun", "run"]
