#!/usr/bin/env bash
# The test command the README names: the whole suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736}"
if ! python -c "import pytest, pytest_timeout, hypothesis" 2>/dev/null; then
  echo "error: the test tools are not installed in this environment ($(command -v python)). Install them once: pip install -e '.[test]'" >&2
  exit 2
fi
exec python -m pytest -q --timeout=900 "$@"
