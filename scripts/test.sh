#!/usr/bin/env bash
# The test command (CI runs exactly this): set up with the dev tools, lint, type-check, then the
# test suite: scripted-backend tests plus a small real end-to-end subset on the embedded model.
# Long runs are marked `slow` and left out; run them with: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
.venv/bin/ruff check src tests benchmarks examples scripts
.venv/bin/ruff format --check src tests benchmarks examples scripts
.venv/bin/mypy
export PONDER_REQUIRE_RAY=1  # the dev extra installs Ray: its tests run, never skip
exec .venv/bin/python -m pytest -m "not slow" "$@"
