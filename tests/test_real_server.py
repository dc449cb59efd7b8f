"""Step search through a real llama.cpp HTTP server (issue 28): llama.cpp's server engine in
server mode (xllamacpp, the embedded model's file, one thread, 127.0.0.1), reached only by its
URL, as `--base-url` reaches it. Kept short: one GSM8K problem, width 2, three steps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import run_ponder
from ponder.lm import BackendConfig, open_backend
from ponder.lm.continuation import render_template
from ponder.lm.llamacpp import LlamaCppLM
from ponder.lm.openai import OpenAILM
from ponder.lm.registry import DEFAULT_MODEL, MODELS
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.tasks.registry import get_task
from ponder.types import Message

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[LlamaCppLM]:
    lm = LlamaCppLM(model_path, MODELS[DEFAULT_MODEL].info(), slots=4, ctx_per_slot=1024, threads=1)
    yield lm
    lm.close()


def counters(url: str) -> dict[str, float]:
    """The server's own Prometheus counters, read over HTTP like any client would."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.removeprefix("llamacpp:")] = float(value)
    return out


async def test_step_searches_through_a_real_llamacpp_server(server: LlamaCppLM) -> None:
    url = server.http_url
    probe = run_ponder("models", "probe", url, "--json", timeout=120)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["continuation"] == "apply-template" and found["pin_slots"]
    assert found["slots"] == 4 and found["raw_completions"] and found["logprobs"]
    assert found["spent"]["calls"] >= 2 and found["spent"]["completion_tokens"] > 0

    lm = open_backend(BackendConfig(base_url=url))  # what `--base-url URL` opens
    assert isinstance(lm, OpenAILM)
    caps = await lm.prepare()  # the probe's own tokens are not the searches': taken here
    assert lm.take_probe_usage().completion_tokens > 0
    assert caps.continuation == "apply-template" and caps.render and caps.pin_slots
    # the template /props gives, rendered here, is what the server renders
    convo = [Message(role="system", content="Be brief."), Message(role="user", content="2+2?")]
    if lm.props and lm.props.get("chat_template"):
        pytest.importorskip("jinja2")
        assert render_template(lm.props["chat_template"], convo) == await lm.render(convo)

    (problem,) = get_task("gsm8k").load(limit=1)
    engine = Engine(lm, prompting=Prompting(max_tokens=96))
    searches = [
        ("beam", {"n": 2, "m": 1}),
        ("particles", {"n": 2}),
        ("mcts", {"iterations": 2, "k": 2}),
    ]
    for name, options in searches:
        before = counters(url)
        r = await engine.solve(problem, name, seed=0, max_steps=3, max_step_tokens=64, **options)
        after = counters(url)
        assert r.error is None, (name, r.error)
        tree = r.info["tree"]
        assert len(tree) > 1 and any(n["terminal"] for n in tree), name
        # ponder's bill equals what the server says it computed: every generated token, and
        # every prompt token it evaluated (the rest came from its cache)
        predicted = after["tokens_predicted_total"] - before["tokens_predicted_total"]
        evaluated = after["prompt_tokens_total"] - before["prompt_tokens_total"]
        assert r.total.completion_tokens == predicted, name
        assert r.total.prompt_tokens - r.total.cached_tokens == evaluated, name
        # the steps went as raw prompts continuing the rendered conversation
        assert r.total.calls > 2
    await lm.aclose()
