"""Unit tests for generated code whose verdict the code cannot reach.

Threat model. The candidate's code is hostile and competent: it may run anything at import
or inside its functions, patch builtins, `sys`, `os` and every module, re-execute its process,
exit with any status at any moment, print or write anything to any file descriptor it holds,
read any file it can see, walk its stack frames and the garbage collector, fork, loop forever,
flood its output, return objects whose `__eq__` says yes to everything, raise anything,
SystemExit included. It wins if a test it does not pass is counted as passed. The tests, the
problem's prelude (HumanEval's prompt) and setup, this module and the parent process are
trusted; so is the sandbox (`launcher.py`): a separate PID, mount, network and IPC namespace,
and the user `nobody`.

How. Three kinds of sandboxed process, all running `worker.py`, each under the sandbox's
limits:
- the candidate's **server**: its code is loaded, then it answers requests: call this function
  with these arguments, get this attribute, and a few more (see `worker.py`). Its answers are
  plain data (built-in values, as JSON, read by a decoder that builds only fresh built-in
  objects), an opaque reference to one of its objects, or the name of the exception raised;
- the **harness**: runs each test in a fresh namespace in which the candidate's names are
  proxies that forward calls (arguments as plain data) and return the decoded answers, so every
  assertion is evaluated in the harness on values the candidate cannot change any more. An
  operation that would show the candidate a value of the test it did not ask for (comparing,
  hashing, `in`, arithmetic on one of its objects) fails the test;
- the **parent** (this module) relays between the two, one line of JSON at a time; it checks
  that every answer is well-formed plain data before passing it on, enforces a time limit per
  test and a budget for the whole grading, and keeps the tally from the harness's messages.
The candidate never holds the tests, the expected values, the tally or a way to either other
process: the tests are not in its process or on its disk, and the harness and the parent are
outside its namespaces. So patching anything, printing anything, exiting early, reading files,
frames or the heap, and custom `__eq__` gain nothing: a crash, an early exit, a timeout, an
answer that is not plain data, or an output flood fails the test it happens in, and a later
test gets a fresh server (unless the code failed to load, which fails every test). What is
printed is ignored: it can neither pass nor fail a test.

Fallback (weaker). A test that passes the candidate something that is not plain data (a
lambda, a function or class of the test) cannot be run that way; it then runs inside the
candidate's own process, one fresh process per test, and counts as passed only if the process
exits 0 after writing a per-test random nonce, and nothing else, on its private channel (no
marker on shared output). The test is compiled before the candidate's code runs, with its
assertions kept, runs on a copy of the builtins taken before, has tracing switched off and its
comparisons made on plain data only. That stops the simple attacks (an early exit, printed
markers, patched builtins or `assert`, deleted files, custom `__eq__`), but not one aimed at it:
code in the same process can read the nonce or the compiled test from its caller's frame. No
HumanEval or MBPP test needs the fallback.

What can differ from running the tests in the candidate's module (as before): the test sees
the real builtins, the problem's own helpers (HumanEval's `poly`) and its own stdlib modules
rather than the candidate's; a function that mutates its argument in place is not seen doing
so; the candidate's objects cannot be compared with `==`. None of these changes the verdict of
a HumanEval or MBPP reference solution.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import re
import secrets
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ponder.sandbox import ExecResult, Limits, Sandbox, Session
from ponder.sandbox.worker import NotPlain, dumps, loads, well_formed

WORKER = Path(__file__).with_name("worker.py").read_text(encoding="utf-8")
GRACE_S = 2.0  # for the harness to report a test the candidate ran out of time in
BUILTINS = frozenset(dir(builtins))
_EXCEPTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


class TestOutcome(BaseModel):
    """One test: passed or not, how it ran ("calls": in the harness, "process": the fallback),
    and why it failed."""

    __test__ = False  # not a pytest class
    passed: bool
    how: Literal["calls", "process"] = "calls"
    reason: str | None = None


class TestReport(BaseModel):
    """Every test's outcome, in order."""

    __test__ = False
    outcomes: list[TestOutcome]
    seconds: float = 0.0
    isolation: str = ""

    @property
    def passed(self) -> int:
        return sum(o.passed for o in self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def all_passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    @property
    def reason(self) -> str | None:
        """Why the first failing test failed."""
        return next((o.reason or "failed" for o in self.outcomes if not o.passed), None)


# -- which names of a test are the candidate's ----------------------------------------------------
def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. old escape sequences in a data set's code
        return ast.parse(source)


def _top_level(source: str) -> set[str]:
    try:
        tree = _parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def free_names(source: str) -> set[str]:
    """Names `source` reads but never binds anywhere (SyntaxError if it does not parse)."""
    tree = _parse(source)
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return loaded - bound


def plan_test(
    source: str, setup: str = "", prelude: str = "", entry_points: Iterable[str] = ()
) -> dict[str, Any]:
    """What the harness binds for one test: `names`, the candidate's (free names that are
    not builtins, stdlib modules or the prelude's, plus the entry points even when they are),
    and `modules`, stdlib modules the test uses without importing them."""
    entries = set(entry_points)
    try:
        free = free_names(f"{setup}\n{source}")
    except SyntaxError:
        free = set()  # the harness reports the syntax error
    given = _top_level(prelude)
    stdlib = sys.stdlib_module_names
    names = sorted(
        n for n in free if n in entries or not (n in BUILTINS or n in given or n in stdlib)
    )
    modules = sorted(n for n in free if n in stdlib and n not in names and n not in given)
    return {"source": source, "names": names, "modules": modules}


# -- the candidate's server ------------------------------------------------------------------------
class _Candidate:
    """The candidate's server: loaded once up front, restarted for a later request after it
    dies, unless its code did not load (then every request fails with that reason)."""

    def __init__(self, box: Sandbox, code: str, lim: Limits, deadline: float) -> None:
        self.box, self.code, self.lim, self.deadline = box, code, lim, deadline
        self.session: Session | None = None
        self.loading: asyncio.Task[str | None] | None = None
        self.broken: str | None = None
        self.isolation = ""

    def start(self) -> None:
        self.loading = asyncio.create_task(self._load(self.deadline))

    async def _load(self, until: float) -> str | None:
        session = self.session = await self.box.open(WORKER, self.lim)
        if await session.send(dumps({"role": "server", "code": self.code}), until):
            line = await session.receive(until)
        else:
            line = None
        if line is None:
            why = session.why or "time limit while loading"
            if session.why is not None:
                result = await session.close()
                self.isolation = self.isolation or result.isolation
                why = _ended(result) or why
            self.broken = f"the candidate's code did not load ({why})"
            return self.broken
        try:
            message = loads(line)
            ok = message.get("loaded") is True
            error = str(message.get("error", "?"))[:300]
        except (NotPlain, AttributeError):
            ok, error = False, "a garbled answer"
        if not ok:
            self.broken = f"the candidate's code did not load: {error}"
        return self.broken

    async def _stop(self) -> str | None:
        """End the current process; why it ended, if it ended by itself."""
        session, self.session = self.session, None
        if self.loading is not None and not self.loading.done():
            self.loading.cancel()
        self.loading = None
        if session is None:
            return None
        result = await session.close()
        self.isolation = self.isolation or result.isolation
        return _ended(result)

    async def ask(self, request: dict[str, Any], until: float, late: str) -> dict[str, Any]:
        """The candidate's answer to `request` by `until`, checked, or {"fail": why} (`late`
        if it did not come in time)."""
        loop = asyncio.get_running_loop()
        if self.broken:
            return {"fail": self.broken}
        if loop.time() >= until:
            return {"fail": late}
        if self.session is None or not self.session.alive:
            await self._stop()
            self.start()
        assert self.loading is not None
        try:
            async with asyncio.timeout_at(until):
                broken = await asyncio.shield(self.loading)
        except TimeoutError:
            return {"fail": f"{late}; its code was still loading"}
        if broken:
            return {"fail": broken}
        session = self.session
        assert session is not None
        line = await session.receive(until) if await session.send(dumps(request), until) else None
        if line is None:
            if session.why is None and loop.time() >= until:
                await self._stop()
                return {"fail": late}
            why = session.why or "it ended"
            ended = await self._stop()
            return {"fail": f"the candidate's process ended ({ended or why})"}
        try:
            return _checked(loads(line))
        except NotPlain as e:
            await self._stop()
            return {"fail": f"the candidate's answer is not plain data ({e})"}


def _ended(result: ExecResult) -> str | None:
    """How a process that ended by itself ended."""
    if result.reason:
        return result.reason
    return None if result.exit_code is None else f"it exited with code {result.exit_code}"


def _checked(message: Any) -> dict[str, Any]:
    """A server's answer, if it is one: plain data (references allowed) or an exception's name
    and message. The harness gets this, re-serialized by us."""
    if type(message) is not dict:
        raise NotPlain("not a message")
    if set(message) == {"value"}:
        well_formed(message["value"])  # the harness decodes it (it may be slow to: a test's time)
        return {"value": message["value"]}
    if set(message) == {"raise", "message"}:
        name, text = message["raise"], message["message"]
        if type(name) is str and _EXCEPTION_NAME.fullmatch(name) and type(text) is str:
            return {"raise": name, "message": text[:300]}
    raise NotPlain("not an answer")


# -- the grading ---------------------------------------------------------------------------------
class _Grading:
    def __init__(
        self,
        box: Sandbox,
        code: str,
        plans: list[dict[str, Any]],
        prelude: str,
        setup: str,
        entries: list[str],
        lim: Limits,
        per_test_s: float,
        budget_s: float,
    ) -> None:
        self.box, self.code, self.plans = box, code, plans
        self.prelude, self.setup, self.entries = prelude, setup, entries
        self.per_test_s = per_test_s
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.deadline = self.started + budget_s
        # each process may live through the whole grading; the deadlines here end it sooner
        self.lim = lim.model_copy(update={"timeout_s": budget_s + GRACE_S})
        self.outcomes: list[TestOutcome | None] = [None] * len(plans)
        self.fallback: list[int] = []
        self.candidate = _Candidate(box, code, self.lim, self.deadline)
        self.per_test_late = f"time limit ({per_test_s:g} s per test)"
        self.budget_late = f"the grading's time budget ({budget_s:g} s) ran out"

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(self) -> TestReport:
        self.candidate.start()
        try:
            todo = list(range(len(self.plans)))
            while todo and self.now() < self.deadline:
                await self._harness(todo)
                todo = [i for i in todo if self.outcomes[i] is None and i not in self.fallback]
            for index in self.fallback:
                if self.outcomes[index] is None and self.now() < self.deadline:
                    self.outcomes[index] = await self._in_process(index)
        finally:
            await self.candidate._stop()
        spent = TestOutcome(passed=False, reason=self.budget_late)
        outcomes = [o or spent for o in self.outcomes]
        return TestReport(
            outcomes=outcomes, seconds=self.now() - self.started, isolation=self.candidate.isolation
        )

    async def _harness(self, todo: list[int]) -> None:
        """Run the tests `todo` in one harness process, until it ends or stalls."""
        job = {
            "role": "harness",
            "prelude": self.prelude,
            "setup": self.setup,
            "tests": self.plans,
            "run": todo,
        }
        session = await self.box.open(WORKER, self.lim)
        current: int | None = None
        test_end, late = self.deadline, self.budget_late
        why: str | None = None
        try:
            sent = await session.send(dumps(job), self.deadline)
            while sent and (line := await session.receive(test_end + GRACE_S)) is not None:
                message = loads(line)
                if "op" in message:
                    reply = await self.candidate.ask(message, test_end, late)
                    sent = await session.send(dumps(reply), test_end + GRACE_S)
                elif "start" in message:
                    current = int(message["start"])
                    test_end = self.now() + self.per_test_s
                    late = self.per_test_late
                    if test_end > self.deadline:
                        test_end, late = self.deadline, self.budget_late
                elif "done" in message:
                    reason = message.get("reason")
                    self.outcomes[int(message["done"])] = TestOutcome(
                        passed=message.get("passed") is True,
                        reason=None if reason is None else str(reason)[:300],
                    )
                    current, test_end, late = None, self.deadline, self.budget_late
                elif "inexpressible" in message:
                    self.fallback.append(int(message["inexpressible"]))
                    current, test_end, late = None, self.deadline, self.budget_late
                elif message.get("end") is True:
                    if not self.fallback:  # the candidate's server is done with: end both at once
                        await asyncio.gather(session.close(), self.candidate._stop())
                    return
        except (NotPlain, KeyError, TypeError, ValueError) as e:  # our own worker: a bug
            why = f"the grader's harness failed ({type(e).__name__}: {e})"
        finally:
            result = await session.close()
        ended = f"the grader's harness ended ({result.reason or session.why})"
        if current is None:
            # it stopped between tests: the next one fails, so that every restart makes progress
            left = [i for i in todo if self.outcomes[i] is None and i not in self.fallback]
            if left and self.now() < self.deadline:
                self.outcomes[left[0]] = TestOutcome(passed=False, reason=why or ended)
        elif self.outcomes[current] is None:
            stalled = session.why is None and why is None
            reason = late if stalled else why or ended
            self.outcomes[current] = TestOutcome(passed=False, reason=reason)

    async def _in_process(self, index: int) -> TestOutcome:
        """The fallback: the test in a fresh process of the candidate's; passed only on exit 0
        with this test's nonce, and nothing else, on the private channel."""
        nonce = secrets.token_hex(16)
        plan = self.plans[index]
        job = {
            "role": "fallback",
            "code": self.code,
            "prelude": self.prelude,
            "setup": self.setup,
            "source": plan["source"],
            "names": plan["names"],
            "modules": plan["modules"],
            "entries": self.entries,
            "nonce": nonce,
        }
        end = min(self.now() + self.per_test_s, self.deadline)
        lim = self.lim.model_copy(update={"timeout_s": max(end - self.now(), 0.5)})
        session = await self.box.open(WORKER, lim)
        lines: list[bytes] = []
        if await session.send(dumps(job), end):
            while len(lines) < 3 and (line := await session.receive(end)) is not None:
                lines.append(line)
        result = await session.close()
        if result.exit_code == 0 and lines == [nonce.encode()]:
            return TestOutcome(passed=True, how="process")
        reason = "test failed" if result.exit_code == 1 else (result.reason or "no verdict")
        if session.why is None and not lines and result.exit_code is None:
            reason = self.per_test_late
        return TestOutcome(passed=False, how="process", reason=reason)


async def run_unit_tests(
    sandbox: Sandbox,
    code: str,
    tests: Sequence[str],
    *,
    prelude: str = "",
    setup: str = "",
    entry_points: Iterable[str] = (),
    limits: Limits | None = None,
    per_test_s: float | None = None,
    budget_s: float | None = None,
) -> TestReport:
    """Run `tests` (Python source, each a test) against `code`, each in the harness with the
    candidate's names as proxies to `code` running in its own process (see the module's
    docstring). `prelude` is trusted code the tests may use (HumanEval's prompt); `setup` runs
    before each test; `entry_points` are the functions under test, the candidate's even when
    named like a builtin (MBPP's `sum`). Each test gets at most `per_test_s`, the whole
    grading `budget_s` (both default to the sandbox's `timeout_s`, the bound of the former
    single-program grader). Counts as one of the sandbox's `parallel` places."""
    lim = limits or sandbox.limits
    per_test = per_test_s or lim.timeout_s
    budget = budget_s or lim.timeout_s
    entries = list(entry_points)
    plans = [plan_test(t, setup, prelude, entries) for t in tests]
    if not plans:
        return TestReport(outcomes=[])
    async with sandbox.slot():
        grading = _Grading(sandbox, code, plans, prelude, setup, entries, lim, per_test, budget)
        return await grading.run()


__all__ = ["TestOutcome", "TestReport", "free_names", "plan_test", "run_unit_tests"]
