"""Screenshots of the LLMOS widgets, rendered by a real JupyterLab in headless chromium.

    .venv/bin/python scripts/screenshots.py            # writes docs/images/*.png

Steps: a temporary LLMOS_HOME gets the default model (`llmos.pull`), a small dataset and
one finished run; a JupyterLab server starts on it; `screenshots.mjs` (playwright-core
driving Debian's /usr/bin/chromium) opens notebooks/widgets-demo.ipynb, runs all cells
and saves element screenshots of the dashboard (each tab) and of the playground after a
generation. Needs `apt-get install chromium` and `npm install` in scripts/.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = REPO / "notebooks" / "widgets-demo.ipynb"
REVIEWS = [
    "The battery lasts two days and the screen is bright. Great value.",
    "Stopped working after a week; support never answered my emails.",
    "Comfortable, light, and the sound is better than I expected.",
    "Shipping took a month and the box arrived crushed.",
    "Does exactly what it says. I bought a second one for my sister.",
    "The manual is confusing but once set up it runs quietly.",
]
# JupyterLab settings for a clean picture: no news/update toasts, every cell rendered.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
        {"windowingMode": "none", "autoStartDefaultKernel": True},
}


def prepare_store(home: Path, gguf: Path | None) -> None:
    """Pull the default model, add a dataset and record one finished run (in a subprocess,
    so this script's process never holds the model)."""
    code = f"""
import llmos
name = "smollm2-135m-instruct"
if {str(gguf) if gguf else ""!r}:
    llmos.import_model(name, {str(gguf) if gguf else ""!r})
else:
    llmos.pull(name, progress=False)
llmos.datasets.add("reviews", [{{"text": t}} for t in {REVIEWS!r}])
llmos.run("summarize", model=name, data="reviews", limit=3, params={{"max_tokens": 24}},
          background=False)
"""
    env = {**os.environ, "LLMOS_HOME": str(home)}
    subprocess.run([str(BIN / "python"), "-c", code], env=env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    ap.add_argument("--gguf", type=Path, default=None,
                    help="import this GGUF as the default model instead of pulling it")
    ap.add_argument("--home", type=Path, default=None,
                    help="use this prepared LLMOS_HOME (from an earlier --keep) as it is")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (REPO / "scripts" / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=REPO / "scripts",
                       check=True)

    tmp = Path(tempfile.mkdtemp(prefix="llmos-shots-"))
    home, root, settings = args.home or tmp / "home", tmp / "notebooks", tmp / "lab-settings"
    root.mkdir()
    shutil.copy(DEMO, root / DEMO.name)
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    if args.home is None:
        print("preparing the store in", home, flush=True)
        prepare_store(home, args.gguf)

    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "LLMOS_HOME": str(home), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "LLMOS_DEMO_PROMPT": "Write one sentence about the sea.",
           "LLMOS_DEMO_MAX_TOKENS": "40"}
    log = open(tmp / "lab.log", "w")  # noqa: SIM115 - closed in finally
    lab = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(f"{base}/api/status?token={token}")
        url = f"{base}/lab/tree/{DEMO.name}?token={token}"
        subprocess.run(["node", str(REPO / "scripts" / "screenshots.mjs"), url,
                        str(args.out.resolve())], check=True, timeout=900)
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
        log.close()
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
