"""The optional parts of ponder and the extras that install them: the core (engine and CLI)
runs without any of them, and a part used without its extra fails with one line naming it.

    pip install 'ponder[serve]'    # ponder serve: fastapi, uvicorn
    pip install 'ponder[report]'   # ponder report's plots: matplotlib
"""

from __future__ import annotations

import importlib.util

from ponder.errors import PonderError

EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn"),
    "report": ("matplotlib",),
}


class MissingExtra(PonderError):
    """A part of ponder was used without the extra that installs it."""


def has_extra(extra: str) -> bool:
    """Whether every module the extra installs can be found (without importing it)."""
    return all(_findable(module) for module in EXTRAS[extra])


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder refused it, or a broken half-import
        return False


def require_extra(extra: str, what: str) -> None:
    """Raise MissingExtra ("`what` needs the `extra` extra: pip install 'ponder[extra]'")
    unless the extra is installed."""
    if not has_extra(extra):
        raise MissingExtra(f"{what} needs the {extra} extra: pip install 'ponder[{extra}]'")
