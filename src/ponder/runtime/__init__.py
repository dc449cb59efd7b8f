"""The core runtime every part meets at: the scheduler (all generation goes through it), the
ledger and budgets, slot placement, the context a strategy and a verifier share, the strategy
and verifier contracts with their registries, and the engine that ties them together."""
