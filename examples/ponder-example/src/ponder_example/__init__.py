"""An example ponder plugin: a strategy, a verifier and a backend, registered by entry points."""
