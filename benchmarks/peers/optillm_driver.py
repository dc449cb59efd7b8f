"""Run one optillm 0.4.0 approach over a list of problems (executed with optillm's own venv python).

Reads a JSON job on stdin:
    {"base_url", "model", "problems": [{"id", "question"}], "method", "options", "n",
     "temperature", "max_tokens", "system", "concurrency", "log"}
and writes JSON lines to stdout: first {"event": "ready", ...}, then one line per problem
{"id", "text", "peer_usage", "seconds", "info"} (or "error" instead of "text").

optillm is used the documented way: its proxy (`optillm`, the package's console script, a Flask
server started here on a free loopback port and stopped at the end) and an OpenAI client
(`openai`, from optillm's venv) sending chat completions to it, the approach in the model name.

majority_voting  The plugin (`optillm/plugins/majority_voting_plugin.py`, slug
                 `majority_voting`) behind the proxy started with `--base-url <llama.cpp>/v1`
                 and OPENAI_API_KEY=sk-no-key (the README's recipe for llama.cpp);
                 model `majority_voting-<model>`, `extra_body={"k": n}` (plugin default k=8,
                 temperature 0.6: both overridden by the shared n and temperature).
                 One upstream request with n=k; the plugin votes on a regex-extracted
                 "answer" and returns the first full response of the winning group.
deepconf         "N/A for proxy" in optillm's README: DeepConf exists only in optillm's
                 local inference engine (HF transformers + PyTorch, one token per Python loop
                 step, one trace at a time), so it cannot be pointed at the llama.cpp server.
                 Run as documented for local inference: the proxy with OPTILLM_API_KEY=optillm
                 (no --base-url), model = a local HF directory (option `hf_model`: the same
                 GGUF weights dequantized by transformers), `extra_body={"decoding": "deepconf",
                 "max_traces": n, "warmup_samples": w, "max_tokens_per_trace": max_tokens}`.
                 Its defaults are warmup_samples=16, max_traces=128 (a budget of 128 traces):
                 here max_traces = n and warmup_samples = option `warmup_samples`, default
                 n // 2 (its default 16 would exceed the budget n). Sequential by design: the
                 problems go one at a time unless option `concurrency` says else.

Reported usage (`peer_usage`) is the proxy's response `usage`. For majority_voting it is the
upstream `usage.completion_tokens` of the n=k call, which llama.cpp counts for one choice only
(smoke: 505 reported for 1,882 generated), and `prompt_tokens` is missing (None).

Quirks seen in the installed source (0.4.0):
- The proxy flattens the conversation into "User: <question>" (`parse_conversation`), and the
  plugin sends that string as the user message: the model sees a "User: " prefix the other
  methods do not send.
- majority_voting's `extract_final_answer` takes the FIRST match of "answer:" / "answer is" /
  "###" lines, then `^([A-E])\\b` and `\\b([A-E])\\b\\s*$` with re.MULTILINE, and knows no
  \\boxed{}: "To find the answer: we subtract." votes "we subtract"; a response with a line
  starting "A duck lays..." votes "a"; a response matching nothing votes with its whole
  normalized text (its own cluster). The winner's first full response is returned; ties go to
  the first group seen. README says default k=6, the code says k=8.
- deepconf returns not a response but a fragment: `trace.text.strip().split('.')[-1]` (the
  text after the last period, or the last 50 characters when the text ends with one); votes
  and the 0.95 consensus check are on those fragments, so "3.50" becomes "50}" and a truncated
  trace votes with its last half-sentence. Scores are 0.7 × mean confidence (unbounded, ~5-8
  here) + 0.3 × vote share, so the most confident fragment wins rather than the majority. It
  stops generating only on `tokenizer.eos_token_id` (one id). `max_tokens` is ignored (only
  `max_tokens_per_trace` counts) and each token is a Python-loop step with a fresh
  `tokenizer.decode([token])`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_proxy(
    args: list[str], env: dict[str, str], log: Path | None
) -> tuple[subprocess.Popen[bytes], str]:
    """optillm's proxy on a free loopback port; returns it once /health answers."""
    port = free_port()
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [str(BIN / "optillm"), "--host", "127.0.0.1", "--port", str(port), *args],
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"optillm proxy exited with {proc.returncode} (log: {log})")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise SystemExit("optillm proxy did not answer /health within 600 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the proxy we started (its own process group: Flask's threads go with it)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def request_for(job: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The chat-completion arguments for the job's approach (besides the messages)."""
    n, max_tokens = int(job["n"]), int(job["max_tokens"])
    if job["method"] == "majority_voting":
        return {
            "model": f"majority_voting-{job['model']}",
            "temperature": job["temperature"],
            "max_tokens": max_tokens,
            "extra_body": {"k": n},
        }
    if job["method"] == "deepconf":
        extra: dict[str, Any] = {
            "decoding": "deepconf",
            "max_traces": n,
            "warmup_samples": int(options.get("warmup_samples", max(1, n // 2))),
            "max_tokens_per_trace": max_tokens,
        }
        for key in ("variant", "consensus_threshold", "window_size", "top_k", "min_trace_length"):
            if key in options:
                extra[key] = options[key]
        return {
            "model": str(options["hf_model"]),
            "temperature": job["temperature"],
            "max_tokens": max_tokens,
            "extra_body": extra,
        }
    raise SystemExit(f"optillm: unknown method {job['method']!r} (majority_voting, deepconf)")


def solve(client: OpenAI, args: dict[str, Any], system: str, problem: dict[str, Any]) -> dict:
    """One problem through the proxy: the final text and the usage the proxy reports."""
    started = time.perf_counter()
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": problem["question"]},
    ]
    try:
        resp = client.chat.completions.create(messages=messages, **args)
    except Exception as e:  # reported per problem, the run goes on
        return {
            "id": problem["id"],
            "error": f"{type(e).__name__}: {e}",
            "seconds": time.perf_counter() - started,
        }
    usage = resp.usage.model_dump() if resp.usage is not None else None
    return {
        "id": problem["id"],
        "text": resp.choices[0].message.content or "",
        "seconds": time.perf_counter() - started,
        "peer_usage": usage,
        "info": {"choices": len(resp.choices)},
    }


def main() -> None:
    job = json.load(sys.stdin)
    options = dict(job.get("options") or {})
    log = Path(job["log"]) if job.get("log") else None
    started = time.perf_counter()
    if job["method"] == "deepconf":
        key = "optillm"  # local inference: OPTILLM_API_KEY selects it and guards the proxy
        proc, url = start_proxy([], {"OPTILLM_API_KEY": key}, log)
        workers = int(options.get("concurrency", 1))
    else:
        key = "sk-no-key"
        proc, url = start_proxy(["--base-url", job["base_url"]], {"OPENAI_API_KEY": key}, log)
        workers = int(job.get("concurrency", 8))
    try:
        args = request_for(job, options)
        client = OpenAI(base_url=f"{url}/v1", api_key=key, timeout=7200, max_retries=0)
        if job["method"] == "deepconf":  # load the local model now, not in the first problem
            client.chat.completions.create(
                model=args["model"], messages=[{"role": "user", "content": "Hi"}], max_tokens=1
            )
        emit(
            {
                "event": "ready",
                "setup_seconds": time.perf_counter() - started,
                "versions": {"optillm": version("optillm"), "openai": version("openai")},
                "concurrency": workers,
            }
        )
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(solve, client, args, job["system"], p) for p in job["problems"]]
            for done in as_completed(futures):
                emit(done.result())
    finally:
        stop(proc)


def emit(row: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
