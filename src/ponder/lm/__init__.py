"""Language-model backends behind one protocol, and the model registry."""

from __future__ import annotations

from collections.abc import Callable

from ponder.lm.protocol import Capabilities, LanguageModel
from ponder.lm.registry import DEFAULT_MODEL, MODELS, Registry
from ponder.lm.scripted import ScriptedLM

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "Capabilities",
    "LanguageModel",
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
    progress: Callable[[str, int, int], None] | None = None,
) -> LanguageModel:
    """The policy model: an OpenAI-compatible server when `base_url` is given, else the
    embedded llama.cpp with a registered model name or a local .gguf path."""
    if base_url:
        from ponder.lm.openai import OpenAILM

        return OpenAILM(base_url, model=model, api_key=api_key, slots=slots)
    from ponder.lm.llamacpp import LlamaCppLM

    path, info = Registry().resolve(model or DEFAULT_MODEL, progress)
    return LlamaCppLM(path, info, slots=slots, ctx_per_slot=ctx_per_slot)
