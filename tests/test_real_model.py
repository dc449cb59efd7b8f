"""End-to-end truth on the embedded model (llama.cpp in-process, CPU). Kept small for CI."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import run_ponder
from ponder.lm.llamacpp import LlamaCppLM
from ponder.lm.openai import OpenAILM
from ponder.lm.registry import DEFAULT_MODEL, MODELS
from ponder.runtime.budget import Ledger
from ponder.runtime.engine import Engine
from ponder.runtime.prompting import Prompting
from ponder.runtime.scheduler import Scheduler
from ponder.search.tree import STEP_SEPARATOR
from ponder.tasks.registry import get_task
from ponder.types import GenRequest, Message, TokenLogprob

pytestmark = pytest.mark.model

STOPS = [STEP_SEPARATOR, "```output"]


@pytest.fixture(scope="module")
def llama(model_path: Path) -> Iterator[LlamaCppLM]:
    lm = LlamaCppLM(model_path, MODELS[DEFAULT_MODEL].info(), slots=4, ctx_per_slot=1024)
    yield lm
    lm.close()


@pytest.fixture
async def engine(llama: LlamaCppLM) -> AsyncIterator[Engine]:
    yield Engine(llama, prompting=Prompting(max_tokens=160))


async def test_vote_on_real_gsm8k_counts_every_choice(llama: LlamaCppLM, engine: Engine) -> None:
    problems = get_task("gsm8k").load(limit=2)
    before = llama.metrics()["tokens_predicted_total"]
    # (room to reach the answer: a sample cut off before it states one has none)
    roomy = Prompting(max_tokens=320)
    results = [await engine.solve(p, "vote", n=4, seed=1, prompting=roomy) for p in problems]
    generated = llama.metrics()["tokens_predicted_total"] - before
    for r in results:
        assert r.error is None and len(r.candidates) == 4
        # each sample's answer is the one it states, or its note says why it has none
        assert all(c.answer is not None or "no answer" in (c.note or "") for c in r.candidates)
        votes = r.info["votes"]
        assert r.answer == (max(votes, key=votes.get) if votes else None)
        assert r.total.calls == 1 and r.total.prompt_tokens > 50
        # the ledger's count is the sum over all four choices, not llama.cpp's one-choice usage
        assert r.total.completion_tokens == sum(c.completion_tokens for c in r.candidates)
        assert r.total.flops == 2 * MODELS[DEFAULT_MODEL].parameters * (
            r.total.prompt_tokens - r.total.cached_tokens + r.total.completion_tokens
        )
    assert any(c.answer is not None for r in results for c in r.candidates)  # answers were read
    # and it matches what the server itself says it generated
    assert sum(r.total.completion_tokens for r in results) == generated


async def test_greedy_is_stable_and_budget_caps_real_tokens(engine: Engine) -> None:
    q = "What is 12 times 3? Answer with a number."
    r = await engine.solve(q, "greedy", seed=0)
    assert r.answer == "36"
    capped = await engine.solve(q, "vote", n=8, seed=0, budget={"tokens": 700})
    assert capped.total.total_tokens <= 700
    assert 0 < len(capped.candidates) < 8 and capped.stopped == "budget"


async def test_openai_backend_against_embedded_llamacpp_http(llama: LlamaCppLM) -> None:
    lm = OpenAILM(llama.http_url, slots=4)
    engine = Engine(lm, scheduler=Scheduler(), prompting=Prompting(max_tokens=48))
    await lm.prepare()  # the probe's own few tokens are not the vote's: taken here
    assert lm.take_probe_usage().completion_tokens > 0
    before = llama.metrics()["tokens_predicted_total"]
    r = await engine.solve("What is 7 + 5? Give the number in \\boxed{}.", "vote", n=3, seed=2)
    generated = llama.metrics()["tokens_predicted_total"] - before
    await lm.aclose()
    assert lm.capabilities.n and lm.capabilities.logprobs and lm.capabilities.raw_prefix
    assert r.error is None and len(r.candidates) == 3
    # llama.cpp's HTTP usage counts one choice; ours counts all three, like its own metrics
    assert r.total.completion_tokens == sum(c.completion_tokens for c in r.candidates)
    assert generated == r.total.completion_tokens
    assert lm.continuation == "apply-template" and lm.capabilities.pin_slots


def test_cli_solve_json_on_the_embedded_model() -> None:
    proc = run_ponder(
        "solve",
        "What is 9 + 10?",
        "-s",
        "vote",
        "-n",
        "2",
        "--seed",
        "4",
        "--max-tokens",
        "96",
        "--slots",
        "2",
        "--json",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["strategy"] == "vote" and data["seed"] == 4 and len(data["candidates"]) == 2
    assert data["usage"]["total"]["completion_tokens"] == sum(
        c["completion_tokens"] for c in data["candidates"]
    )
    assert data["model"] == DEFAULT_MODEL


def test_cli_bench_stores_every_token_and_report_draws_it(tmp_path: Path) -> None:
    store = tmp_path / "real.sqlite"
    args = ["bench", "gsm8k", "--limit", "1", "-s", "greedy", "-s", "weighted_vote", "-n", "2"]
    args += ["--verifier", "self_judge", "--max-tokens", "160", "--store", str(store)]
    proc = run_ponder(*args, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "weighted_vote" in proc.stdout and "greedy" in proc.stdout
    db = sqlite3.connect(store)
    (units, judged, policy, cands) = db.execute(
        "SELECT COUNT(*), SUM(verifier_prompt > 0), SUM(policy_completion),"
        " (SELECT SUM(completion_tokens) FROM candidates) FROM units"
    ).fetchone()
    assert units == 3 and judged == 2  # the two pool samples were judged, greedy was not
    assert policy == cands > 0  # every generated token is in the store, once
    (sha,) = db.execute("SELECT DISTINCT model_sha256 FROM runs").fetchone()
    assert sha == MODELS[DEFAULT_MODEL].sha256
    db.close()
    again = run_ponder(*args, timeout=600)  # resumes: nothing left to compute
    assert again.returncode == 0, again.stderr
    assert sqlite3.connect(store).execute("SELECT COUNT(*) FROM units").fetchone()[0] == 3
    report = run_ponder("report", str(store), "--out", str(tmp_path / "rep"), timeout=120)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "scaling_gsm8k_qwen2-5-coder-0-5b_tokens.png").stat().st_size > 0


async def test_choices_cut_by_a_stop_string_are_counted_exactly(llama: LlamaCppLM) -> None:
    # llama.cpp trims a stop string's tokens from the logprobs; the ledger must add them back
    req = GenRequest(
        prompt="Count in words: one, two, three, four,",
        n=3,
        max_tokens=20,
        temperature=0.3,
        seed=5,
        stop=[" six"],
    )
    ledger = Ledger()
    before = llama.metrics()["tokens_predicted_total"]
    gen = await Scheduler().generate(llama, req, ledger)
    generated = llama.metrics()["tokens_predicted_total"] - before
    assert ledger.spent.calls == 1  # one request of 3 choices: each adds back " six"
    assert any(c.finish_reason == "stop" and c.completion_tokens < 20 for c in gen.choices)
    assert ledger.spent.completion_tokens == generated


async def test_steps_cut_by_one_of_two_stop_strings_are_counted_exactly(llama: LlamaCppLM) -> None:
    # A step search's stops: the blank line (1 token) and a program's output fence (2); the
    # blank line often merges into the token before it (".\n\n"). Counting a single choice as
    # its logprobs plus the longer stop overcounted each step by a token.
    head = await llama.render(
        [
            Message(
                role="user",
                content=get_task("gsm8k").load(limit=1)[0].question + " Think step by step.",
            )
        ]
    )
    ledger = Ledger()
    scheduler = Scheduler()
    before = llama.metrics()["tokens_predicted_total"]
    gens = [
        await scheduler.generate(
            llama,
            GenRequest(prompt=head, max_tokens=96, temperature=0.7, seed=seed, stop=STOPS),
            ledger,
        )
        for seed in range(4)
    ]
    generated = llama.metrics()["tokens_predicted_total"] - before
    assert sum(g.choices[0].finish_reason == "stop" for g in gens) >= 2  # cut at a blank line
    assert ledger.spent.completion_tokens == generated
    # n > 1 with both stops is fanned out (llama.cpp does not say which stop cut a choice)
    before = llama.metrics()["tokens_predicted_total"]
    many = Ledger()
    req = GenRequest(prompt=head, n=2, max_tokens=48, temperature=0.7, seed=9, stop=STOPS)
    await scheduler.generate(llama, req, many)
    assert many.spent.calls == 2
    assert many.spent.completion_tokens == llama.metrics()["tokens_predicted_total"] - before


def test_public_api_solve_on_the_default_model() -> None:
    import ponder

    r = ponder.solve("What is 12 times 3? Answer with a number.", strategy="greedy", n=8, seed=0)
    assert isinstance(r, ponder.Result)
    assert r.answer == "36" and r.strategy == "greedy" and r.seed == 0
    assert r.config == {"answer_with": "reasoning"}  # greedy takes no n: none is forced on it
    assert set(r.usage) == {"policy"} and r.usage["policy"].calls == 1
    data = json.loads(r.to_json())
    assert data["usage"]["total"]["completion_tokens"] == r.candidates[0].completion_tokens


async def test_best_of_n_with_the_self_judge_bills_exactly_what_the_server_computed(
    llama: LlamaCppLM, engine: Engine
) -> None:
    problem = get_task("gsm8k").load(limit=1)[0]
    before = llama.metrics()
    r = await engine.solve(problem, "best_of_n", n=4, seed=3, verifier="self_judge")
    after = llama.metrics()
    assert r.error is None and len(r.candidates) == 4
    scores = [c.score for c in r.candidates]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores), [c.note for c in r.candidates]
    assert r.answer == r.candidates[scores.index(max(scores))].answer  # type: ignore[type-var]
    assert r.usage["verifier"].calls == 4 and r.usage["verifier"].completion_tokens == 4
    # every token the server prefilled or generated is on the bill, by role
    prefilled = sum(u.prompt_tokens - u.cached_tokens for u in r.usage.values())
    assert prefilled == after["prompt_tokens_total"] - before["prompt_tokens_total"]
    decoded = sum(u.completion_tokens for u in r.usage.values())
    assert decoded == after["tokens_predicted_total"] - before["tokens_predicted_total"]
    # the judge continued each candidate's conversation, so most of its prompt was cached
    assert r.usage["verifier"].cached_tokens > 0.5 * r.usage["verifier"].prompt_tokens


async def test_pal_runs_the_models_program_in_the_sandbox(engine: Engine) -> None:
    r = await engine.solve("What is 17 * 23 + 9?", "greedy", answer_with="program", seed=0)
    c = r.candidates[0]
    assert "```python" in c.text, c.text
    assert c.program_answer == "400" and r.answer == "400", (c.text, c.note)


async def test_process_self_judge_prefills_only_each_new_step(llama: LlamaCppLM) -> None:
    from ponder.runtime.context import Context
    from ponder.runtime.verifiers import Verifiers
    from ponder.verify.judge import SelfJudge

    ctx = Context(
        policy=llama, scheduler=Scheduler(), ledger=Ledger(), seed=0, verifiers=Verifiers()
    )
    steps = [
        "Natalia sold 48 clips in April.",
        "In May she sold half as many: 48 / 2 = 24 clips.",
        "Altogether she sold 48 + 24 = 72 clips.",
    ]
    problem = get_task("gsm8k").load(limit=1)[0]
    judge = SelfJudge()
    await judge.score_steps(problem, steps[:1], ctx)
    before = llama.metrics()["prompt_tokens_total"]
    verdicts = await judge.score_steps(problem, steps, ctx)
    prefilled = llama.metrics()["prompt_tokens_total"] - before
    assert all(v.score is not None for v in verdicts)
    assert ctx.ledger.by_role()["verifier"].calls == 3  # the first step was not asked again
    # two new steps of ~15 tokens each, plus a 3-token cue and a label per step
    assert prefilled < 60, prefilled


def test_serve_on_the_embedded_model_with_the_stock_openai_client(llama: LlamaCppLM) -> None:
    import asyncio

    import openai

    from ponder.serve import create_app
    from serving import running

    engine = Engine(llama, prompting=Prompting(max_tokens=160))
    q = [{"role": "user", "content": "What is 12 times 3? Answer with a number."}]
    with running(create_app(engine)) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        assert model == DEFAULT_MODEL
        before = llama.metrics()["tokens_predicted_total"]
        r = client.chat.completions.create(model=f"vote-2/{model}", messages=q, seed=3)  # type: ignore[arg-type]
        generated = llama.metrics()["tokens_predicted_total"] - before
        ponder = r.usage.model_extra["ponder"]  # type: ignore[union-attr]
        assert ponder["strategy"] == "vote" and ponder["candidates"] == 2
        assert r.usage.completion_tokens == generated  # type: ignore[union-attr]
        assert ponder["answer"] is not None and ponder["answer"] in r.choices[0].message.content  # type: ignore[operator]

        async def streamed() -> list[str]:
            aclient = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
            stream = await aclient.chat.completions.create(
                model=model,
                messages=q,
                stream=True,
                temperature=0.0,
                max_tokens=32,  # type: ignore[arg-type]
            )
            texts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            await aclient.close()
            return texts

        assert "36" in "".join(asyncio.run(streamed()))


def test_a_disconnected_stream_stops_the_embedded_generation(model_path: Path) -> None:
    import httpx

    from ponder.serve import create_app
    from serving import running

    # its own model: requests go through llama.cpp's HTTP endpoint, so they can be stopped
    lm = LlamaCppLM(model_path, MODELS[DEFAULT_MODEL].info(), slots=1, cancellable=True)
    engine = Engine(lm, prompting=Prompting(max_tokens=400))
    question = "Tell a very long story about a dragon, with many chapters."
    body = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": question}]}
    try:
        with running(create_app(engine)) as url:
            before = lm.metrics()["tokens_predicted_total"]
            with httpx.stream(
                "POST", f"{url}/chat/completions", json={**body, "stream": True}, timeout=600
            ) as r:
                lines = r.iter_lines()
                assert next(lines).startswith("data: ")  # the work has started
            # the one slot is free again long before 400 tokens could have been written
            quick = {**body, "max_tokens": 4, "temperature": 0.0}
            r2 = httpx.post(f"{url}/chat/completions", json=quick, timeout=600)
            assert r2.status_code == 200
            assert lm.metrics()["tokens_predicted_total"] - before < 200
    finally:
        lm.close()


async def test_stopped_streams_are_charged_what_llamacpp_decoded(llama: LlamaCppLM) -> None:
    """Streams their watch stops (adaptive stopping, DeepConf online) are charged what llama.cpp
    decoded: the tokens it held back as a possible stop string's start and never sent, and
    the one it decodes before it sees the connection close. Counting the tokens received fell
    short by about eight a stream here."""
    question = "List five fruits, one per line with a blank line between each, then explain 17*23."
    messages = [Message(role="user", content=question)]
    http = OpenAILM(llama.http_url, slots=4)
    await http.prepare()
    before = llama.metrics()["tokens_predicted_total"]
    charged = received = stops = 0
    for lm in (llama, http):
        for seed in range(3):
            seen: list[TokenLogprob] = []

            def watch(token: TokenLogprob, seen: list[TokenLogprob] = seen) -> bool:
                seen.append(token)
                return len(seen) == 30

            # "\n\n\n\n" is never written whole; llama.cpp holds back text that could begin it
            req = GenRequest(
                messages=messages,
                max_tokens=300,
                temperature=0.9,
                seed=seed,
                top_logprobs=1,
                stop=["\n\n\n\n"],
            )
            (choice,) = (await lm.stream(req, watch)).choices
            charged += choice.completion_tokens
            received += len(choice.logprobs or [])
            stops += choice.finish_reason == "stopped"
    await http.aclose()
    # a request pinned to each slot runs once that slot is free: every stop has landed
    settle = [
        await llama.generate(GenRequest(messages=messages, max_tokens=1, slot=slot))
        for slot in range(llama.capabilities.slots)
    ]
    decoded = (
        llama.metrics()["tokens_predicted_total"]
        - before
        - sum(g.choices[0].completion_tokens for g in settle)
    )
    assert stops >= 4
    # 0-2 tokens are decoded after a stream's last chunk, and 1 is charged
    assert abs(charged - decoded) <= stops, (charged, decoded, stops)
    # the held-back tokens were charged: what the count of those received missed
    assert decoded - received > 2 * stops, (decoded, received, stops)


async def test_the_capability_probe_is_charged_what_llamacpp_counted(llama: LlamaCppLM) -> None:
    """The probe ponder sends a server before its first request generates a few tokens: the
    first solve's bill carries them (role "probe"), exactly as llama.cpp counted them."""
    for slot in range(llama.capabilities.slots):  # a stream stopped earlier has landed
        await llama.generate(GenRequest(prompt="1,", max_tokens=1, slot=slot))
    before = llama.metrics()
    http = OpenAILM(llama.http_url, slots=4)
    ledger = Ledger()
    await Scheduler().generate(http, GenRequest(prompt="1, 2, 3,", max_tokens=3), ledger)
    await http.aclose()
    after = llama.metrics()
    spent = ledger.spent
    assert ledger.by_role()["probe"].calls >= 2
    assert (
        spent.completion_tokens
        == after["tokens_predicted_total"] - before["tokens_predicted_total"]
    )
    # (prompt tokens counted by ponder include those llama.cpp found cached, which its
    # counter leaves out)
    processed = spent.prompt_tokens - spent.cached_tokens
    assert processed == after["prompt_tokens_total"] - before["prompt_tokens_total"], spent


async def test_the_routers_cache_model_predicts_what_llamacpp_reuses(llama: LlamaCppLM) -> None:
    """CacheModel (what the slot router places requests by) against llama.cpp itself: prompts
    pinned to one slot, and the share of each prompt found cached, predicted and measured.
    The sequence covers each rule: a sibling overwriting a path unsaved, an unrelated prompt
    that makes llama.cpp save the slot's text to host memory, and its restoring later."""
    from ponder.lm.cache import CacheModel

    nonce = f"run {id(llama)}"  # nothing cached by earlier tests shares these prompts
    head = (
        f"<|im_start|>system\nSolve it ({nonce}).<|im_end|>\n<|im_start|>user\n"
        + " ".join(f"q{i}" for i in range(60))
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    a = head + " ".join(f"a{i}" for i in range(36)) + "\n\n"
    b = head + " ".join(f"b{i}" for i in range(36)) + "\n\n"
    other = f"<|im_start|>system\n{nonce} other<|im_end|>\n" + " ".join(f"z{i}" for i in range(150))
    model = CacheModel(llama.capabilities.slots)
    slot = llama.capabilities.slots - 1
    seen = []
    for prompt in (a, b, a, other, a):
        predicted = model.place(prompt, slot) / len(prompt)
        gen = await llama.generate(GenRequest(prompt=prompt, max_tokens=1, slot=slot))
        measured = gen.cached_tokens / gen.prompt_tokens
        model.texts[slot] = prompt + gen.choices[0].text
        seen.append((round(predicted, 2), round(measured, 2)))
    # b keeps only the head of a, so a's tail is lost unsaved (a comes back at ~70% cached);
    # the unrelated prompt saves a, which then comes back whole
    assert [m > 0.95 for _, m in seen] == [False, False, False, False, True], seen
    assert all(abs(p - m) < 0.15 for p, m in seen), seen


@pytest.mark.parametrize("strategy", ["beam", "particles"])
def test_cli_step_search_writes_a_trace_and_preference_pairs(strategy: str, tmp_path: Path) -> None:
    """`ponder solve --strategy beam|particles --trace` on a GSM8K problem, then `ponder trace
    pairs`: the tree accounts for every token the policy generated and every judge call."""
    problem = get_task("gsm8k").load(limit=1)[0]
    trace = tmp_path / "trace.jsonl"
    args = ["solve", problem.question, "-s", strategy, "-n", "2", "--seed", "1", "--slots", "2"]
    args += ["--budget-tokens", "4000", "--trace", str(trace), "--gold", str(problem.gold)]
    proc = run_ponder(*args, "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    usage = json.loads(proc.stdout)["usage"]
    assert usage["total"]["prompt_tokens"] + usage["total"]["completion_tokens"] <= 4000
    (line,) = trace.read_text().splitlines()
    searched = json.loads(line)
    assert searched["strategy"] == strategy and searched["gold"] == str(problem.gold)
    nodes = searched["nodes"][1:]  # below the root
    assert len(nodes) >= 2 and any(n["selected"] for n in nodes)
    assert sum(n["tokens"] for n in nodes) == usage["policy"]["completion_tokens"]
    by_id = {n["id"]: n for n in searched["nodes"]}

    def path(n: dict[str, Any]) -> tuple[str, ...]:
        return () if n["parent"] is None else (*path(by_id[n["parent"]]), n["step"].strip())

    # one judge call per distinct path judged (a step written twice is judged once; a judge
    # that answers neither Yes nor No was asked, and leaves its path unscored)
    judged = [n for n in nodes if n["score"] is not None or "the judge answered" in n["note"]]
    assert len({path(n) for n in judged}) == usage["verifier"]["calls"]
    assert all(n["score"] is not None or n["note"] for n in nodes)  # unscored says why

    pairs = run_ponder("trace", "pairs", str(trace), "--kind", "number")
    assert pairs.returncode == 0, pairs.stderr
    rows = [json.loads(x) for x in pairs.stdout.splitlines()]
    assert rows and all(r["prompt"] == problem.question for r in rows)
    for r in rows:  # siblings: one parent, the chosen one scored at least as high
        chosen, rejected = (by_id[i] for i in r["nodes"])
        assert chosen["parent"] == rejected["parent"]
        assert (chosen["step"], rejected["step"]) == (r["chosen"], r["rejected"])
        if r["basis"] == "score":
            assert r["chosen_score"] > r["rejected_score"]
