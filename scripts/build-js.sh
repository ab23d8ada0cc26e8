#!/usr/bin/env bash
# Build the TypeScript parts: the SDK (sdk/js -> dist/) and the JupyterLab extension
# (labextension -> labextension/build/llmos-jupyter, which the wheel ships under
# share/jupyter/labextensions/llmos-jupyter). `npm ci` runs where node_modules is missing
# or older than its lockfile. Needs Node 20+ and npm (the extension's bundler needs 20).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "node and npm are needed to build the SDK and the JupyterLab extension (Node 20+): apt-get install nodejs npm" >&2
    exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "Node $(node --version) is too old to build the JupyterLab extension; install Node 20 or newer" >&2
    exit 1
fi

npm_ci() {
    local dir=$1
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts)
    fi
}

npm_ci sdk/js
(cd sdk/js && npm run --silent build)
npm_ci labextension
(cd labextension && npm run --silent build)
