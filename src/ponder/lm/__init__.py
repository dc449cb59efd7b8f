"""Language-model backends behind one protocol, and the model registry."""

from __future__ import annotations

import os
from collections.abc import Callable

from pydantic import BaseModel, Field, ValidationError

from ponder.errors import UsageError
from ponder.lm.protocol import Capabilities, LanguageModel
from ponder.lm.registry import DEFAULT_MODEL, MODELS, Registry
from ponder.lm.scripted import ScriptedLM
from ponder.types import ModelInfo

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "Capabilities",
    "LanguageModel",
    "Price",
    "Registry",
    "ScriptedLM",
    "open_model",
]


def open_model(
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    slots: int = 8,
    ctx_per_slot: int = 2048,
    price: Price | None = None,
    parameters: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cancellable: bool = False,
) -> LanguageModel:
    """The policy model: an OpenAI-compatible server when `base_url` is given, else the
    embedded llama.cpp with a registered model name or a local .gguf path. `price` and
    `parameters` override what the ledger charges (a server's model size and prices are not
    known unless given: without them its FLOPs and dollars are 0). `cancellable`: a cancelled
    call stops its generation on the backend too (what a server wants; an HTTP backend's
    connection closes either way)."""
    if base_url:
        from ponder.lm.openai import OpenAILM

        info = ModelInfo(name=model or base_url.rstrip("/").removesuffix("/v1"))
        return OpenAILM(
            base_url,
            model=model,
            api_key=api_key,
            slots=slots,
            info=priced(info, price, parameters),
        )
    from ponder.lm.llamacpp import LlamaCppLM

    path, info = Registry().resolve(model or DEFAULT_MODEL, progress)
    info = priced(info, price, parameters)
    # PONDER_PIN_SLOTS=0 leaves placing requests on slots to llama.cpp (to compare)
    pin = os.environ.get("PONDER_PIN_SLOTS", "1").strip().lower() not in ("0", "false", "no")
    return LlamaCppLM(
        path,
        info,
        slots=slots,
        ctx_per_slot=ctx_per_slot,
        cancellable=cancellable,
        pin_slots=pin,
    )


class Price(BaseModel):
    """Dollars per million tokens."""

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)
    cached: float | None = Field(default=None, ge=0)

    @classmethod
    def parse(cls, text: str) -> Price:
        """'PROMPT,COMPLETION[,CACHED]' in dollars per million tokens, e.g. '0.15,0.60'."""
        try:
            parts = [float(x) for x in text.split(",")]
            if len(parts) not in (2, 3):
                raise ValueError
            return cls(
                prompt=parts[0], completion=parts[1], cached=parts[2] if len(parts) == 3 else None
            )
        except (ValueError, ValidationError):
            raise UsageError(
                f"bad price '{text}' (want PROMPT,COMPLETION[,CACHED] in $ per million tokens)"
            ) from None


def priced(info: ModelInfo, price: Price | None, parameters: int | None) -> ModelInfo:
    update: dict[str, float | int] = {}
    if price is not None:
        update["usd_per_mtok_prompt"] = price.prompt
        update["usd_per_mtok_completion"] = price.completion
        update["usd_per_mtok_cached"] = price.prompt if price.cached is None else price.cached
    if parameters is not None:
        update["parameters"] = parameters
    return info.model_copy(update=update)
