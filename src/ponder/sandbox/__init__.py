"""Sandboxed execution of generated code: `run(code) -> ExecResult`.

Each program runs in a fresh process tree with CPU, memory, process-count, open-file and
file-size limits, a wall timeout, a private working directory, a scrubbed environment, and
(where the OS allows: as root, or with unprivileged user namespaces) no network, its own PID
namespace and throw-away /tmp; see `launcher.py`. Output is capped. A failure is a result
with a reason, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

LAUNCHER = Path(__file__).with_name("launcher.py")
NOBODY = 65534


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
        self._plan = _reveal_plan(paths) if os.geteuid() == 0 else []
        # The program runs the venv's interpreter so its packages (sympy, numpy) import.
        self._python = sys.executable

    async def run(self, code: str, limits: Limits | None = None) -> ExecResult:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate_loop is not loop:  # a semaphore serves one loop
            self._gate, self._gate_loop = asyncio.Semaphore(self.parallel), loop
        async with self._gate:
            return await self._run(code, limits or self.limits)

    async def _run(self, code: str, lim: Limits) -> ExecResult:
        if not code.strip():
            return ExecResult(ok=False, reason="empty program")
        # outer (root-only, 0700) / work (the program's): '..' from work leads nowhere
        outer = Path(tempfile.mkdtemp(prefix="ponder-sbx-"))
        work = outer / "work"
        work.mkdir()
        (work / "main.py").write_text(code, encoding="utf-8")
        if os.geteuid() == 0:
            os.chown(work, NOBODY, NOBODY)
            os.chown(work / "main.py", NOBODY, NOBODY)
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
            "needs": self._needs,
            "env": {
                "PATH": "/usr/bin:/bin",
                "HOME": str(work),
                "LANG": "C.UTF-8",
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
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(status_w,),
                start_new_session=True,
            )
        except OSError as e:  # e.g. out of processes or file descriptors: a result, not a crash
            os.close(status_r)
            shutil.rmtree(outer, ignore_errors=True)
            return ExecResult(ok=False, reason=f"the sandbox could not start: {e}")
        finally:
            os.close(status_w)
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
            _kill_group(proc)
            # Drain to EOF (the whole PID namespace is gone, so it comes): asyncio's wait()
            # returns only once the pipes are closed.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.gather(proc.stdout.read(), proc.stderr.read())
                    await proc.wait()
            status = _read_status(status_r)
            shutil.rmtree(outer, ignore_errors=True)
        seconds = loop.time() - started
        return _result(status, out, err, timed_out, over, lim, seconds)


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


__all__ = ["ExecResult", "Limits", "Sandbox", "arun", "run"]
