"""Step search on servers shaped like llama.cpp's, vLLM's and a chat-only one (issue 28): the
probe finds how each continues a partial solution, every step strategy runs there with
exactly the tokens the server counted, and a server that gets continuation wrong is caught
by the probe with an error naming the server and the method."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from helpers import no_sleep, run_ponder
from ponder.errors import BackendError, UsageError
from ponder.lm import BackendConfig, open_backend
from ponder.lm.continuation import judge_chat_continuations, render_template
from ponder.lm.openai import OpenAILM
from ponder.runtime.engine import Engine
from ponder.runtime.scheduler import Scheduler
from ponder.serve import create_app
from ponder.types import Message, Problem
from serving import running
from shaped_server import JINJA, MODEL, QUESTION, RIGHT, WRONG, ShapedServer, policy, render

PROBLEM = Problem(question=QUESTION, kind="number")
NO_TEMPLATES = {"no-apply-template", "no-props-template", "no-completions"}


@pytest.mark.parametrize(
    ("shape", "faults", "method"),
    [
        ("llamacpp", set(), "apply-template"),
        ("vllm", set(), "tokenize"),
        ("chat-only", set(), "continue-final"),
        ("vllm", {"no-tokenize"}, "continue-final"),
        ("vllm", {"no-completions"}, "continue-final"),
        ("llamacpp", {"no-apply-template"}, "local-template"),
        ("llamacpp", NO_TEMPLATES, "prefill-echo"),
    ],
)
async def test_the_probe_picks_the_most_exact_method_each_server_offers(
    shape: str, faults: set[str], method: str
) -> None:
    if method == "local-template":
        pytest.importorskip("jinja2")
    async with ShapedServer(shape, faults=faults) as srv:
        lm = OpenAILM(srv.url)
        caps = await lm.prepare()
        await lm.aclose()
    assert lm.continuation == caps.continuation == method
    assert caps.render is (method in ("apply-template", "tokenize", "local-template"))
    assert caps.continue_final is (method in ("continue-final", "prefill-echo"))
    # every more exact method was tried first, and the note says why each failed
    tried = [a.method for a in lm.attempts]
    assert tried[-1] == method and all(not a.ok for a in lm.attempts[:-1])
    assert caps.continuation_note is not None and srv.url in caps.continuation_note
    # llama.cpp says how many slots it has: requests are pinned where their prefix is
    assert caps.pin_slots is (shape == "llamacpp")
    if shape == "llamacpp":
        assert caps.slots == 4 and caps.context_length == 2048


@pytest.mark.parametrize(
    ("shape", "faults"),
    [
        ("llamacpp", set()),
        ("vllm", set()),
        ("chat-only", set()),
        ("llamacpp", NO_TEMPLATES),  # prefill-echo
    ],
)
@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        ("beam", {"n": 2, "m": 2}),
        ("particles", {"n": 3}),
        ("mcts", {"iterations": 4, "k": 2}),
    ],
)
async def test_step_search_runs_on_each_server_counting_what_it_counted(
    shape: str, faults: set[str], strategy: str, options: dict[str, int]
) -> None:
    async with ShapedServer(shape, faults=faults) as srv:
        lm = open_backend(BackendConfig(base_url=srv.url))  # what --base-url opens
        before = srv.metrics()  # (the probe's requests are on the bill too, as role "probe")
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
        r = await engine.solve(PROBLEM, strategy, seed=1, **options)
        spent = {k: v - before[k] for k, v in srv.metrics().items()}
        await lm.aclose()
    assert r.error is None and r.answer in ("18", "21")
    tree = r.info["tree"]
    assert any(n["terminal"] for n in tree) and any(n["selected"] for n in tree)
    # every step continued its own path: no node repeats its parent's text (an echo kept) and
    # no path restarts (the partial message ignored)
    depth = {0: 0}
    for node in tree[1:]:
        depth[node["id"]] = d = depth[node["parent"]] + 1
        if node["step"] and not node["rollout"]:
            assert node["step"] in (RIGHT[d - 1], WRONG[d - 1]), node
    # ponder's bill is what the server computed, the probe's calls included: each choice's
    # own tokens, prompt tokens net of the server's cache
    assert r.usage["probe"].calls >= 2
    assert r.total.completion_tokens == spent["predicted"]
    assert r.total.prompt_tokens - r.total.cached_tokens == spent["prompt"]
    if shape == "llamacpp" and not faults:
        pinned = [b for p, b in srv.requests if p == "/v1/completions" and "id_slot" in b]
        assert pinned and all(b["cache_prompt"] is True for b in pinned)
    if shape == "llamacpp" and faults:
        continued = [b for p, b in srv.requests if p == "/v1/chat/completions"]
        assert any(b["messages"][-1]["role"] == "assistant" for b in continued)


async def test_a_right_answer_is_found_on_each_server_shape() -> None:
    for shape in ("llamacpp", "vllm", "chat-only"):
        async with ShapedServer(shape) as srv:
            lm = OpenAILM(srv.url)
            r = await Engine(lm, scheduler=Scheduler(sleep=no_sleep)).solve(
                PROBLEM, "beam", n=2, m=2, seed=1
            )
            await lm.aclose()
        assert r.answer == "18", shape


def calls_python(text: str, index: int, seed: int) -> str:
    """A model that writes a Python block, then reads its output and answers (and answers
    the probe's own checks as the other tests' model does)."""
    if PROBLEM.question not in text:
        return policy(text, index, seed)
    if "```output" in text.rsplit("<|im_start|>assistant", 1)[-1]:  # what it wrote so far
        return "So the answer is \\boxed{42}."
    return "Let me compute.\n```python\nprint(6 * 7)\n```"


@pytest.mark.parametrize("shape", ["llamacpp", "vllm", "chat-only"])
async def test_tool_integrated_reasoning_runs_on_a_server_not_yet_probed(shape: str) -> None:
    """The first thing asked of a fresh server is a tool-integrated sample: how its later
    rounds continue the text is learnt from the probe, not assumed from before it."""
    async with ShapedServer(shape, model_policy=calls_python) as srv:
        lm = OpenAILM(srv.url)
        engine = Engine(lm, scheduler=Scheduler(sleep=no_sleep))
        r = await engine.solve(PROBLEM, "greedy", answer_with="tir", seed=0)
        await lm.aclose()
    (cand,) = r.candidates
    assert r.error is None and r.answer == "42", shape
    assert [c.output for c in cand.tool_calls] == ["42"] and "```output\n42\n```" in cand.text


# -- bad input ---------------------------------------------------------------------------------
async def search_error(srv: ShapedServer) -> str:
    lm = OpenAILM(srv.url)
    with pytest.raises(UsageError) as e:
        await Engine(lm, scheduler=Scheduler(sleep=no_sleep)).solve(PROBLEM, "beam", seed=0)
    await lm.aclose()
    return str(e.value)


async def test_a_server_echoing_the_prefix_inconsistently_is_caught() -> None:
    async with ShapedServer("llamacpp", faults={*NO_TEMPLATES, "echo-inconsistent"}) as srv:
        message = await search_error(srv)
    assert srv.url in message
    assert "continue-final/prefill-echo: no (echoes the partial message inconsistently" in message


async def test_a_server_ignoring_the_partial_message_is_caught() -> None:
    async with ShapedServer("vllm", faults={"no-tokenize", "ignores-partial"}) as srv:
        message = await search_error(srv)
    assert srv.url in message
    assert "continue-final/prefill-echo: no (ignores the partial assistant message" in message
    assert "tokenize: no (" in message and "/tokenize: HTTP 404" in message


async def test_a_template_route_that_errors_is_named_and_passed_over() -> None:
    # nothing else to fall back on: the error names the route's failure
    faults = {"apply-template-500", "no-props-template", "ignores-partial"}
    async with ShapedServer("llamacpp", faults=faults) as srv:
        message = await search_error(srv)
    assert srv.url in message
    assert "apply-template: no (" in message and "HTTP 500: template error" in message
    # a chat continuation to fall back on: used, and the failure is still on record
    async with ShapedServer("llamacpp", faults={"apply-template-500", "no-props-template"}) as srv:
        lm = OpenAILM(srv.url)
        caps = await lm.prepare()
        await lm.aclose()
    assert caps.continuation == "prefill-echo"
    assert "apply-template: no (" in (caps.continuation_note or "")


async def test_a_template_that_renders_no_conversation_is_caught() -> None:
    faults = {"apply-template-garbage", "no-props-template", "no-completions"}
    async with ShapedServer("llamacpp", faults=faults - {"no-completions"}) as srv:
        lm = OpenAILM(srv.url)
        caps = await lm.prepare()
        await lm.aclose()
    assert caps.continuation == "prefill-echo"
    assert "apply-template: no (the rendered text lacks the conversation" in (
        caps.continuation_note or ""
    )


async def test_an_echo_that_breaks_after_the_probe_fails_naming_the_server_and_method() -> None:
    async with ShapedServer("llamacpp", faults={*NO_TEMPLATES, "echo-breaks"}) as srv:
        lm = OpenAILM(srv.url)
        r = await Engine(lm, scheduler=Scheduler(sleep=no_sleep)).solve(PROBLEM, "beam", seed=0)
        await lm.aclose()
    assert lm.continuation == "prefill-echo"
    # a continuation the server did not echo is never taken for one: the steps fail, saying why
    assert r.error is not None or any(
        "prefill-echo" in (n["note"] or "") for n in r.info.get("tree", [])
    )
    failure = r.error or ""
    assert (
        srv.url in failure and "(prefill-echo): a reply did not begin with the partial" in failure
    )


async def test_a_template_route_failing_later_names_the_server_and_method() -> None:
    async with ShapedServer("llamacpp") as srv:
        lm = OpenAILM(srv.url)
        await lm.prepare()
        srv.faults = frozenset({"apply-template-500"})
        with pytest.raises(BackendError, match=r"apply-template rendering on http://127.*HTTP 500"):
            await lm.render([Message(role="user", content="another question")])
        await lm.aclose()


def test_chat_continuations_are_judged_by_what_follows_the_partial() -> None:
    a, b = ("1, 2, 3, 4, 5, 6,", 7), ("1, 2, 3,", 4)
    assert judge_chat_continuations([(a[0], " 7, 8,", 7), (b[0], " 4, 5", 4)])[0] == (
        "continue-final"
    )
    echoed = [(a[0], a[0] + " 7, 8", 7), (b[0], b[0] + " 4", 4)]
    assert judge_chat_continuations(echoed)[0] == "prefill-echo"
    # starting the count over looks like an echo of the short partial, not of the long one
    method, why = judge_chat_continuations([(a[0], "1, 2, 3, 4,", 7), (b[0], "1, 2, 3, 4,", 4)])
    assert method is None and "ignores the partial assistant message" in why
    method, why = judge_chat_continuations([(a[0], a[0] + " 7", 7), (b[0], " 4,", 4)])
    assert method is None and "inconsistently" in why


def test_the_local_template_renders_as_the_server_does() -> None:
    pytest.importorskip("jinja2")
    msgs = [Message(role="system", content="s"), Message(role="user", content="q")]
    assert render_template(JINJA, msgs) == render([m.model_dump() for m in msgs])
    bad = "{{ raise_exception('no system role') }}"
    with pytest.raises(Exception, match="no system role"):
        render_template(bad, msgs)


# -- serve --upstream and the command line -----------------------------------------------------
@pytest.mark.parametrize("shape", ["llamacpp", "vllm", "chat-only"])
async def test_serve_upstream_runs_step_strategies_on_each_server(shape: str) -> None:
    async with ShapedServer(shape) as srv:
        engine = Engine(open_backend(BackendConfig(base_url=srv.url)))
        app = create_app(engine, close_engine=True)

        def ask(models: list[str]) -> list[openai.types.chat.ChatCompletion]:
            with running(app) as url:
                client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
                return [
                    client.chat.completions.create(
                        model=m, messages=[{"role": "user", "content": QUESTION}], seed=1
                    )
                    for m in models
                ]

        strategies = ["beam-2", "particles-2", "mcts-3"]
        answers = await asyncio.to_thread(ask, [f"{s}/{MODEL}" for s in strategies])
    for strategy, r in zip(strategies, answers, strict=True):
        extra = r.usage.model_extra["ponder"]  # type: ignore[union-attr]
        assert extra["strategy"] == strategy.split("-")[0]
        assert "\\boxed{" in (r.choices[0].message.content or "")
    steps = [b for p, b in srv.requests if "\n\n" in (b.get("stop") or [])]
    assert steps  # the upstream wrote the steps


async def test_models_probe_prints_what_the_server_supports() -> None:
    async with ShapedServer("llamacpp") as srv:
        proc = await asyncio.to_thread(run_ponder, "models", "probe", srv.url, "--json")
        assert proc.returncode == 0, proc.stderr
        found = json.loads(proc.stdout)
        assert found["continuation"] == "apply-template" and found["model"] == MODEL
        assert found["n"] and found["logprobs"] and found["raw_completions"]
        assert found["pin_slots"] and found["slots"] == 4
        assert found["tried"] == [
            {"method": "apply-template", "ok": True, "detail": found["continuation_how"]}
        ]
        text = await asyncio.to_thread(run_ponder, "models", "probe", srv.url)
        assert "continuation: apply-template" in text.stdout
    async with ShapedServer("vllm", faults={"no-tokenize", "ignores-partial"}) as srv:
        text = await asyncio.to_thread(run_ponder, "models", "probe", srv.url)
    assert text.returncode == 0 and "continuation: none" in text.stdout
    assert "ignores the partial assistant message" in text.stdout


async def test_solve_verbose_says_how_the_server_continues_and_a_bad_one_fails_clearly() -> None:
    async with ShapedServer("vllm") as srv:
        args = ("solve", QUESTION, "--base-url", srv.url, "-s", "beam", "-n", "2", "--seed", "1")
        proc = await asyncio.to_thread(run_ponder, *args, "-v")
    assert proc.returncode == 0, proc.stderr
    assert "continuation: tokenize" in proc.stderr and "18" in proc.stdout
    async with ShapedServer("chat-only", faults={"ignores-partial"}) as srv:
        proc = await asyncio.to_thread(run_ponder, *args[:3], srv.url, *args[4:])
    assert proc.returncode == 2
    assert "error: step search continues a partial solution" in proc.stderr
    assert srv.url in proc.stderr and "ignores the partial assistant message" in proc.stderr
