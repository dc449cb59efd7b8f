"""The program (`main.py`) of the sandboxed processes that grade code, in one of three roles
named by the first line on its stdin; `ponder.sandbox.grading` drives them and imports the
plain-data codec below from here. Standard library only, like `launcher.py`.

Every role first moves its conversation with the parent off file descriptors 0 and 1: its
stdin becomes /dev/null and its stdout goes to stderr, so nothing the code under test prints
is read as a message. Messages are single lines of JSON.

- "server" runs the candidate's code, then serves requests from the harness (relayed by the
  parent): call a function; get or set an attribute, an item, the length, the items, the truth
  or the str() of one of its objects; isinstance/issubclass against one of its classes. Each
  reply is a value as plain data (below), a non-plain object as an opaque reference
  (`{"$": "ref"}`), or the name and message of the exception raised. This process is the
  candidate's: everything in it, this code included, may be replaced by the candidate, so the
  parent trusts nothing it says beyond "here is some plain data".
- "harness" runs the tests. The names of the candidate's functions and classes are bound to
  `Remote` proxies: calling one sends the arguments as plain data and returns the reply decoded
  into fresh built-in objects, so every assertion is evaluated here, on values the candidate
  can no longer influence. Operations that would hand a value of the test to the candidate's
  code without the test asking (`==`, `<`, `in`, `hash`, arithmetic on its objects) fail the
  test instead. A test that passes the candidate something that is neither plain data nor
  one of the candidate's own objects (a lambda, a function or class of the test's) is reported
  as needing the fallback.
- "fallback" runs one such test inside the candidate's process (see `ponder.sandbox.grading`
  for what that can and cannot promise): the test is compiled before the candidate's code runs
  (assertions kept), runs with a copy of the builtins taken before, with its comparisons made
  on plain data only, and the parent counts it passed only if the process then writes the
  nonce it was given, and nothing else, on its private channel and exits 0.

Plain data: None, bool, int, float (nan and infinities included), complex, str, bytes, the
built-in classes themselves (`int`, `str`, ...), and lists, tuples, dicts, sets, frozensets and
ranges of plain data, exactly those built-in types (no subclasses), at most `MAX_DEPTH` deep.
The server also turns what an honest solution might return into the plain data a comparison
would see (an int subclass to its int value, a Counter to a dict, a namedtuple to a tuple, a
dict view to one rebuilt here, an iterator or generator to an `iter()` over its items).
"""

import ast
import builtins
import collections.abc
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import IO, Any

MAX_DEPTH = 100
MAX_ITEMS = 1_000_000  # items read from an iterator the candidate returns
TAG = "$"
_FLOATS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
# built-in classes travel by name (MBPP passes `int` to a function): decoding gives our own
_TYPES: dict[str, type] = {
    t.__name__: t
    for t in (bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset, object)
}
_TYPES["NoneType"] = type(None)
_KEYS: Any = type({}.keys())
_VALUES: Any = type({}.values())
_ITEMS: Any = type({}.items())


class NotPlain(TypeError):
    """A value that is not plain data."""


# -- the codec ------------------------------------------------------------------------------------
def encode(
    value: Any,
    refer: Callable[[Any], int] | None = None,
    *,
    lenient: bool = False,
    depth: int = 0,
) -> Any:
    """`value` as JSON-ready data. A value that is not plain data becomes a reference when
    `refer` is given (`refer(value)` is its number), else NotPlain. `lenient` (the server's
    side) first turns subclasses, views and iterators into the plain values they stand for."""
    if depth > MAX_DEPTH:
        raise NotPlain("nested too deeply")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        if value.bit_length() > 8000:  # past what JSON numbers carry in Python
            return {TAG: "int", "v": hex(value)}
        return value
    if t is float:
        if value != value or value in (float("inf"), float("-inf")):
            return {TAG: "float", "v": repr(value)}
        return value

    def sub(x: Any) -> Any:
        return encode(x, refer, lenient=lenient, depth=depth + 1)

    if t is list:
        return [sub(x) for x in value]
    if t is tuple:
        return {TAG: "tuple", "v": [sub(x) for x in value]}
    if t is dict:
        return {TAG: "dict", "v": [[sub(k), sub(v)] for k, v in value.items()]}
    if t is set or t is frozenset:
        return {TAG: t.__name__, "v": [sub(x) for x in value]}
    if t is complex:
        return {TAG: "complex", "v": [sub(value.real), sub(value.imag)]}
    if t is bytes:
        return {TAG: "bytes", "v": value.hex()}
    if t is range:
        return {TAG: "range", "v": [value.start, value.stop, value.step]}
    name = getattr(value, "__name__", "") if t is type else ""
    if name and _TYPES.get(name) is value:
        return {TAG: "type", "v": name}
    if lenient:
        plain = _lenient(value)
        if isinstance(plain, _View):
            return {TAG: plain.kind, "v": [sub(x) for x in plain.items]}
        if plain is not _NONE:
            return sub(plain)
    if refer is not None:
        return {TAG: "ref", "v": refer(value)}
    raise NotPlain(f"a {t.__name__} is not plain data")


_NONE = object()


def _lenient(value: Any) -> Any:
    """The plain value an honest return value stands for, or _NONE. Base-type methods read the
    stored value, so an overridden method of a subclass is never asked."""
    conversions: tuple[tuple[type, Callable[[Any], Any]], ...] = (
        (int, int.__int__),
        (float, float.__float__),
        (str, str.__str__),
        (bytes, lambda v: bytes(memoryview(v))),
        (list, lambda v: list(list.__iter__(v))),
        (tuple, lambda v: tuple(tuple.__iter__(v))),
        (dict, lambda v: dict(dict.items(v))),
        (set, lambda v: set(set.__iter__(v))),
        (frozenset, lambda v: frozenset(frozenset.__iter__(v))),
    )
    for base, convert in conversions:
        if isinstance(value, base):
            return convert(value)
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, _KEYS | _ITEMS):
        return _View(type(value).__name__, list(value))
    if isinstance(value, _VALUES):
        return _View("dict_values", list(value))
    if isinstance(value, collections.abc.Iterator):
        items = []
        for item in value:
            items.append(item)
            if len(items) > MAX_ITEMS:
                raise NotPlain("an iterator with too many items")
        return _View("iterator", items)
    tolist = getattr(type(value), "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist(value)
    return _NONE


class _View:
    """A dict view or an iterator, read into a list (encodes as its own tag)."""

    def __init__(self, kind: str, items: list[Any]) -> None:
        self.kind, self.items = kind, items


def decode(data: Any, deref: Callable[[int], Any] | None = None, depth: int = 0) -> Any:
    """Plain data from what `encode` wrote, built from fresh built-in objects only; a reference
    becomes `deref(number)` (NotPlain without `deref`). Anything malformed is NotPlain."""
    if depth > MAX_DEPTH:
        raise NotPlain("nested too deeply")
    t = type(data)
    if data is None or t is bool or t is int or t is float or t is str:
        return data

    def sub(x: Any) -> Any:
        return decode(x, deref, depth + 1)

    if t is list:
        return [sub(x) for x in data]
    if t is not dict or set(data) != {TAG, "v"} or type(data[TAG]) is not str:
        raise NotPlain("malformed data")
    tag, v = data[TAG], data["v"]
    try:
        if tag == "int" and type(v) is str and v.startswith(("0x", "-0x")):
            return int(v, 16)
        if tag == "float" and type(v) is str and v in _FLOATS:
            return _FLOATS[v]
        if tag == "ref" and type(v) is int and deref is not None:
            return deref(v)
        if tag == "bytes" and type(v) is str:
            return bytes.fromhex(v)
        if tag == "type" and type(v) is str and v in _TYPES:
            return _TYPES[v]
        if type(v) is not list:
            raise NotPlain("malformed data")
        if tag == "tuple":
            return tuple(sub(x) for x in v)
        if tag == "dict":
            pairs = [(sub(k), sub(x)) for k, x in (_pair(p) for p in v)]
            return dict(pairs)
        if tag == "set":
            return {sub(x) for x in v}
        if tag == "frozenset":
            return frozenset(sub(x) for x in v)
        if tag == "complex" and len(v) == 2:
            re, im = sub(v[0]), sub(v[1])
            if type(re) is float and type(im) is float:
                return complex(re, im)
        if tag == "range" and len(v) == 3 and all(type(x) is int for x in v):
            return range(v[0], v[1], v[2])
        if tag == "iterator":
            return iter([sub(x) for x in v])
        if tag == "dict_keys":
            return {sub(x): None for x in v}.keys()
        if tag == "dict_items":
            return dict(_pair(sub(x)) for x in v).items()
        if tag == "dict_values":
            return dict(enumerate(sub(x) for x in v)).values()
    except (TypeError, ValueError) as e:  # unhashable keys, a bad range step, bad hex
        raise NotPlain(f"malformed data ({e})") from None
    raise NotPlain(f"malformed data (tag {tag!r:.40})")


_LIST_TAGS = frozenset(
    {"tuple", "set", "frozenset", "iterator", "dict_keys", "dict_values", "dict_items"}
)


def well_formed(data: Any, depth: int = 0) -> None:
    """NotPlain unless `data` is what `encode` writes (references allowed). Builds nothing, so
    nothing is hashed: cheap on any input, for the parent, which must not stall on a reply."""
    t = type(data)
    if data is None or t is bool or t is int or t is float or t is str:
        return
    if depth > MAX_DEPTH:
        raise NotPlain("nested too deeply")
    if t is list:
        for x in data:
            well_formed(x, depth + 1)
        return
    if t is not dict or len(data) != 2 or TAG not in data or "v" not in data:
        raise NotPlain("malformed data")
    tag, v = data[TAG], data["v"]
    if tag == "int" and type(v) is str and len(v) > 2 and v.lstrip("-")[:2] == "0x":
        return
    if tag == "float" and type(v) is str and v in _FLOATS:
        return
    if tag == "ref" and type(v) is int and v >= 0:
        return
    if tag == "bytes" and type(v) is str and len(v) % 2 == 0:
        return
    if tag == "type" and type(v) is str and v in _TYPES:
        return
    if type(v) is list:
        if tag in _LIST_TAGS:
            for x in v:
                well_formed(x, depth + 1)
            return
        if tag == "dict":
            for pair in v:
                if type(pair) is not list or len(pair) != 2:
                    raise NotPlain("malformed data")
                well_formed(pair, depth + 1)
            return
        if tag == "complex" and len(v) == 2:
            for x in v:
                if type(x) is not float:
                    well_formed(x, depth + 1)
                    if type(x) is not dict or x.get(TAG) != "float":
                        raise NotPlain("malformed data")
            return
        if tag == "range" and len(v) == 3 and all(type(x) is int for x in v) and v[2] != 0:
            return
    raise NotPlain(f"malformed data (tag {str(tag)[:40]!r})")


def _pair(p: Any) -> tuple[Any, Any]:
    if type(p) not in (list, tuple) or len(p) != 2:
        raise NotPlain("malformed data")
    return p[0], p[1]


def _reject(constant: str) -> Any:
    raise NotPlain(f"non-standard JSON constant {constant}")


def loads(line: bytes | str) -> Any:
    """Parse one message (standard JSON only)."""
    try:
        return json.loads(line, parse_constant=_reject)
    except (ValueError, RecursionError) as e:
        raise NotPlain(f"not a message ({type(e).__name__})") from None


def dumps(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def is_plain(value: Any, depth: int = 0) -> bool:
    """Whether `value` is plain data (exact built-in types all the way down)."""
    try:
        encode(value, depth=depth)
    except (NotPlain, RecursionError):
        return False
    return True


# -- the channel ----------------------------------------------------------------------------------
class Channel:
    """Messages to and from the parent on private copies of fds 0 and 1; the program's own
    stdin then reads /dev/null and its stdout writes to stderr."""

    def __init__(self) -> None:
        self._in: IO[bytes] = os.fdopen(os.dup(0), "rb")
        self._out_fd = os.dup(1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        self._write = os.write  # kept, so replacing os.write later changes nothing here

    def send(self, message: Any) -> None:
        data = dumps(message) + b"\n"
        while data:
            data = data[self._write(self._out_fd, data) :]

    def receive(self) -> Any:
        line = self._in.readline()
        if not line:
            raise EOFError
        return loads(line)


# -- role: server ---------------------------------------------------------------------------------
def serve(channel: Channel, first: dict[str, Any]) -> None:
    """Run the candidate's code, then answer requests until stdin closes."""
    space: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(str(first["code"]), "<candidate>", "exec"), space)
    except BaseException as e:  # SystemExit included: the code did not load
        channel.send({"loaded": False, "error": _describe(e)})
        return
    channel.send({"loaded": True})
    objects: list[Any] = []

    def refer(value: Any) -> int:
        objects.append(value)
        return len(objects) - 1

    def deref(number: int) -> Any:
        if not 0 <= number < len(objects):
            raise NotPlain("an unknown reference")
        return objects[number]

    def target(spec: Any) -> Any:
        if isinstance(spec, dict) and spec.get(TAG) == "global":
            name = str(spec["v"])
            if name not in space:
                raise NameError(f"name {name!r} is not defined")
            return space[name]
        return decode(spec, deref)

    while True:
        try:
            request = channel.receive()
        except EOFError:
            return
        try:
            obj = target(request["target"])
            op = request["op"]
            if op == "call":
                args = decode(request["args"], deref)
                kwargs = decode(request["kwargs"], deref)
                result = obj(*args, **kwargs)
            elif op == "getattr":
                result = getattr(obj, str(request["name"]))
            elif op == "setattr":
                setattr(obj, str(request["name"]), decode(request["value"], deref))
                result = None
            elif op == "getitem":
                result = obj[decode(request["key"], deref)]
            elif op == "len":
                result = len(obj)
            elif op == "iter":
                result = list(obj)
            elif op == "bool":
                result = bool(obj)
            elif op == "str":
                result = str(obj)
            elif op == "isinstance":
                result = isinstance(decode(request["value"], deref), obj)
            elif op == "issubclass":
                result = issubclass(decode(request["value"], deref), obj)
            else:
                raise ValueError(f"unknown request {op!r:.40}")
            reply = {"value": encode(result, refer, lenient=True)}
        except BaseException as e:  # whatever it raised, SystemExit too, is its answer
            reply = {"raise": type(e).__name__, "message": _message(e)}
        channel.send(reply)


def _message(e: BaseException) -> str:
    try:
        return str(e)[:300]
    except BaseException:
        return "?"


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {_message(e)}"[:300]


# -- role: harness --------------------------------------------------------------------------------
class CandidateFailed(BaseException):
    """The candidate's side could not answer (crashed, too slow, not plain data), or one of its
    objects was used as a value. A BaseException so that the test's own `except Exception`
    cannot swallow it; the harness also remembers it, for a bare `except:`."""


class Inexpressible(BaseException):
    """The test passes the candidate something that is not plain data: run it in the fallback."""


class CandidateError(Exception):
    """An exception the candidate raised whose type is not a built-in one the test could mean."""


# Built-in exceptions a test may expect from a call, as themselves; StopIteration and the like
# would steer the test's own loops and generators, so they come as CandidateError.
_NOT_MAPPED = {"StopIteration", "StopAsyncIteration"}


def _raised(name: str, message: str) -> BaseException:
    cls = builtins.__dict__.get(name)
    if (
        name not in _NOT_MAPPED
        and isinstance(cls, type)
        and issubclass(cls, Exception)
        and cls.__module__ == "builtins"
    ):
        try:
            return cls(message)
        except Exception:  # e.g. UnicodeDecodeError wants five arguments
            pass
    return CandidateError(f"{name}: {message}")


class Link:
    """The harness's side of the conversation with the candidate (through the parent)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.failed: str | None = None
        self.inexpressible: str | None = None

    def fail(self, reason: str) -> CandidateFailed:
        self.failed = self.failed or reason
        return CandidateFailed(reason)

    def arg(self, value: Any) -> Any:
        try:
            return encode(value, _refer_remote)
        except (NotPlain, RecursionError) as e:
            self.inexpressible = self.inexpressible or f"passes the candidate {e}"
            raise Inexpressible(str(e)) from None

    def request(self, message: dict[str, Any]) -> Any:
        self.channel.send(message)
        reply = self.channel.receive()
        if "fail" in reply:
            raise self.fail(str(reply["fail"]))
        if "raise" in reply:
            raise _raised(str(reply["raise"]), str(reply.get("message", "")))
        try:
            return decode(reply["value"], lambda n: Remote(self, {TAG: "ref", "v": n}))
        except (NotPlain, KeyError, RecursionError) as e:
            raise self.fail(f"the candidate's answer is not plain data ({e})") from None


def _refer_remote(value: Any) -> int:
    if type(value) is Remote:
        spec = object.__getattribute__(value, "_spec")
        if spec[TAG] == "ref":
            return int(spec["v"])
    raise NotPlain(f"a {type(value).__name__} is not plain data")


class Remote:
    """One of the candidate's functions, classes or objects, seen from the harness: calls,
    attributes, items, length, items and truth are asked of the candidate (its answer is plain
    data or another Remote); comparisons, hashing, `in` and arithmetic fail the test."""

    __slots__ = ("_link", "_spec")

    def __init__(self, link: Link, spec: dict[str, Any]) -> None:
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_spec", spec)

    def _ask(self, op: str, **fields: Any) -> Any:
        link: Link = object.__getattribute__(self, "_link")
        spec = object.__getattribute__(self, "_spec")
        if spec[TAG] == "global":
            target: Any = spec
        else:
            target = {TAG: "ref", "v": spec["v"]}
        return link.request({"op": op, "target": target, **fields})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        link: Link = object.__getattribute__(self, "_link")
        return self._ask("call", args=link.arg(list(args)), kwargs=link.arg(kwargs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy, pickle and inspect probe these: not asked
        return self._ask("getattr", name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        link: Link = object.__getattribute__(self, "_link")
        self._ask("setattr", name=name, value=link.arg(value))

    def __getitem__(self, key: Any) -> Any:
        link: Link = object.__getattribute__(self, "_link")
        return self._ask("getitem", key=link.arg(key))

    def __len__(self) -> int:
        n = self._ask("len")
        if type(n) is not int or n < 0:
            raise object.__getattribute__(self, "_link").fail("len() is not a count")
        return n

    def __iter__(self) -> Any:
        items = self._ask("iter")
        if type(items) is not list:
            raise object.__getattribute__(self, "_link").fail("iter() is not a list")
        return iter(items)

    def __bool__(self) -> bool:
        value = self._ask("bool")
        if type(value) is not bool:
            raise object.__getattribute__(self, "_link").fail("bool() is not a bool")
        return value

    def __str__(self) -> str:
        value = self._ask("str")
        if type(value) is not str:
            raise object.__getattribute__(self, "_link").fail("str() is not a str")
        return value

    def __instancecheck__(self, obj: Any) -> bool:
        link: Link = object.__getattribute__(self, "_link")
        return self._ask("isinstance", value=link.arg(obj)) is True

    def __subclasscheck__(self, cls: Any) -> bool:
        link: Link = object.__getattribute__(self, "_link")
        return self._ask("issubclass", value=link.arg(cls)) is True

    def __repr__(self) -> str:
        spec = object.__getattribute__(self, "_spec")
        return f"<candidate {spec['v'] if spec[TAG] == 'global' else 'object'}>"

    def _used(self, *_: Any) -> Any:
        raise object.__getattribute__(self, "_link").fail(
            "one of the candidate's objects was compared or computed with (not plain data)"
        )

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _used
    __hash__ = _used
    __contains__ = __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _used
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _used
    __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = __and__ = __or__ = __xor__ = _used
    __index__ = __int__ = __float__ = __complex__ = __round__ = _used


def harness(channel: Channel, job: dict[str, Any]) -> None:
    """Run the tests `job["run"]` (indices into `job["tests"]`), one namespace each: the
    problem's own prelude (e.g. HumanEval's prompt, with its helpers), Remotes for the
    candidate's names, the stdlib modules the test uses, the setup, then the test."""
    link = Link(channel)
    for index in job["run"]:
        test = job["tests"][index]
        link.failed = link.inexpressible = None
        channel.send({"start": index})
        space: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        passed, reason = False, None
        try:
            exec(compile(str(job["prelude"]), "<prelude>", "exec"), space)
            for name in test["modules"]:
                with contextlib.suppress(ImportError):
                    space[name] = importlib.import_module(name)
            for name in test["names"]:
                space[name] = Remote(link, {TAG: "global", "v": name})
            exec(compile(str(job["setup"]), "<setup>", "exec"), space)
            exec(compile(str(test["source"]), f"<test {index}>", "exec"), space)
            passed = True
        except BaseException as e:
            reason = _describe(e)
        if link.inexpressible:
            channel.send({"inexpressible": index, "reason": link.inexpressible})
            continue
        if link.failed:
            passed, reason = False, link.failed
        channel.send({"done": index, "passed": passed, "reason": reason})
    channel.send({"end": True})


# -- role: fallback -------------------------------------------------------------------------------
class _PlainCompares(ast.NodeTransformer):
    """`a == b < c` → `__ponder_compare__(a, (("Eq", lambda: b), ("Lt", lambda: c)))`: each
    operand is evaluated lazily in order, as Python would, and compared only as plain data."""

    def visit_Compare(self, node: ast.Compare) -> Any:
        self.generic_visit(node)
        pairs: list[ast.expr] = [
            ast.Tuple(
                [
                    ast.Constant(type(op).__name__),
                    ast.Lambda(
                        ast.arguments([], [], None, [], [], None, []),
                        right,
                    ),
                ],
                ast.Load(),
            )
            for op, right in zip(node.ops, node.comparators, strict=True)
        ]
        call = ast.Call(
            ast.Name("__ponder_compare__", ast.Load()),
            [node.left, ast.Tuple(pairs, ast.Load())],
            [],
        )
        return ast.copy_location(call, node)


def _plain_comparisons() -> Callable[..., bool]:
    """`__ponder_compare__` for the fallback, with every function it uses bound now, before the
    candidate's code runs and can replace module globals or builtins."""
    exact = (type(None), bool, int, float, complex, str, bytes, range)
    containers = (list, tuple, set, frozenset)
    kind, items_of, raise_ = type, dict.items, NotPlain

    def plain(value: Any, depth: int) -> bool:
        t = kind(value)
        if t in exact or (t is type and value in exact + containers + (dict,)):
            return True
        if depth > MAX_DEPTH:
            return False
        if t in containers:  # loops, not all(): builtins may be replaced by now
            for x in value:  # noqa: SIM110
                if not plain(x, depth + 1):
                    return False
            return True
        if t is dict:
            for k, x in items_of(value):  # noqa: SIM110
                if not (plain(k, depth + 1) and plain(x, depth + 1)):
                    return False
            return True
        return False

    def compare(left: Any, pairs: tuple[tuple[str, Callable[[], Any]], ...]) -> bool:
        for op, right_of in pairs:
            right = right_of()
            if op == "Is":
                ok = left is right
            elif op == "IsNot":
                ok = left is not right
            elif not (plain(left, 0) and plain(right, 0)):
                raise raise_(f"{op} on a value that is not plain data")
            elif op == "Eq":
                ok = left == right
            elif op == "NotEq":
                ok = left != right
            elif op == "Lt":
                ok = left < right
            elif op == "LtE":
                ok = left <= right
            elif op == "Gt":
                ok = left > right
            elif op == "GtE":
                ok = left >= right
            elif op == "In":
                ok = left in right
            else:
                ok = left not in right
            if not ok:
                return False
            left = right
        return True

    return compare


def fallback(channel: Channel, job: dict[str, Any]) -> None:
    """One test in this process, after the candidate's code; the verdict is the nonce."""
    import threading

    write, out_fd, leave = os.write, channel._out_fd, os._exit
    settrace, setprofile = sys.settrace, sys.setprofile
    nonce = str(job["nonce"]).encode() + b"\n"
    safe = dict(builtins.__dict__)
    safe["__ponder_compare__"] = _plain_comparisons()
    entries, names, modules = set(job["entries"]), list(job["names"]), list(job["modules"])
    code = str(job["code"])
    source = str(job["setup"]) + "\n" + str(job["source"])
    prelude = compile(str(job["prelude"]), "<prelude>", "exec", dont_inherit=True, optimize=0)
    tree = ast.fix_missing_locations(_PlainCompares().visit(ast.parse(source)))
    test = compile(tree, "<test>", "exec", dont_inherit=True, optimize=0)
    del job, source, tree
    space: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(code, "<candidate>", "exec"), space)
    except BaseException:
        leave(1)
    settrace(None)
    setprofile(None)
    threading.settrace(None)  # type: ignore[arg-type,unused-ignore]
    threading.setprofile(None)  # type: ignore[arg-type,unused-ignore]
    own: dict[str, Any] = {"__name__": "__main__", "__builtins__": safe}
    try:
        exec(prelude, own)
        for name in modules:
            with contextlib.suppress(ImportError):
                own[name] = importlib.import_module(name)
        for name in names:  # the candidate's names the test uses (a builtin only if an entry)
            if name in space and (name in entries or name not in safe):
                own[name] = space[name]
        exec(test, own)
    except BaseException:
        leave(1)
    write(out_fd, nonce)
    leave(0)


# -- main -----------------------------------------------------------------------------------------
def main() -> None:
    channel = Channel()
    try:
        first = channel.receive()
    except EOFError:
        return
    role = first.get("role")
    if role == "server":
        serve(channel, first)
    elif role == "harness":
        harness(channel, first)
    elif role == "fallback":
        fallback(channel, first)
    sys.stdout.flush()
    os._exit(0)  # no exit handlers, no waiting on threads the code under test started


if __name__ == "__main__":
    main()
