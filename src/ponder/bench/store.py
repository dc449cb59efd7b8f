"""The results store: one SQLite file (WAL) per sweep, one row per unit of work as it completes.

A *run* is everything that identifies what was computed (task, model and its sha256, strategy
config, seed, prompting); its key is a hash of that identity, so re-running the same command
finds its run again and computes only the units that are missing. A *unit* is one call of the
engine: one sample of a pool (pooled strategies) or one whole strategy run on a problem. A unit
and its candidates are written in one transaction, keyed by (run, problem, unit), so a crash
loses at most the units in flight and a resumed run never duplicates one.

Answers are grouped into per-problem *answer classes* (equivalent answers share a class; each
class is graded once against the gold), so the report votes over small integers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from pydantic import BaseModel

from ponder.answers import equivalent
from ponder.errors import PonderError
from ponder.types import Candidate, Problem, Result

# Bump when the tables change meaning; a store of another version is refused, never mixed,
# unless a migration below brings it up to date without changing what it holds.
SCHEMA_VERSION = 3
# version → the statements that bring a store of that version to the next
_MIGRATIONS: dict[int, str] = {
    # 1 → 2: candidates carry confidence signals (JSON) and per-token statistics (BLOB);
    # rows written before have neither (NULL), which every reader takes as "no signal".
    1: "ALTER TABLE candidates ADD COLUMN signals TEXT;"
    "ALTER TABLE candidates ADD COLUMN stats BLOB;",
    # 2 → 3: candidates carry their Python calls (JSON; NULL: none made); a unit's trace
    # (search tree, refine revisions) moves out of units.info into `traces`, compressed, kept
    # only when asked for (`ponder bench --keep-trees`). Units written before keep theirs in
    # units.info, where `Store.trace` still finds it.
    2: "ALTER TABLE candidates ADD COLUMN tool_calls TEXT;"
    "CREATE TABLE traces (rid INTEGER NOT NULL, pid INTEGER NOT NULL, unit INTEGER NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY (rid, pid, unit)) WITHOUT ROWID;",
}
# Result.info keys that make a unit's trace: bulky, so kept apart and only when asked for
TRACE_KEYS = ("tree", "revisions")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
  rid INTEGER PRIMARY KEY,
  run_key TEXT NOT NULL UNIQUE,
  task TEXT NOT NULL,
  model TEXT NOT NULL,
  model_sha256 TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('pool', 'direct')),
  strategy TEXT NOT NULL,
  scored INTEGER NOT NULL,
  seed INTEGER NOT NULL,
  config TEXT NOT NULL,
  versions TEXT NOT NULL,
  created REAL NOT NULL
);
CREATE TABLE problems (
  pid INTEGER PRIMARY KEY,
  task TEXT NOT NULL,
  problem_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  question TEXT NOT NULL,
  gold TEXT,
  kind TEXT,
  level TEXT,
  UNIQUE (task, problem_id)
);
CREATE TABLE classes (
  pid INTEGER NOT NULL,
  key TEXT NOT NULL,
  class INTEGER NOT NULL,
  correct INTEGER NOT NULL,
  answer TEXT NOT NULL,
  PRIMARY KEY (pid, key)
) WITHOUT ROWID;
CREATE TABLE segments (
  sid INTEGER PRIMARY KEY,
  rid INTEGER NOT NULL,
  started REAL NOT NULL,
  ended REAL,
  units INTEGER NOT NULL DEFAULT 0,
  tokens INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE units (
  rid INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  unit INTEGER NOT NULL,
  sid INTEGER NOT NULL,
  answer TEXT,
  class INTEGER NOT NULL,
  correct INTEGER NOT NULL,
  score REAL,
  policy_prompt INTEGER NOT NULL,
  policy_cached INTEGER NOT NULL,
  policy_completion INTEGER NOT NULL,
  verifier_prompt INTEGER NOT NULL,
  verifier_cached INTEGER NOT NULL,
  verifier_completion INTEGER NOT NULL,
  calls INTEGER NOT NULL,
  flops REAL NOT NULL,
  dollars REAL NOT NULL,
  call_seconds REAL NOT NULL,
  latency REAL NOT NULL,
  stopped TEXT,
  error TEXT,
  info TEXT NOT NULL,
  PRIMARY KEY (rid, pid, unit)
) WITHOUT ROWID;
CREATE TABLE candidates (
  rid INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  unit INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  text TEXT NOT NULL,
  answer TEXT,
  class INTEGER NOT NULL,
  correct INTEGER NOT NULL,
  score REAL,
  completion_tokens INTEGER NOT NULL,
  finish_reason TEXT NOT NULL,
  note TEXT,
  signals TEXT,
  stats BLOB,
  tool_calls TEXT,
  PRIMARY KEY (rid, pid, unit, idx)
) WITHOUT ROWID;
CREATE TABLE traces (
  rid INTEGER NOT NULL,
  pid INTEGER NOT NULL,
  unit INTEGER NOT NULL,
  data BLOB NOT NULL,  -- zlib-compressed JSON: {"tree": [node records], "revisions": [...]}
  PRIMARY KEY (rid, pid, unit)
) WITHOUT ROWID;
"""

NO_ANSWER = -1  # the class of a unit or candidate without an answer
Classes = dict[str, tuple[int, bool, str]]  # a problem's: key -> (class, correct, answer)


def known_class(known: Classes, key: str, answer: str, kind: str) -> tuple[int, bool] | None:
    """(class, correct) of the class among a problem's `known` ones that `answer` (its key
    `key`) belongs to: its key's, or for math one math-verify proves equal; None: a new one."""
    if key in known:
        return known[key][:2]
    if kind == "math":
        for cls, ok, rep in {v[0]: v for v in known.values()}.values():
            if equivalent(rep, answer, kind):
                return cls, ok
    return None


# every table a whole store has (a store missing one was damaged by hand)
_TABLES = frozenset(re.findall(r"CREATE TABLE (\w+)", _SCHEMA))


class StoreError(PonderError):
    """A store that cannot be used: not a ponder store, or written by another schema."""


class Run(BaseModel):
    """A run's identity and metadata as stored."""

    rid: int
    run_key: str
    task: str
    model: str
    model_sha256: str
    kind: str
    strategy: str
    scored: bool
    seed: int
    config: dict[str, Any]
    versions: dict[str, Any]


def run_key(identity: dict[str, Any]) -> str:
    """A stable hash of a run's identity (sorted JSON)."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class Store:
    """One SQLite file. Not shared across threads: the harness writes from its event loop."""

    def __init__(self, path: Path | str, *, create: bool = True, readonly: bool = False) -> None:
        """`readonly`: for readers (reports, router fits, benchmarks): the file is never
        written, so reading a store leaves it byte for byte as it was (a committed store stays
        clean) and a reader can never disturb a run writing it. Implies `create=False`."""
        self.path = Path(path)
        self.readonly = readonly
        self._claim: BinaryIO | None = None  # held open while this is the store's writer
        create = create and not readonly
        if not self.path.exists() and not create:
            raise StoreError(f"{self.path}: no such store")
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a store file")
        if not create and self.path.stat().st_size == 0:  # sqlite would make it a new store
            raise StoreError(f"{self.path}: an empty file, not a ponder store")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._connect()
            self._check_or_create()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: not a ponder store ({e})") from None

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:  # another program's database: left as it was
                db.close()
                raise StoreError(f"{self.path}: not a ponder store (no meta table)")
            db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a killed process loses nothing committed (only an OS crash could)
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _check_or_create(self) -> None:
        tables = {
            r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables and self.readonly:
            raise StoreError(f"{self.path}: not a ponder store (an empty database)")
        if not tables:
            from ponder import __version__

            # one script, one transaction: a half-made store cannot be left behind
            self.db.executescript(
                "BEGIN;"
                + _SCHEMA
                + f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                + f"INSERT INTO meta VALUES ('created_by', '{__version__}');"
                + "COMMIT;"
            )
            return
        if "meta" not in tables:
            raise StoreError(f"{self.path}: not a ponder store (no meta table)")
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        found = meta.get("schema_version")
        if self.readonly and found is not None and found.isdigit() and int(found) in _MIGRATIONS:
            # an older schema is brought up to date once, by a writer; then read as asked
            self.db.close()
            Store(self.path, create=False).close()
            self.db = self._connect()
            meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
            found = meta.get("schema_version")
        while found is not None and found.isdigit() and int(found) in _MIGRATIONS:
            older = int(found)
            self.db.executescript(
                "BEGIN;"
                + _MIGRATIONS[older]
                + f"UPDATE meta SET value = '{older + 1}' WHERE key = 'schema_version';"
                + "COMMIT;"
            )
            found = str(older + 1)
        if found != str(SCHEMA_VERSION):
            raise StoreError(
                f"{self.path}: store schema version {found} (written by ponder "
                f"{meta.get('created_by', '?')}), but this ponder reads version {SCHEMA_VERSION}. "
                "Results of different versions are never mixed: use a new store (--store) or "
                "the ponder version that wrote it."
            )
        tables = {
            r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if missing := sorted(_TABLES - tables):
            raise StoreError(f"{self.path}: a damaged ponder store (no {', '.join(missing)} table)")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def claim(self) -> None:
        """Be this store's only writer until `close`: a second `ponder bench` on it is an error
        (both would compute the same missing units and time each other's)."""
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only, so it cannot be written")
        self._claim = self.path.open("rb")
        try:
            fcntl.flock(self._claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._claim.close()
            raise StoreError(
                f"{self.path}: another ponder bench is writing this store; wait for it to "
                "finish (it resumes where it stops) or give another --store"
            ) from None

    def close(self) -> None:
        self.db.close()
        if self._claim is not None:
            self._claim.close()  # the lock goes with it
            self._claim = None

    # -- runs and problems -------------------------------------------------------------------
    def problem_names(self) -> dict[int, str]:
        """Each problem's id in this store → "task/problem id", the name that is the same
        across stores (so runs in two stores pair up problem by problem)."""
        return {
            int(pid): f"{task}/{problem}"
            for pid, task, problem in self.db.execute("SELECT pid, task, problem_id FROM problems")
        }

    def run(
        self,
        identity: dict[str, Any],
        *,
        task: str,
        model: str,
        model_sha256: str,
        kind: str,
        strategy: str,
        scored: bool,
        seed: int,
        versions: dict[str, Any],
    ) -> Run:
        """The run with this identity, created on first use."""
        key = run_key(identity)
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO runs (run_key, task, model, model_sha256, kind, strategy,"
                " scored, seed, config, versions, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key,
                    task,
                    model,
                    model_sha256,
                    kind,
                    strategy,
                    int(scored),
                    seed,
                    json.dumps(identity, sort_keys=True, default=str),
                    json.dumps(versions, sort_keys=True),
                    time.time(),
                ),
            )
        return self.runs(run_key=key)[0]

    def runs(self, *, run_key: str | None = None) -> list[Run]:
        sql = (
            "SELECT rid, run_key, task, model, model_sha256, kind, strategy, scored, seed, config,"
            " versions FROM runs"
        )
        rows = (
            self.db.execute(sql + " WHERE run_key = ?", (run_key,))
            if run_key
            else self.db.execute(sql + " ORDER BY rid")
        )
        return [
            Run(
                rid=r[0],
                run_key=r[1],
                task=r[2],
                model=r[3],
                model_sha256=r[4],
                kind=r[5],
                strategy=r[6],
                scored=bool(r[7]),
                seed=r[8],
                config=json.loads(r[9]),
                versions=json.loads(r[10]),
            )
            for r in rows
        ]

    def add_problems(self, task: str, problems: Sequence[Problem]) -> list[int]:
        """Problem row ids (pid), inserting problems not seen before. A problem id that is
        already stored with another question or gold answer is an error: results would be
        mixed (stored units were graded against the stored gold)."""
        pids: list[int] = []
        with self.transaction():
            for position, p in enumerate(problems):
                level = p.meta.get("level")
                self.db.execute(
                    "INSERT OR IGNORE INTO problems (task, problem_id, position, question, gold,"
                    " kind, level) VALUES (?,?,?,?,?,?,?)",
                    (
                        task,
                        p.id,
                        position,
                        p.question,
                        p.gold,
                        p.kind,
                        None if level is None else str(level),
                    ),
                )
                pid, question, gold = self.db.execute(
                    "SELECT pid, question, gold FROM problems WHERE task = ? AND problem_id = ?",
                    (task, p.id),
                ).fetchone()
                changed = (
                    "question"
                    if question != p.question
                    else f"gold answer ({gold!r}, the data now says {p.gold!r})"
                    if gold != p.gold
                    else None
                )
                if changed is not None:
                    raise StoreError(
                        f"{self.path}: task '{task}' problem '{p.id}' is stored with a different "
                        f"{changed}; the data changed since this store was written (use a new "
                        "store or another task name)"
                    )
                pids.append(pid)
        return pids

    def done_units(self, rid: int) -> set[tuple[int, int]]:
        return {
            (pid, unit)
            for pid, unit in self.db.execute("SELECT pid, unit FROM units WHERE rid = ?", (rid,))
        }

    # -- answer classes ----------------------------------------------------------------------
    def classes(self, pid: int) -> Classes:
        """key -> (class, correct, first answer spelled so) for one problem."""
        return {
            key: (cls, bool(ok), answer)
            for key, cls, ok, answer in self.db.execute(
                "SELECT key, class, correct, answer FROM classes WHERE pid = ?", (pid,)
            )
        }

    def add_class(self, pid: int, key: str, correct: bool, answer: str) -> int:
        with self.transaction():
            row = self.db.execute(
                "SELECT class FROM classes WHERE pid = ? AND key = ?", (pid, key)
            ).fetchone()
            if row:
                return int(row[0])
            (count,) = self.db.execute(
                "SELECT COUNT(*) FROM classes WHERE pid = ?", (pid,)
            ).fetchone()
            self.db.execute(
                "INSERT INTO classes VALUES (?,?,?,?,?)", (pid, key, count, int(correct), answer)
            )
            return int(count)

    def alias_class(self, pid: int, key: str, cls: int, correct: bool, answer: str) -> None:
        """Another spelling of an existing class (found equivalent)."""
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO classes VALUES (?,?,?,?,?)",
                (pid, key, cls, int(correct), answer),
            )

    # -- segments and units ------------------------------------------------------------------
    def open_segment(self, rid: int) -> int:
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO segments (rid, started) VALUES (?, ?)", (rid, time.time())
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def close_segment(self, sid: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE segments SET ended = ? WHERE sid = ?", (time.time(), sid))

    def add_unit(
        self,
        rid: int,
        pid: int,
        unit: int,
        sid: int,
        result: Result,
        graded: Sequence[tuple[int, bool]],
        answer_class: tuple[int, bool],
        latency: float,
        *,
        keep_trace: bool = False,
    ) -> bool:
        """Write one finished unit and its candidates (`graded`: (class, correct) per
        candidate) in one transaction. False if that unit was already stored. The unit's
        trace (TRACE_KEYS of Result.info: a search tree, refine revisions) is written to
        `traces` with `keep_trace`, else dropped."""
        policy = result.usage.get("policy")
        others = [u for role, u in result.usage.items() if role != "policy"]
        total = result.total
        p_prompt = policy.prompt_tokens if policy else 0
        p_cached = policy.cached_tokens if policy else 0
        p_completion = policy.completion_tokens if policy else 0
        v_prompt = sum(u.prompt_tokens for u in others)
        v_cached = sum(u.cached_tokens for u in others)
        v_completion = sum(u.completion_tokens for u in others)
        score = result.info.get("score")
        if score is None and len(result.candidates) == 1:
            score = result.candidates[0].score
        info = {k: v for k, v in result.info.items() if k != "score" and k not in TRACE_KEYS}
        trace = {k: result.info[k] for k in TRACE_KEYS if k in result.info}
        with self.transaction():
            cur = self.db.execute(
                "INSERT OR IGNORE INTO units VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rid,
                    pid,
                    unit,
                    sid,
                    result.answer,
                    answer_class[0],
                    int(answer_class[1]),
                    score,
                    p_prompt,
                    p_cached,
                    p_completion,
                    v_prompt,
                    v_cached,
                    v_completion,
                    total.calls,
                    total.flops,
                    total.dollars,
                    total.seconds,
                    latency,
                    result.stopped,
                    result.error,
                    json.dumps(info, default=str),
                ),
            )
            if cur.rowcount == 0:
                return False
            self.db.executemany(
                f"INSERT INTO candidates ({_CANDIDATE_COLUMNS}) VALUES"
                f" ({','.join('?' * len(_CANDIDATE_COLUMNS.split(',')))})",
                [
                    _candidate_row(rid, pid, unit, i, c, cls, ok)
                    for i, (c, (cls, ok)) in enumerate(zip(result.candidates, graded, strict=True))
                ],
            )
            if keep_trace and trace:
                self.db.execute(
                    "INSERT INTO traces VALUES (?,?,?,?)",
                    (rid, pid, unit, pack_trace(trace)),
                )
            tokens = total.prompt_tokens - total.cached_tokens + total.completion_tokens
            self.db.execute(
                "UPDATE segments SET units = units + 1, tokens = tokens + ?, ended = ?"
                " WHERE sid = ?",
                (tokens, time.time(), sid),
            )
        return True

    # -- reading traces ----------------------------------------------------------------------
    def traces(
        self, rid: int, *, pids: Sequence[int] | None = None
    ) -> dict[tuple[int, int], dict[str, Any]]:
        """(pid, unit) → the kept trace of each unit of a run (of those problems) that has
        one: from `traces`, else (stores written before schema 3) the TRACE_KEYS found in
        units.info."""
        where, args = "rid = ?", [rid]
        if pids is not None:
            where += f" AND pid IN ({','.join('?' * len(pids))})"
            args += list(pids)
        out: dict[tuple[int, int], dict[str, Any]] = {}
        for pid, unit, data in self.db.execute(
            f"SELECT pid, unit, data FROM traces WHERE {where}", args
        ):
            out[(pid, unit)] = unpack_trace(data)
        keys = " OR ".join(f"instr(info, '\"{k}\"') > 0" for k in TRACE_KEYS)
        for pid, unit, info in self.db.execute(
            f"SELECT pid, unit, info FROM units WHERE {where} AND ({keys})", args
        ):
            if (pid, unit) in out:
                continue
            found = {k: v for k, v in json.loads(info).items() if k in TRACE_KEYS}
            if found:
                out[(pid, unit)] = found
        return out


def pack_trace(trace: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(trace, default=str, separators=(",", ":")).encode(), 6)


def unpack_trace(data: bytes) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(zlib.decompress(data))
    return found


_CANDIDATE_COLUMNS = (
    "rid,pid,unit,idx,text,answer,class,correct,score,completion_tokens,finish_reason,note,"
    "signals,stats,tool_calls"
)


def _candidate_row(
    rid: int, pid: int, unit: int, idx: int, c: Candidate, cls: int, ok: bool
) -> tuple[Any, ...]:
    return (
        rid,
        pid,
        unit,
        idx,
        c.text,
        c.answer,
        cls,
        int(ok),
        c.score,
        c.completion_tokens,
        c.finish_reason,
        c.note,
        None if c.signals is None else c.signals.model_dump_json(),
        None if c.stats is None else c.stats.to_bytes(),
        json.dumps([t.model_dump(mode="json") for t in c.tool_calls]) if c.tool_calls else None,
    )
