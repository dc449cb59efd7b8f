"""Reading settings from the environment: booleans as booleans."""

from __future__ import annotations

import os

from ponder.errors import UsageError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_flag(name: str, default: bool) -> bool:
    """The boolean environment variable `name` ("1/true/yes/on" or "0/false/no/off", any
    case); `default` when unset or set to nothing (`NAME= cmd`, as a shell unsets it for one
    command); a usage error naming it for anything else."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise UsageError(f"${name}={value!r}: expected a boolean (1/0, true/false, yes/no, on/off)")
