#!/usr/bin/env bash
# The main job: set up, then solve GSM8K test problems with greedy and with vote on the embedded
# model, printing accuracy against compute.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/ponder bench gsm8k --limit "${LIMIT:-10}" --strategy greedy --strategy vote \
  -n "${N:-8}" "$@"
