#!/usr/bin/env bash
# `python -m jupyterlab.browser_check` with Debian's Chromium: JupyterLab starts with every
# installed extension (ours included) and a headless browser checks that it loads without
# errors. browser_check drives its own playwright, which would download its browsers
# (unreachable offline); the browser folder it reads is pointed at shims that run
# /usr/bin/chromium, made for the revisions that playwright expects.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

app_dir=$("$PY" -c "from jupyterlab.commands import get_app_dir; print(get_app_dir())")
target="$app_dir/browser_test"
if [ ! -d "$target/node_modules/playwright-core" ]; then
    mkdir -p "$target"
    (cd "$target" && npm init -y >/dev/null && npm install --no-audit --no-fund "playwright@^1.9.2" >/dev/null)
fi

browsers=$(mktemp -d -t llmos-playwright-XXXXXX)
trap 'rm -rf "$browsers"' EXIT
revision() {  # the revision playwright expects for browser $1
    node -e "const b = require('$target/node_modules/playwright-core/browsers.json').browsers;
             console.log(b.find(x => x.name === process.argv[1]).revision)" "$1"
}
shim() {  # shim DIR BINARY: a browser folder whose binary is Debian's Chromium
    mkdir -p "$browsers/$1/$(dirname "$2")"
    ln -s "$CHROMIUM" "$browsers/$1/$2"
    touch "$browsers/$1/INSTALLATION_COMPLETE" "$browsers/$1/DEPENDENCIES_VALIDATED"
}
shim "chromium-$(revision chromium)" chrome-linux64/chrome
shim "chromium_headless_shell-$(revision chromium-headless-shell)" \
    chrome-headless-shell-linux64/chrome-headless-shell
shim "ffmpeg-$(revision ffmpeg)" ffmpeg-linux  # only for video recording, never used here

export PLAYWRIGHT_BROWSERS_PATH="$browsers"
"$PY" -m jupyterlab.browser_check $([ "$(id -u)" = 0 ] && echo --allow-root)
