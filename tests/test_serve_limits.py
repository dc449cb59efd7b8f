"""`ponder serve`: one request cannot go past its key's limits through a strategy's options,
and a strategy's bill is bounded even when the key sets no budget."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from helpers import no_sleep
from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities
from ponder.lm.scripted import ScriptedLM
from ponder.runtime.budget import Budget
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.runtime.strategy import STRATEGIES, make_strategy
from ponder.serve import Keys, Limits, create_app
from ponder.serve.auth import ApiKey
from ponder.serve.protocol import ChatRequest
from ponder.serve.routing import BUDGET_FACTOR, multiplies, resolve
from ponder.types import GenRequest
from serving import running
from test_serve import MODEL, ask, scripted

# Strategies whose one multiplier is their sample count.
SAMPLERS = (
    "sample",
    "vote",
    "best_of_n",
    "weighted_vote",
    "confidence_vote",
    "deepconf_filter",
    "certainty_borda",
    "adaptive",
    "deepconf",
)
# Every strategy's options that multiply its work (capped by max_n), as the fields mark them.
MULTIPLIERS = {
    "greedy": set(),
    "auto": {"n"},
    **{name: {"n"} for name in SAMPLERS},
    "cross_vote": {"n", "programs"},
    "refine": {"rounds"},
    "beam": {"n", "m", "max_steps"},
    "dvts": {"n", "m", "max_steps"},
    "lookahead": {"n", "m", "k", "max_steps"},
    "step_bon": {"n", "max_steps"},
    "particles": {"n", "max_steps"},
    "particle_gibbs": {"n", "iterations", "max_steps"},
    "mcts": {"iterations", "k", "max_steps"},
}


def marked(name: str) -> set[str]:
    fields = STRATEGIES.get(name).obj.model_fields
    return {k for k, f in fields.items() if multiplies(f)}


def test_the_options_that_multiply_the_work_are_marked() -> None:
    assert {name: marked(name) for name in STRATEGIES} == MULTIPLIERS
    for name in STRATEGIES:  # a width is a multiplier wherever there is one
        width = STRATEGIES.get(name).obj.width
        assert width is None or width in marked(name), name


def limited_server(limits: Limits) -> tuple[Any, ScriptedLM]:
    engine, lm = scripted()
    return running(create_app(engine, limits=limits)), lm


def test_each_option_over_the_keys_limits_is_413_naming_it_before_any_work() -> None:
    limits = Limits(max_n=4, max_tokens=64)
    server, lm = limited_server(limits)
    over: list[tuple[str, str, int, str]] = []  # strategy, option, value, the limit's name
    for name in STRATEGIES:
        fields = STRATEGIES.get(name).obj.model_fields
        over += [(name, key, limits.max_n + 1, "max_n") for key in marked(name)]
        tokens = [k for k, f in fields.items() if k.endswith("_tokens") and f.annotation is int]
        over += [(name, key, limits.max_tokens + 1, "max_tokens") for key in tokens]
    assert len(over) > 30
    refused = set()
    with server as url:
        for name, key, value, limit in over:
            width = STRATEGIES.get(name).obj.width
            # the width within the limit (some defaults are over 4), this option over it
            # (dvts: with m 1, which divides any n)
            fits = {width: limits.max_n} if width else {}
            options = {**fits, **({"m": 1} if name == "dvts" else {}), key: value}
            try:
                make_strategy(name, **options)
            except UsageError:  # (dvts: m must divide n, which its own cap bounds)
                assert (name, key) == ("dvts", "m")
                continue
            ponder = {"strategy": name, "options": options}
            r = httpx.post(
                f"{url}/chat/completions",
                json={"model": MODEL, "messages": ask(), "ponder": ponder},
                timeout=30,
            )
            assert r.status_code == 413, (name, key, r.text)
            error = r.json()["error"]
            assert error["param"] == f"ponder.options.{key}"
            cap = limits.max_n if limit == "max_n" else limits.max_tokens
            assert f"{value} exceeds this key's limit {cap} ({limit})" in error["message"]
            refused.add((name, key))
        assert ("beam", "m") in refused and ("refine", "critique_tokens") in refused
        # the width is held to max_n even when the strategy's default sets it
        r = httpx.post(
            f"{url}/chat/completions", json={"model": f"vote/{MODEL}", "messages": ask()}
        )
        assert r.status_code == 413 and r.json()["error"]["param"] == "ponder.n"
        assert r.json()["error"]["message"].startswith("n 8 (strategy vote's default; ")
        assert lm.calls == []  # each refused before any work
        # at the limits themselves the request is served
        at = {"n": 4, "m": 4, "max_steps": 4, "max_step_tokens": 64}
        r = httpx.post(
            f"{url}/chat/completions",
            json={"model": MODEL, "messages": ask(), "ponder": {"strategy": "beam", "options": at}},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["ponder"]["config"]["m"] == 4


def endless(req: GenRequest, index: int, rng: random.Random) -> str:
    """A step that never reaches an answer: a step search goes as deep as it may."""
    return "Yes" if req.role == "verifier" else "Let me think about it some more.\n\n"


def test_the_default_budget_stops_a_search_that_stays_within_the_limits() -> None:
    caps = Capabilities(slots=8, n_with_stop=True, raw_prefix=True, context_length=256)
    lm = ScriptedLM(endless, capabilities=caps)
    engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
    limits = Limits(max_n=8, max_tokens=64)
    default = BUDGET_FACTOR * 8 * (64 + 256)  # the prompt limit: the context length
    keys = Keys(
        [
            ApiKey("plain", "sk-default", limits),
            ApiKey("rich", "sk-rich", limits.model_copy(update={"max_budget_tokens": 10**9})),
        ]
    )
    # every option within the key's limits, the question long: it would spend far more
    question = "What is 6 * 7? " + "Think it over with care. " * 6
    options = {"n": 8, "m": 8, "max_steps": 8, "max_step_tokens": 64}
    body = {
        "model": MODEL,
        "messages": ask(question),
        "ponder": {"strategy": "beam", "options": options},
    }

    def post(key: str, **ponder: Any) -> httpx.Response:
        sent = {**body, "ponder": {**body["ponder"], **ponder}}  # type: ignore[dict-item]
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.post(f"{url}/chat/completions", json=sent, headers=headers, timeout=120)

    with running(create_app(engine, keys=keys)) as url:
        r = post("sk-default")
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
        assert usage["ponder"]["stopped"] == "budget"
        assert r.json()["choices"][0]["finish_reason"] == "length"
        assert default / 2 < usage["total_tokens"] <= default
        # the key's own cap replaces the default: the same request spends more under it
        rich = post("sk-rich").json()["usage"]
        assert rich["total_tokens"] > default
        # a budget asked past the default is refused, naming where the cap comes from
        too_much = post("sk-default", budget={"tokens": default + 1})
        assert too_much.status_code == 413
        error = too_much.json()["error"]
        assert error["param"] == "ponder.budget.tokens"
        assert f"limit {default} (without max_budget_tokens" in error["message"]


def test_only_a_strategy_gets_the_default_budget() -> None:
    limits = Limits(max_n=2, max_tokens=10)
    default = BUDGET_FACTOR * 2 * (10 + 100)

    def budget(model: str, **extra: Any) -> Budget | None:
        req = ChatRequest.model_validate({"model": model, "messages": ask(), **extra})
        return resolve(req, MODEL, limits, prompt_tokens=100).budget

    assert budget(f"vote-2/{MODEL}") == Budget(tokens=default)
    assert budget(f"vote-2/{MODEL}", ponder={"budget": {"seconds": 5}}) == Budget(
        tokens=default, seconds=5
    )
    # a plain request is bounded by n, max_tokens and its prompt: no budget but its own
    assert budget(MODEL) is None
    assert budget(MODEL, ponder={"budget": {"seconds": 5}}) == Budget(seconds=5)


@pytest.mark.parametrize(
    "ponder",
    [{"budget": {"tokenz": 10}}, {"budget": {"tokens": 10, "bogus": 1}}],
)
def test_a_misspelt_budget_cap_is_400_naming_it(ponder: dict[str, Any]) -> None:
    server, lm = limited_server(Limits())
    with server as url:
        r = httpx.post(
            f"{url}/chat/completions",
            json={"model": f"vote-2/{MODEL}", "messages": ask(), "ponder": ponder},
        )
    bad = next(k for k in ponder["budget"] if k != "tokens")
    assert r.status_code == 400 and r.json()["error"]["param"] == f"ponder.budget.{bad}"
    assert lm.calls == []
