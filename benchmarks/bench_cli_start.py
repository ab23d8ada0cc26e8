"""Cold start of the `llmos` CLI: catalog verbs must answer without importing torch.

Each verb runs as a fresh subprocess (`python -m llmos_jupyter.cli VERB`) against a
temporary LLMOS_HOME holding the default model, 5 times; the table shows the median and
the ratio to `python -c pass` measured in the same run (the interpreter's own floor).
Target: under 0.5 s each on a 2-core machine.

    .venv/bin/python benchmarks/bench_cli_start.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERBS = [["list"], ["--help"], ["data", "list"], ["runs", "list"]]


def make_home(home: Path) -> None:
    """Pull the default model into `home` from the checksum-verified local copy."""
    os.environ["LLMOS_HOME"] = str(home)
    from llmos_jupyter.runtime.services import services
    from llmos_jupyter.store.sources import DEFAULT_MODEL, cached_default_gguf

    cache = Path(os.environ.get("LLMOS_TEST_CACHE", REPO / ".cache")) / "models"
    models = services().models
    dest = models.download_path(DEFAULT_MODEL)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached_default_gguf(cache), dest)
    models.pull(DEFAULT_MODEL)


def seconds(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one cold run of argv; fails loudly if the command fails."""
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmos-bench-") as tmp:
        make_home(Path(tmp))
        env = {**os.environ, "LLMOS_HOME": tmp}
        cases = {"python -c pass": [sys.executable, "-c", "pass"]}
        for verb in VERBS:
            cases["llmos " + " ".join(verb)] = [sys.executable, "-m", "llmos_jupyter.cli", *verb]
        times: dict[str, list[float]] = {name: [] for name in cases}
        # Alternate the cases round by round, so drift in machine load hits all alike.
        for _ in range(args.repeat):
            for name, argv in cases.items():
                times[name].append(seconds(argv, env))
    floor = statistics.median(times["python -c pass"])
    print(f"{'command':<20} {'median s':>9} {'min s':>7} {'x floor':>8}  target < 0.5 s")
    for name, ts in times.items():
        med = statistics.median(ts)
        mark = "" if name.startswith("python") else ("ok" if med < 0.5 else "SLOW")
        print(f"{name:<20} {med:9.3f} {min(ts):7.3f} {med / floor:8.1f}  {mark}")


if __name__ == "__main__":
    main()
