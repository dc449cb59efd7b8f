"""Bearer API keys and what each key may spend.

A keys file has one key per line, optionally followed by its limits, `#` starting a comment:

    sk-team-a                                   # the server's default limits
    sk-team-b  max_n=8 max_tokens=1024 max_budget_tokens=20000
    sk-team-c  max_concurrent=4 max_rpm=60 max_prompt_tokens=2000

Keys are compared in constant time, every configured key every time (no early exit). The
scheme is case-insensitive (`Bearer`, `bearer`), as HTTP says.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ponder.errors import UsageError, no_file, not_utf8, problems


class Limits(BaseModel):
    """What one key's requests may ask for, and how many of them it may make."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_n: int = Field(
        default=64,
        ge=1,
        description="samples / particles / beam width, and each other option that multiplies "
        "the work (expansions, iterations, steps)",
    )
    max_tokens: int = Field(
        default=4096,
        ge=1,
        description="tokens per generated sample (and per step or critique: `…_tokens` options)",
    )
    # Caps every request's whole bill (all samples and verifier calls); None: a strategy's
    # is capped by default all the same (routing.BUDGET_FACTOR), a plain request's is not.
    max_budget_tokens: int | None = Field(default=None, ge=1)
    # A request's prompt (every message's text); None: the model's context length.
    max_prompt_tokens: int | None = Field(default=None, ge=1)
    # The key's requests in flight at once; None: 64 on a server with keys, and on one
    # without (one caller: every request is its) the server's max_in_flight.
    max_concurrent: int | None = Field(default=None, ge=1)
    # The key's requests in any 60 seconds; None: no limit.
    max_rpm: int | None = Field(default=None, ge=1)


@dataclass(frozen=True)
class ApiKey:
    name: str  # how logs and errors refer to the key (never the secret)
    secret: str = field(repr=False)
    limits: Limits


class Keys:
    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    def __bool__(self) -> bool:
        return bool(self.keys)

    def check(self, authorization: str | None) -> ApiKey | None:
        """The key a `Bearer …` header carries (any case of the scheme), or None."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = token.strip().encode()
        found = None
        for key in self.keys:
            if hmac.compare_digest(given, key.secret.encode()):
                found = key
        return found

    def plus(self, other: Keys) -> Keys:
        return Keys([*self.keys, *other.keys])

    @classmethod
    def from_list(cls, secrets: list[str], defaults: Limits, label: str) -> Keys:
        """Keys given one by one (`--api-key`), each with the default limits; named by
        `label` and their place (never by the secret)."""
        given = [k.strip() for k in secrets]
        if any(not k for k in given):
            raise UsageError(f"{label}: an empty key")
        return cls([ApiKey(f"{label}:{i + 1}", s, defaults) for i, s in enumerate(given)])

    @classmethod
    def from_env(cls, value: str, defaults: Limits) -> Keys:
        """Comma-separated keys (PONDER_SERVE_API_KEYS), each with the default limits."""
        secrets = [k.strip() for k in value.split(",") if k.strip()]
        if not secrets:  # set to nothing but commas and blanks: not "no keys", a mistake
            raise UsageError(f"PONDER_SERVE_API_KEYS={value!r}: no key in it")
        for i, secret in enumerate(secrets):
            if any(c.isspace() for c in secret):  # (limits go in an --api-key-file)
                raise UsageError(
                    f"PONDER_SERVE_API_KEYS: key {i + 1} holds a space; keys are comma-separated "
                    "(a key's limits go in a key file: --api-key-file)"
                )
        return cls([ApiKey(f"env:{i + 1}", s, defaults) for i, s in enumerate(secrets)])

    @classmethod
    def from_file(cls, path: Path, defaults: Limits) -> Keys:
        if not path.is_file():
            raise UsageError(no_file(path, "API key file"))
        keys: list[ApiKey] = []
        seen: dict[str, int] = {}  # secret → its line
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(not_utf8(path, e)) from None
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            secret, *settings = line.split()
            if secret in seen:  # which line's limits hold would depend on the order
                raise UsageError(f"{path}:{lineno}: this key is also on line {seen[secret]}")
            seen[secret] = lineno
            limits: dict[str, str] = {}
            for item in settings:
                name, sep, value = item.partition("=")
                if not sep:
                    raise UsageError(f"{path}:{lineno}: expected name=value, got '{item}'")
                if name in limits:
                    raise UsageError(f"{path}:{lineno}: {name} given twice")
                limits[name] = value
            try:
                merged = defaults.model_dump() | limits
                keys.append(ApiKey(f"{path.name}:{lineno}", secret, Limits(**merged)))
            except ValidationError as e:
                raise UsageError(f"{path}:{lineno}: {problems(e)}") from None
        if not keys:
            raise UsageError(f"{path}: no keys in the file")
        return cls(keys)
