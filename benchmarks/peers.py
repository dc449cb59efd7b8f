"""ponder beside its peers: its-hub 1.2.0 and optillm 0.4.0 on the same llama.cpp server.

Each peer is installed from PyPI in its own virtualenv under benchmarks/out/peers/ and driven by
a small script of its own (benchmarks/peers/*_driver.py, run with the peer's python, no ponder
import): a JSON job on stdin, a JSON line per problem on stdout. Every method gets the same
GSM8K problems, temperature, max_tokens and system prompt (ponder's DEFAULT_SYSTEM_PROMPT), and
every final text is graded the same way: ponder.answers.extract(text, "number") against the gold
answer with ponder.answers.equivalent. Methods run one after another against one llama.cpp
server (xllamacpp in this process, 8 slots, context 8 × 2048); its /metrics counters
(tokens_predicted_total, prompt_tokens_total) are read before and after each, so the delta is
that method's. Each peer's own reported usage is kept beside it.

setup   create the venvs and install the pinned peers (idempotent; --peers its_hub for one),
        pip freeze into benchmarks/out/peers/freeze-*.txt, and the HF copy of the model for
        optillm's deepconf.
server  serve the model over HTTP until interrupted (for trying a driver by hand).
run     the methods, appended to --out as JSON lines (rows per problem, then the method's total);
        a method whose total is already there for the same problems and settings is skipped.
table   per method: accuracy with a seeded 95% bootstrap CI, wall seconds, server-counted
        tokens, peer-reported tokens, ratios per problem and a paired bootstrap CI of the
        accuracy difference against --reference (on the problems both ran).

Methods are PEER:NAME?key=value&... (the whole spec is the method's label):
    its_hub:self_consistency | its_hub:adaptive | its_hub:beta
        ?projection=boxed|text  ?orchestrator=slots|library  ?max_concurrency=8  ?seed=0
    optillm:majority_voting
    optillm:deepconf   not on the server: optillm's local transformers engine on the same
        weights (setup makes the HF copy); ?warmup_samples=W (default n // 2) ?concurrency=1
    ponder:STRATEGY?option=value...   any ponder strategy by name (n and temperature passed
        where the strategy takes them; options override; ?seed=S, problem i gets S + i)
See benchmarks/peers/*_driver.py for what each peer method calls and the quirks found.

    PYTHONPATH=src .venv/bin/python benchmarks/peers.py setup
    PYTHONPATH=src .venv/bin/python benchmarks/peers.py run --problems 100 --n 8 \\
        --methods its_hub:self_consistency,its_hub:adaptive,its_hub:beta,\\
optillm:majority_voting,ponder:vote --out benchmarks/out/peers/results.jsonl
    PYTHONPATH=src .venv/bin/python benchmarks/peers.py table \\
        --out benchmarks/out/peers/results.jsonl --reference its_hub:self_consistency
Add --threads 1 to `run` while another model job shares the two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import numpy as np

from ponder.answers import equivalent, extract
from ponder.runtime.prompting import DEFAULT_SYSTEM_PROMPT
from ponder.types import Problem

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "peers"
DRIVERS = HERE / "peers"
HF_MODEL = OUT / "hf-qwen2.5-coder-0.5b-instruct"
INSTALL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Peer:
    """A peer package: its venv, what to pip-install (in order), and its driver script."""

    name: str
    dist: str  # the distribution whose version says it is installed
    version: str
    installs: tuple[tuple[str, ...], ...]
    driver: str
    probe: str  # Python that fails unless everything the driver needs is there

    @property
    def venv(self) -> Path:
        return OUT / f"venv-{self.name.replace('_', '-')}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


PEERS = {
    "its_hub": Peer(
        "its_hub",
        "its_hub",
        "1.2.0",
        # plain `its-hub` installs no LM client (the import error is swallowed): the README's
        # standalone use needs the [lm] extra
        (("its-hub[lm]==1.2.0",),),
        "its_hub_driver.py",
        "from its_hub import OpenAICompatibleLanguageModel",
    ),
    "optillm": Peer(
        "optillm",
        "optillm",
        "0.4.0",
        # the CPU torch wheel on this machine's disk first, or optillm's torch pulls a CUDA
        # build of several GB; gguf lets transformers read the GGUF for deepconf's local engine
        (("torch==2.13.0",), ("optillm==0.4.0",), ("gguf==0.19.0",)),
        "optillm_driver.py",
        "import gguf, openai, optillm.server, torch",
    ),
}


# ---------------------------------------------------------------------------------------- setup


def setup(model: str, names: list[str]) -> None:
    """Create the named peers' venvs and install their pins (skipped when already there)."""
    OUT.mkdir(parents=True, exist_ok=True)
    for peer in (PEERS[name] for name in names):
        have = installed_version(peer)
        if have == peer.version and complete(peer):
            print(f"{peer.name}: {peer.dist} {have} already installed in {peer.venv}")
        else:
            if not peer.python.exists():
                code, tail = run_logged(["python3", "-m", "venv", str(peer.venv)])
                print(f"{peer.name}: python3 -m venv {peer.venv}: exit {code}")
                if code != 0:
                    print(tail)
                    continue
            for pins in peer.installs:
                started = time.monotonic()
                cmd = [str(peer.python), "-m", "pip", "install", *pins]
                code, tail = run_logged(cmd, timeout=INSTALL_TIMEOUT_S)
                took = time.monotonic() - started
                print(f"{peer.name}: pip install {' '.join(pins)}: exit {code} in {took:.0f} s")
                if code != 0:
                    print(tail)
                    break
        freeze = subprocess.run(
            [str(peer.python), "-m", "pip", "freeze"], capture_output=True, text=True
        )
        if freeze.returncode == 0:
            path = OUT / f"freeze-{peer.name.replace('_', '-')}.txt"
            path.write_text(freeze.stdout)
            print(f"{peer.name}: {len(freeze.stdout.splitlines())} packages → {path}")
    if (HF_MODEL / "config.json").exists():
        print(f"deepconf model: {HF_MODEL} already there")
    elif "optillm" in names and installed_version(PEERS["optillm"]) == PEERS["optillm"].version:
        path = model_path(model)
        cmd = [str(PEERS["optillm"].python), str(DRIVERS / "gguf_to_hf.py"), str(path)]
        code, tail = run_logged([*cmd, str(HF_MODEL)], timeout=INSTALL_TIMEOUT_S)
        print(f"deepconf model: exit {code}\n{tail}")


def installed_version(peer: Peer) -> str | None:
    if not peer.python.exists():
        return None
    dist = peer.dist
    probe = subprocess.run(
        [str(peer.python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def complete(peer: Peer) -> bool:
    """Whether the peer's venv has all its driver imports."""
    probe = subprocess.run([str(peer.python), "-c", peer.probe], capture_output=True)
    return probe.returncode == 0


def run_logged(cmd: list[str], timeout: float | None = None) -> tuple[int, str]:
    """Run `cmd`, its output kept; (exit code, the output's last 40 lines)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return -1, f"timed out after {timeout} s\n" + "\n".join(out.splitlines()[-40:])
    out = done.stdout + done.stderr
    return done.returncode, "\n".join(out.splitlines()[-40:])


# --------------------------------------------------------------------------------------- server


def model_path(model: str) -> Path:
    """A registered model name (ponder's registry) or a path to a .gguf file."""
    if model.endswith(".gguf"):
        return Path(model).expanduser()
    from ponder.lm.registry import Registry

    path, _ = Registry().resolve(model)
    return Path(path)


class LlamaServer:
    """llama.cpp's OpenAI-compatible HTTP server, in this process (xllamacpp), on 127.0.0.1."""

    def __init__(
        self,
        model: str,
        *,
        port: int = 0,
        slots: int = 8,
        ctx_per_slot: int = 2048,
        threads: int = 0,
    ) -> None:
        """`threads`: llama.cpp's compute threads, 0 for one per core (use fewer while another
        model job shares the cores: oversubscribed, llama.cpp's spinning threads crawl)."""
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(model_path(model))
        params.n_parallel = slots
        params.n_ctx = slots * ctx_per_slot  # shared by all slots
        threads = threads or max(1, os.cpu_count() or 1)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cont_batching = True
        params.endpoint_metrics = True
        params.verbosity = -1
        params.warmup = False
        if port:
            params.port = port
        self.slots, self.threads = slots, threads
        self._server = xlc.Server(params)
        self.url = str(self._server.listening_address).rstrip("/")
        models = httpx.get(f"{self.url}/v1/models", timeout=30).json()
        self.model = str(models["data"][0]["id"])
        # the first request is slow: warm it up outside every method's count
        httpx.post(
            f"{self.url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
            timeout=300,
        ).raise_for_status()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus counters (`llamacpp:` prefix dropped)."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name.removeprefix("llamacpp:")] = float(value)
        return out

    def settled_metrics(self, limit_s: float = 60.0) -> dict[str, float]:
        """The counters once the server has finished: nothing processing and the generated
        count unchanged over half a second. A stream a client stopped is counted by llama.cpp
        only as its slot winds down; read at once, a run that stopped streams in flight read
        up to a slot's worth per slot short (stop 47: 1,135 tokens short over 100 problems,
        while ponder's ledger equalled the settled counter problem by problem)."""
        deadline = time.monotonic() + limit_s
        last = self.metrics()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.metrics()
            idle = now.get("requests_processing", 0.0) == 0.0
            if idle and now.get("tokens_predicted_total") == last.get("tokens_predicted_total"):
                return now
            last = now
        return last


def serve(model: str, port: int, threads: int) -> None:
    server = LlamaServer(model, port=port, threads=threads)
    print(f"serving {server.model} at {server.base_url} ({server.slots} slots); Ctrl-C stops")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.close()


# -------------------------------------------------------------------------------------- methods


@dataclass
class Method:
    """PEER:NAME?key=value&... parsed: the label is the whole spec, as given."""

    spec: str
    peer: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Method:
        head, _, query = spec.strip().partition("?")
        peer, sep, name = head.partition(":")
        if not sep or not name or peer not in (*PEERS, "ponder"):
            raise SystemExit(f"bad method {spec!r}: PEER:NAME (its_hub, optillm, ponder)")
        options = {k: option_value(v) for k, v in parse_qsl(query, keep_blank_values=True)}
        return cls(spec.strip(), peer, name, options)


def option_value(text: str) -> Any:
    """An option's value: JSON where it parses (numbers, true/false, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class Settings:
    """What every method shares."""

    n: int
    temperature: float
    max_tokens: int
    system: str
    concurrency: int


@dataclass
class Outcome:
    """One method's run: rows per problem (by id) and what the method's run cost."""

    rows: list[dict[str, Any]]
    wall_seconds: float
    setup_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_driver(
    method: Method, problems: list[Problem], s: Settings, server: LlamaServer, log: Path
) -> Outcome:
    """A peer's driver in the peer's venv: the job on stdin, a JSON line per problem back."""
    peer = PEERS[method.peer]
    options = dict(method.options)
    if method.peer == "optillm" and method.name == "deepconf":
        options.setdefault("hf_model", str(HF_MODEL))
    job = {
        "base_url": server.base_url,
        "model": server.model,
        "problems": [{"id": p.id, "question": p.question} for p in problems],
        "method": method.name,
        "options": options,
        "n": s.n,
        "temperature": s.temperature,
        "max_tokens": s.max_tokens,
        "system": s.system,
        "concurrency": s.concurrency,
        "log": str(log.with_suffix(".proxy.log")),
    }
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(peer.python), str(DRIVERS / peer.driver)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        ready_at, setup, extra = started, 0.0, {}
        rows: list[dict[str, Any]] = []
        for line in proc.stdout:
            row = json.loads(line)
            if row.get("event") == "ready":
                ready_at = time.perf_counter()
                setup = float(row.get("setup_seconds", ready_at - started))
                extra = {k: v for k, v in row.items() if k not in ("event", "setup_seconds")}
            else:
                rows.append(row)
                print(f"  {method.spec} {row['id']}: {row.get('seconds', 0):.0f} s", flush=True)
        code = proc.wait()
    wall = time.perf_counter() - ready_at
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        print(f"  {method.spec}: driver exited {code}; stderr ({log}):\n{tail}")
        extra["driver_exit"] = code
    return Outcome(rows, wall, setup, extra)


async def run_ponder(method: Method, problems: list[Problem], s: Settings, url: str) -> Outcome:
    """A ponder strategy through ponder's own engine against the same server (over HTTP)."""
    from ponder.runtime.engine import Engine
    from ponder.runtime.prompting import Prompting
    from ponder.runtime.strategy import STRATEGIES
    from ponder.serve.protocol import chosen_text

    if method.name not in STRATEGIES:
        raise SystemExit(f"ponder has no strategy {method.name!r} ({', '.join(STRATEGIES)})")
    fields = STRATEGIES.get(method.name).obj.model_fields
    options: dict[str, Any] = {
        k: v for k, v in (("n", s.n), ("temperature", s.temperature)) if k in fields
    }
    options.update(method.options)
    seed = int(options.pop("seed", 0))
    prompting = Prompting(system=s.system, max_tokens=s.max_tokens)
    started = time.perf_counter()
    engine = Engine.open(base_url=url, slots=8, prompting=prompting)
    setup = time.perf_counter() - started
    gate = asyncio.Semaphore(s.concurrency)

    async def one(i: int, p: Problem) -> dict[str, Any]:
        async with gate:
            t = time.perf_counter()
            result = await engine.solve(p, method.name, seed=seed + i, **options)
            seconds = time.perf_counter() - t
        # the final text: what `ponder serve` answers a client (the candidate that carries
        # the chosen answer; a program's printed answer after it when only a program gave it)
        text, _ = chosen_text(result)
        total = result.total
        row: dict[str, Any] = {
            "id": p.id,
            "text": text if result.answer is not None else "",
            "seconds": seconds,
            "peer_usage": {
                "prompt_tokens": total.prompt_tokens,
                "completion_tokens": total.completion_tokens,
                "calls": total.calls,
            },
            "info": {
                "answer": result.answer,
                "samples": len(result.candidates),
                "stopped": result.stopped,
                "votes": result.info.get("votes"),
                "tie": result.info.get("tie"),
            },
        }
        if result.error:
            row["error"] = result.error
        print(f"  {method.spec} {p.id}: {seconds:.0f} s", flush=True)
        return row

    started = time.perf_counter()
    async with engine:
        rows = await asyncio.gather(*(one(i, p) for i, p in enumerate(problems)))
    return Outcome(list(rows), time.perf_counter() - started, setup)


def grade(text: str | None, problem: Problem) -> tuple[str | None, bool]:
    """The same for every method: ponder's number extraction, ponder's equivalence."""
    answer = extract(text or "", "number")
    return answer, problem.gold is not None and equivalent(answer, problem.gold, "number")


# ------------------------------------------------------------------------------------------ run


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(
    methods: list[Method],
    problems: list[Problem],
    s: Settings,
    model: str,
    out: Path,
    offset: int,
    threads: int,
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = out.parent / "logs"
    logs.mkdir(exist_ok=True)
    ids = [p.id for p in problems]
    key = {"n": s.n, "temperature": s.temperature, "max_tokens": s.max_tokens, "system": s.system}
    done = {
        r["method"]
        for r in load_rows(out)
        if r.get("kind") == "total" and r.get("ids") == ids and r.get("settings") == key
    }
    todo = [m for m in methods if m.spec not in done]
    for m in methods:
        if m.spec in done:
            print(f"{m.spec}: already in {out} for these problems and settings, skipped")
    if not todo:
        return
    by_id = {p.id: p for p in problems}
    started = time.perf_counter()
    server = LlamaServer(model, threads=threads)
    up = time.perf_counter() - started
    print(f"llama.cpp: {server.model} at {server.base_url}, up in {up:.0f} s")
    try:
        for m in todo:
            print(f"{m.spec}: {len(problems)} problems, n={s.n}", flush=True)
            before = server.metrics()
            stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            if m.peer == "ponder":
                outcome = asyncio.run(run_ponder(m, problems, s, server.base_url))
            else:
                log = logs / f"{m.spec.replace(':', '-').replace('?', '-').replace('&', '-')}.log"
                outcome = run_driver(m, problems, s, server, log)
            after = server.settled_metrics()
            delta = {
                k: after.get(k, 0.0) - before.get(k, 0.0)
                for k in ("tokens_predicted_total", "prompt_tokens_total", "n_decode_total")
            }
            with out.open("a") as f:
                for row in sorted(outcome.rows, key=lambda r: ids.index(r["id"])):
                    answer, correct = grade(row.get("text"), by_id[row["id"]])
                    line = {
                        "kind": "problem",
                        "method": m.spec,
                        **row,
                        "gold": by_id[row["id"]].gold,
                        "answer": answer,
                        "correct": correct,
                    }
                    f.write(json.dumps(line) + "\n")
                peer_out = sum(completion_of(r.get("peer_usage")) for r in outcome.rows)
                total = {
                    "kind": "total",
                    "method": m.spec,
                    "date": stamp,
                    "ids": ids,
                    "offset": offset,
                    "settings": key,
                    "concurrency": s.concurrency,
                    "threads": server.threads,
                    "problems": len(problems),
                    "answered": len(outcome.rows),
                    "errors": sum(1 for r in outcome.rows if "error" in r),
                    "correct": sum(grade(r.get("text"), by_id[r["id"]])[1] for r in outcome.rows),
                    "wall_seconds": outcome.wall_seconds,
                    "setup_seconds": outcome.setup_seconds,
                    "server_tokens_predicted": delta["tokens_predicted_total"],
                    "server_prompt_tokens": delta["prompt_tokens_total"],
                    "server_decode_calls": delta["n_decode_total"],
                    "peer_completion_tokens": peer_out,
                    "peer_prompt_tokens": sum(
                        (r.get("peer_usage") or {}).get("prompt_tokens") or 0 for r in outcome.rows
                    ),
                    **outcome.extra,
                }
                f.write(json.dumps(total) + "\n")
            print(
                f"{m.spec}: {total['correct']}/{len(problems)} correct, "
                f"{outcome.wall_seconds:.0f} s, server generated "
                f"{delta['tokens_predicted_total']:,.0f} (peer says {peer_out:,})",
                flush=True,
            )
    finally:
        server.close()


def completion_of(usage: dict[str, Any] | None) -> int:
    return int((usage or {}).get("completion_tokens") or 0)


# ---------------------------------------------------------------------------------------- table


def bootstrap_ci(
    values: np.ndarray, rng: np.random.Generator, resamples: int = 10_000
) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean of `values` (problems resampled)."""
    if len(values) == 0:
        return float("nan"), float("nan")
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


ADDED_UP = ("wall_seconds", "server_tokens_predicted", "server_prompt_tokens")
ADDED_UP += ("peer_completion_tokens", "errors")


def table(outs: list[Path], reference: str, seed: int) -> None:
    """The table of one results file, or of several (runs on other problems with the same
    settings) pooled: each method's problems side by side, its wall and tokens added up."""
    totals: dict[str, dict[str, Any]] = {}
    per: dict[str, dict[str, bool]] = {}
    ranges = []
    for out in outs:
        rows = load_rows(out)
        latest: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r.get("kind") == "total":
                latest[r["method"]] = r  # the latest run of each method
        if not latest:
            raise SystemExit(f"no totals in {out}")
        for m, t in latest.items():
            wanted = set(t["ids"])
            found = [r for r in rows if r.get("kind") == "problem" and r["method"] == m]
            per.setdefault(m, {}).update(
                {r["id"]: bool(r["correct"]) for r in found if r["id"] in wanted}
            )
            if m not in totals:
                totals[m] = {**t, "ids": list(t["ids"])}
                continue
            if t["settings"] != totals[m]["settings"]:
                raise SystemExit(f"{out}: {m} ran with other settings than in {outs[0]}")
            totals[m]["ids"] += t["ids"]
            for key in ADDED_UP:
                totals[m][key] += t[key]
        first = next(iter(latest.values()))
        ranges.append(f"{first['offset'] + 1}-{first['offset'] + first['problems']}")
    ref = totals.get(reference)
    if ref is None:
        print(f"(reference {reference!r} not in {', '.join(map(str, outs))}: no ratios)\n")
    st = next(iter(totals.values()))["settings"]
    print(
        f"GSM8K test, problems {', '.join(ranges)}; "
        f"n={st['n']}, T={st['temperature']}, max_tokens={st['max_tokens']}; "
        f"95% CIs: seeded bootstrap (seed {seed}, 10,000 resamples)\n"
    )
    print(
        "| method | problems | accuracy (95% CI) | wall s | server generated | server prompt | "
        "peer-reported generated | reported / server | generated vs ref | wall vs ref | "
        "Δ accuracy vs ref (95% paired CI) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m, t in totals.items():
        rng = np.random.default_rng(seed)
        ok = np.array([per[m].get(i, False) for i in t["ids"]], dtype=float)
        lo, hi = bootstrap_ci(ok, rng)
        gen = t["server_tokens_predicted"]
        rep = t["peer_completion_tokens"]
        local = gen == 0 and rep > 0  # a peer that does not run on the server (deepconf)
        cells = [
            m,
            f"{len(ok)}" + (f" ({t['errors']} errors)" if t["errors"] else ""),
            f"{ok.mean():.0%} ({lo:.0%}–{hi:.0%})",
            f"{t['wall_seconds']:.0f}",
            "not on the server" if local else f"{gen:,.0f}",
            "—" if local else f"{t['server_prompt_tokens']:,.0f}",
            f"{rep:,}",
            "—" if local or not gen else f"{rep / gen:.2f}",
        ]
        if ref is not None and m != reference:
            # per problem, so a method run on fewer problems compares fairly
            scale = len(ref["ids"]) / len(t["ids"])
            rg = ref["server_tokens_predicted"]
            cells.append("—" if local or not rg else f"{scale * gen / rg:.2f}")
            cells.append(f"{scale * t['wall_seconds'] / ref['wall_seconds']:.2f}")
            shared = [i for i in t["ids"] if i in per[reference] and i in per[m]]
            diff = np.array([per[m][i] - per[reference][i] for i in shared], dtype=float)
            dlo, dhi = bootstrap_ci(diff, np.random.default_rng(seed))
            cells.append(f"{diff.mean():+.0%} ({dlo:+.0%} to {dhi:+.0%}), {len(shared)} paired")
        else:
            cells += ["1.00", "1.00", "reference"] if m == reference else ["—", "—", "—"]
        print("| " + " | ".join(cells) + " |")


# ----------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default="qwen2.5-coder-0.5b", help="registry name or .gguf")
    model.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: per core)")
    sub = ap.add_subparsers(dest="what", required=True)
    su = sub.add_parser("setup", parents=[model])
    su.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated, of {', '.join(PEERS)} (optillm's venv is ~3.2 GB with torch)",
    )
    sv = sub.add_parser("server", parents=[model])
    sv.add_argument("--port", type=int, default=0)
    r = sub.add_parser("run", parents=[model])
    r.add_argument("--problems", type=int, default=20)
    r.add_argument("--offset", type=int, default=0, help="skip this many problems first")
    r.add_argument("--n", type=int, default=8)
    r.add_argument("--temperature", type=float, default=0.7)
    r.add_argument("--max-tokens", type=int, default=512)
    r.add_argument("--concurrency", type=int, default=8, help="problems in flight per method")
    r.add_argument(
        "--methods",
        default="its_hub:self_consistency,its_hub:adaptive,its_hub:beta,"
        "optillm:majority_voting,ponder:vote",
        help="comma-separated PEER:NAME?key=value&... (see above)",
    )
    r.add_argument("--out", type=Path, default=OUT / "results.jsonl")
    t = sub.add_parser("table")
    t.add_argument(
        "--out",
        type=Path,
        nargs="+",
        default=[OUT / "results.jsonl"],
        help="results files (several: pooled, each method's problems and costs added up)",
    )
    t.add_argument("--reference", default="its_hub:self_consistency")
    t.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.what == "setup":
        names = [p.strip() for p in args.peers.split(",") if p.strip()]
        unknown = sorted(set(names) - set(PEERS))
        if unknown:
            ap.error(f"--peers: no peer {', '.join(unknown)} (one of {', '.join(PEERS)})")
        setup(args.model, names)
    elif args.what == "server":
        serve(args.model, args.port, args.threads)
    elif args.what == "run":
        from ponder.tasks.registry import get_task

        methods = [Method.parse(m) for m in args.methods.split(",") if m.strip()]
        problems = get_task("gsm8k").load(limit=args.problems, offset=args.offset)
        settings = Settings(
            args.n, args.temperature, args.max_tokens, DEFAULT_SYSTEM_PROMPT, args.concurrency
        )
        run(methods, problems, settings, args.model, args.out, args.offset, args.threads)
    else:
        table(args.out, args.reference, args.seed)


if __name__ == "__main__":
    main()
