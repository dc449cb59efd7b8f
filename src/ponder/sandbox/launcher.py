"""Runs as its own process (`python -I -S launcher.py CONFIG`): sets up the sandbox, then runs
the program in it. Kept free of ponder imports so it starts fast and single-threaded.

Layers, from strongest (running as root, the usual container case) down:
- new mount, network, PID, IPC and UTS namespaces: no network interfaces but loopback-less
  `lo`; the program sees only its own processes; /tmp, /var/tmp and /dev/shm are fresh tmpfs
  that vanish with it; every top-level directory but the system ones (/work, /home, /root,
  /srv, /opt, ...) and any private ancestor of the interpreter is covered by an empty tmpfs
  in which only the directories the interpreter needs (e.g. /root/.pyenv/versions/3.11.7, a
  virtualenv) and the working directory are shown again, at the same paths: the program cannot
  read data sets, test files or sources elsewhere on the machine;
- as root, the program runs as an unprivileged user of its own (an id from a pool the parent
  hands out, one per running program; `nobody` if the pool is empty) with no supplementary
  groups, so it cannot signal the parent or another program, read root's files or write
  outside its working directory, and per-user limits (processes) are its own;
- rlimits on CPU seconds, address space, processes, file size and open files; no core dumps;
- the init process of the PID namespace dies with the launcher (PDEATHSIG), and all processes
  of the namespace die with it, so killing the launcher's process group cleans up everything.
Without root, an unprivileged user namespace gives the same namespaces where the kernel allows
it; otherwise only the rlimits and the new session apply (reported as the isolation level).
"""

import ctypes
import json
import os
import resource
import signal
import sys
from typing import Any

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
NOBODY = 65534

libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(
    src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"mount {dst}")


def reveal(hidden: str, keep: list[str], mode: str) -> None:
    """Cover `hidden` with an empty tmpfs, then bind the `keep` paths under it back in at
    their own paths (held open by O_PATH descriptors while covered)."""
    fds = [os.open(path, os.O_PATH | os.O_DIRECTORY) for path in keep]
    mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size=64m")
    for fd, path in zip(fds, keep, strict=True):
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


def setup_mounts(cfg: dict[str, Any]) -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
    # Throw-away temporary directories (the working directory is shown inside /tmp again),
    # and private ancestors of the interpreter (e.g. /root) hidden but for the interpreter.
    shown = [os.getcwd(), *cfg["needs"]]  # the working directory and the interpreter's paths

    def under(top: str) -> list[str]:
        inside = sorted({p for p in shown if p.startswith(top + "/")}, key=len)
        return [p for p in inside if not any(p.startswith(q + "/") for q in inside if q != p)]

    tmps = [path for path in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(path)]
    covers = [(path, under(path), "1777") for path in tmps]
    covers += [(hidden, under(hidden), "0755") for hidden, _ in cfg["reveal"]]
    for hidden, keep, mode in covers:
        reveal(hidden, keep, mode)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace only


def limit(cfg: dict[str, Any]) -> None:
    cpu = int(cfg["cpu_s"])
    mem = int(cfg["memory_mb"]) * 1024 * 1024
    for res, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_NPROC, (cfg["max_processes"],) * 2),
        (resource.RLIMIT_FSIZE, (cfg["file_size_mb"] * 1024 * 1024,) * 2),
        (resource.RLIMIT_NOFILE, (cfg["max_open_files"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, value)


def run_program(cfg: dict[str, Any], status_fd: int, namespaces: bool) -> None:
    """In the new PID namespace (as its init): mounts, then fork the program and wait."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if namespaces:
        try:
            setup_mounts(cfg)
        except OSError as e:
            if os.geteuid() == 0 and not cfg.get("in_user_namespace"):
                raise  # as root every mount must work: never run half-isolated silently
            note = {"isolation": f"namespaces without private mounts ({e.strerror})"}
            os.write(status_fd, (json.dumps(note) + "\n").encode())
    pid = os.fork()
    if pid == 0:
        try:
            os.close(status_fd)  # only the sandbox reports the program's status
            limit(cfg)
            if os.geteuid() == 0:
                uid = int(cfg.get("uid", -1))
                uid = uid if uid >= 0 else NOBODY
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # cleared by setuid: set again
            os.execve(cfg["python"], [cfg["python"], "-I", "-B", "main.py"], cfg["env"])
        except BaseException as e:
            os.write(2, f"sandbox: could not start the program: {e}\n".encode())
            os._exit(125)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        report = {"signal": os.WTERMSIG(status)}
    else:
        report = {"exit": os.WEXITSTATUS(status)}
    os.write(status_fd, json.dumps(report).encode())
    os._exit(0)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    status_fd = int(cfg["status_fd"])
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    namespaces = libc.unshare(flags if root else flags | CLONE_NEWUSER) == 0
    cfg["in_user_namespace"] = namespaces and not root
    if cfg["in_user_namespace"]:
        # our own ids map to themselves: files keep their owner, mounts are allowed
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    level = ("full" if root else "namespaces") if namespaces else "rlimits"
    os.write(status_fd, (json.dumps({"isolation": level}) + "\n").encode())
    pid = os.fork()
    if pid == 0:
        try:
            run_program(cfg, status_fd, namespaces)
        except BaseException as e:
            os.write(2, f"sandbox: setup failed: {e}\n".encode())
            os._exit(125)
    _, status = os.waitpid(pid, 0)
    os._exit(0 if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else 125)


if __name__ == "__main__":
    main()
