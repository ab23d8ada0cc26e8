#!/usr/bin/env bash
# The TypeScript parts under `make test`: build the SDK and the JupyterLab extension
# (scripts/build-js.sh: npm ci when needed, tsc, the extension bundle), then
#   - the SDK's tests (`node --test`) against real `llmos serve` and Jupyter servers;
#   - the extension's UI tests: a real JupyterLab driven by headless Chromium
#     (Debian's /usr/bin/chromium, installed here when missing and we are root);
#   - jupyterlab.browser_check with that Chromium (scripts/browser-check.sh).
# Each test seeds its own temporary store with the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# Absolute, but not through the venv's symlink: the venv is what makes it this Python.
export LLMOS_PYTHON="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"

bash scripts/build-js.sh
(cd sdk/js && npm test)

export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
    else
        echo "the UI tests need Chromium at $CHROMIUM: apt-get install chromium (or set CHROMIUM)" >&2
        exit 1
    fi
fi
(cd labextension && npm run --silent test:ui)

# JupyterLab loads with the installed extension and no browser errors.
PY="$PY" CHROMIUM="$CHROMIUM" bash scripts/browser-check.sh
