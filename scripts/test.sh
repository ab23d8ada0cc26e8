#!/usr/bin/env bash
# What `make test` runs after installing and linting: the pytest suite, the TypeScript SDK's
# tests (scripts/test-js.sh), then the tutorial notebooks under nbval, each in a temporary
# LLMOS_HOME. The user's store ($LLMOS_HOME, else ~/.llmos) is checksummed before and
# after: a run that changed it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
USER_STORE=${LLMOS_HOME:-$HOME/.llmos}

work=$(mktemp -d -t llmos-make-test-XXXXXX)
trap 'rm -rf "$work"' EXIT
"$PY" -m tests.store_guard snapshot "$USER_STORE" "$work/user-store.json"

# pytest gives itself a temporary LLMOS_HOME (tests/conftest.py); this one is a backstop.
LLMOS_HOME="$work/pytest-home" "$PY" -m pytest -q

# The TypeScript SDK against real servers (npm ci when needed, tsc, node --test).
PY="$PY" bash scripts/test-js.sh

# The tutorials run in a store of their own, seeded with the default model.
nb_home=$("$PY" -m tests.seed_home "$work/notebook-home")
LLMOS_HOME="$nb_home" "$PY" -m pytest -q --nbval --nbval-current-env \
    --nbval-cell-timeout=600 --nbval-sanitize-with notebooks/nbval-sanitize.cfg \
    notebooks/0*.ipynb

"$PY" -m tests.store_guard check "$USER_STORE" "$work/user-store.json"
