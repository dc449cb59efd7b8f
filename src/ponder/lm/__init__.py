"""Language-model backends behind one protocol, the backend registry, and the model registry."""

from __future__ import annotations

from ponder.lm.config import BackendConfig, Price
from ponder.lm.protocol import BACKENDS, Capabilities, LanguageModel, Progress, backend
from ponder.lm.registry import DEFAULT_MODEL, MODELS, Registry
from ponder.lm.scripted import ScriptedLM

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "MODELS",
    "BackendConfig",
    "Capabilities",
    "LanguageModel",
    "Price",
    "Progress",
    "Registry",
    "ScriptedLM",
    "backend",
    "open_backend",
]


def open_backend(config: BackendConfig, progress: Progress | None = None) -> LanguageModel:
    """The policy model `config` names: an OpenAI-compatible server when it has a base URL, the
    embedded llama.cpp otherwise, or any registered backend by name."""
    return BACKENDS.get(config.backend_name()).obj(config, progress)
