"""One object that says which backend to open and how: the model or server, keys, slots,
context size, prices and timeout (what every command, the server and the harness pass on)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ponder.errors import UsageError
from ponder.types import ModelInfo


def server_url(url: str) -> str:
    """`url` when it names an http(s) server (`ServerUrl`'s check)."""
    try:
        parsed = urlsplit(url)
        port = parsed.port  # (a port that is not a number, or out of range, fails here)
    except ValueError as e:
        raise ValueError(f"'{url}' is not a URL ({e})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"'{url}' is not an http(s) URL with a host, e.g. http://host:8000/v1")
    if parsed.query or parsed.fragment:  # (paths are appended to it: …?x=1/chat/completions)
        raise ValueError(f"'{url}': a base URL has no ?query or #fragment")
    if port == 0:
        raise ValueError(f"'{url}': port 0 is no server's")
    return url


# A server's base URL, checked when a config is made (not at the first request).
ServerUrl = Annotated[str, AfterValidator(server_url)]


class Price(BaseModel):
    """Dollars per million tokens."""

    model_config = ConfigDict(allow_inf_nan=False)  # an infinite price makes every cost NaN
    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)
    cached: float | None = Field(default=None, ge=0)

    @classmethod
    def parse(cls, text: str) -> Price:
        """'PROMPT,COMPLETION[,CACHED]' in dollars per million tokens, e.g. '0.15,0.60'; one
        number prices every token alike ('0': free, the default)."""
        try:
            parts = [float(x) for x in text.split(",")]
            if len(parts) == 1:
                parts = parts * 2
            if len(parts) not in (2, 3):
                raise ValueError
            return cls(
                prompt=parts[0], completion=parts[1], cached=parts[2] if len(parts) == 3 else None
            )
        except (ValueError, ValidationError):
            raise UsageError(
                f"bad price '{text}' (want PROMPT,COMPLETION[,CACHED] in $ per million tokens, "
                "or one price for all)"
            ) from None


class BackendConfig(BaseModel):
    """Which backend serves the policy, and how. `backend` None: `openai` when `base_url` is
    given, else the embedded `llamacpp`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    backend: str | None = Field(default=None, description="a registered backend name")
    model: str | None = Field(
        default=None, description="registered model name, .gguf path, or the server's model"
    )
    base_url: ServerUrl | None = Field(default=None, description="an OpenAI-compatible server")
    api_key: str | None = Field(default=None, description="the bearer key sent to base_url")
    slots: int = Field(default=8, ge=1, description="sequences in flight on the backend")
    ctx_size: int = Field(default=2048, ge=64, description="context tokens per slot")
    price: Price | None = Field(default=None, description="$ per million tokens")
    parameters: int | None = Field(default=None, ge=1, description="model size, for FLOPs")
    timeout: float | None = Field(
        default=None, gt=0, description="seconds per request to a server (probe included)"
    )
    threads: int | None = Field(
        default=None, ge=1, description="CPU threads of an embedded model (default: all cores)"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the backend's own settings (see `ponder backends NAME`), e.g. a scripted "
        "backend's replies or vLLM's engine arguments",
    )
    # a cancelled call stops its generation on the backend too (what a server wants)
    cancellable: bool = Field(default=False, exclude=True)

    @model_validator(mode="after")
    def _has_url_for_server(self) -> BackendConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs a base_url (--base-url)")
        return self

    def backend_name(self) -> str:
        return self.backend or ("openai" if self.base_url else "llamacpp")

    def without_options(self) -> None:
        """For a backend that has no settings of its own: options given to it are an error."""
        if self.options:
            raise UsageError(
                f"backend '{self.backend_name()}' takes no backend options "
                f"(got {', '.join(sorted(self.options))})"
            )

    def without_server(self) -> None:
        """For a backend that runs its model in this process: a server's URL given to it would
        be ignored, so it is an error."""
        if self.base_url is not None:
            raise UsageError(
                f"backend '{self.backend_name()}' runs its model in this process and takes no "
                f"--base-url ('{self.base_url}'; for a server: --backend openai, or no --backend)"
            )

    def priced(self, info: ModelInfo) -> ModelInfo:
        """`info` with this config's prices and size, where given (a server's size and prices
        are not known unless given: without them its FLOPs and dollars are 0)."""
        update: dict[str, float | int] = {}
        if self.price is not None:
            p = self.price
            update["usd_per_mtok_prompt"] = p.prompt
            update["usd_per_mtok_completion"] = p.completion
            update["usd_per_mtok_cached"] = p.prompt if p.cached is None else p.cached
        if self.parameters is not None:
            update["parameters"] = self.parameters
        return info.model_copy(update=update)
