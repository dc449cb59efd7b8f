#!/usr/bin/env bash
# The main job: set up (the engine, CLI and plots; no development tools), then solve GSM8K test
# problems with greedy and with vote on the embedded model into a resumable store
# (runs/demo.sqlite; run it again to resume or reuse), print accuracy against compute, and write
# the report with its scaling plots (runs/demo-report/).
#   LIMIT=20 N=4 scripts/demo.sh [ponder bench options, e.g. --model qwen2.5-coder-1.5b]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh report
.venv/bin/ponder bench gsm8k --limit "${LIMIT:-10}" --strategy greedy --strategy vote \
  -n "${N:-8}" --store runs/demo.sqlite "$@"
exec .venv/bin/ponder report runs/demo.sqlite --out runs/demo-report
