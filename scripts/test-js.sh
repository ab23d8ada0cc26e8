#!/usr/bin/env bash
# The TypeScript parts under `make test`: the SDK (sdk/js) is installed from its lockfile
# when node_modules is missing or stale, built with tsc, and tested with `node --test`
# against real `llmos serve` and Jupyter servers. Each test seeds its own temporary store.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# Absolute, but not through the venv's symlink: the venv is what makes it this Python.
export LLMOS_PYTHON="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"

need_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "node and npm are needed for the TypeScript tests (Node 18+): apt-get install nodejs npm" >&2
        exit 1
    fi
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 18 ]; then
        echo "Node $(node --version) is too old for the TypeScript tests; install Node 18 or newer" >&2
        exit 1
    fi
}

# npm ci when node_modules is absent or older than the lockfile.
npm_ci() {
    local dir=$1
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts)
    fi
}

need_node
npm_ci sdk/js
(cd sdk/js && npm run --silent build && npm test)
