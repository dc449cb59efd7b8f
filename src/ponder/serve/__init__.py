"""`ponder serve`: an OpenAI-compatible server whose models are strategies over a backend."""

from ponder.serve.app import create_app
from ponder.serve.auth import ApiKey, Keys, Limits

__all__ = ["ApiKey", "Keys", "Limits", "create_app"]
