#!/usr/bin/env bash
# The test command (CI runs exactly this): set up, lint, type-check, then the test suite:
# scripted-backend tests plus a small real end-to-end subset on the embedded model.
# Long real-model runs are marked `slow` and left out; run them with: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
PONDER_EXTRAS=${PONDER_EXTRAS:-dev,router,ray} scripts/setup.sh
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy
export PONDER_REQUIRE_RAY=1  # installed above: its tests run, never skip
exec .venv/bin/python -m pytest -m "not slow" "$@"
