"""Data in bounded memory: `llmos data add` of a big JSONL file, and `task run --limit 1` on it.

Generates a JSONL file of about --mb megabytes in a temporary directory (deleted at the
end) and measures, each in its own child process (peak RSS is that child's ru_maxrss,
read with os.wait4):

- `llmos data add` of the file: wall time, rows/s and peak RSS (target <= 300 MB), side
  by side with `pandas.read_json(path, lines=True)` on the same file (which only parses);
- a baseline child that imports the CLI and lists datasets, so the RSS of the data path
  can be told apart from the interpreter's own;
- `llmos task run --limit 1` over the big dataset and over a dataset of just its first
  row, same model (the difference is what the data costs; target < 2 s). Both include
  the CLI's start and the model's load, which the data does not change.
  Needs the default model's GGUF in $LLMOS_TEST_CACHE/models or .cache/models (it is
  imported into the temporary store); skipped without it.

    .venv/bin/python benchmarks/bench_data.py [--mb 200] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the river library market robot garden storm train bakery opened early flooded "
         "prize downtown staff repairs roof prices residents expected welcome report street "
         "week change city council plan vote school bridge museum park").split()


def generate(path: Path, megabytes: int, seed: int = 0) -> int:
    """Write ~`megabytes` MB of JSONL rows (id, text, label, score); return the row count."""
    rng = random.Random(seed)
    target, size, rows = megabytes * 1_000_000, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            chunk = []
            for _ in range(1000):
                text = " ".join(rng.choices(WORDS, k=rng.randint(20, 45)))
                chunk.append(json.dumps({"id": rows, "text": text,
                                         "label": rng.choice(("pos", "neg", "neutral")),
                                         "score": round(rng.random(), 4)}) + "\n")
                rows += 1
            block = "".join(chunk)
            f.write(block)
            size += len(block.encode())
    return rows


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run `cmd`; return (wall seconds, peak RSS in MB, exit status, stderr tail)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=REPO)
    err_file = proc.stderr
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = err_file.read().decode(errors="replace")[-400:] if err_file else ""
    return wall, usage.ru_maxrss / 1024, proc.returncode, err  # ru_maxrss is in KB on Linux


def find_default_gguf() -> Path | None:
    cache = Path(os.environ.get("LLMOS_TEST_CACHE", REPO / ".cache")) / "models"
    found = sorted(cache.glob("SmolLM2-135M-Instruct*.gguf"))
    return found[0] if found else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmos-bench-data-"))
    try:
        run(tmp, args.mb)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, megabytes: int) -> None:
    src = tmp / "big.jsonl"
    t0 = time.perf_counter()
    rows = generate(src, megabytes)
    mb = src.stat().st_size / 1e6
    print(f"generated {src.name}: {mb:.0f} MB, {rows:,} rows in {time.perf_counter() - t0:.1f} s")
    home = tmp / "home"
    env = {**os.environ, "LLMOS_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "kernels"),
                                          os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "llmos_jupyter.cli"]

    base = measure([*cli, "data", "list"], env)
    ours = measure([*cli, "data", "add", "big", str(src)], env)
    if ours[2] != 0:
        raise SystemExit(f"data add failed: {ours[3]}")
    pandas = measure([sys.executable, "-c", "import sys, pandas; "
                      "pandas.read_json(sys.argv[1], lines=True)", str(src)], env)
    print(f"\n{'':34}{'wall s':>8}{'rows/s':>12}{'peak RSS MB':>13}")
    print(f"{'baseline (CLI import, data list)':34}{base[0]:8.2f}{'':>12}{base[1]:13.0f}")
    for label, (wall, rss, _, _) in (("llmos data add", ours), ("pandas.read_json(lines=True)",
                                                                pandas)):
        print(f"{label:34}{wall:8.2f}{rows / wall:12,.0f}{rss:13.0f}")
    print(f"data add: peak RSS {ours[1]:.0f} MB (target <= 300), "
          f"{ours[1] / pandas[1]:.2f}x pandas' RSS, {pandas[0] / ours[0]:.2f}x pandas' speed")

    gguf = find_default_gguf()
    if gguf is None:
        print("\ntask run --limit 1: skipped (no default model GGUF in the test cache)")
        return
    prepare = (
        "import shutil, sys, llmos\n"
        "from llmos_jupyter.runtime.services import services\n"
        "from llmos_jupyter.store.sources import DEFAULT_MODEL\n"
        "m = services().models; dest = m.download_path(DEFAULT_MODEL)\n"
        "dest.parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(sys.argv[1], dest)\n"
        "m.pull(DEFAULT_MODEL)\n"
        "llmos.tasks.add('echo1', {'inputs': ['text'], 'prompt': '{text}', 'chat': False,\n"
        "                          'params': {'max_tokens': 1, 'temperature': 0}})\n"
        "llmos.datasets.add('one', [next(iter(services().datasets.iter_rows('big')))])\n"
    )  # the one-row dataset holds the big one's first row: the same prompt, the same work
    subprocess.run([sys.executable, "-c", prepare, str(gguf)], env=env, check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    model = ["--model", "smollm2-135m-instruct"]
    small = measure([*cli, "task", "run", "echo1", "--data", "one", "--limit", "1", *model], env)
    big = measure([*cli, "task", "run", "echo1", "--data", "big", "--limit", "1", *model], env)
    for res, what in ((small, "one-row"), (big, "big")):
        if res[2] != 0:
            raise SystemExit(f"task run on the {what} dataset failed: {res[3]}")
    print(f"\n{'task run --limit 1 (model load incl.)':40}{'wall s':>8}{'peak RSS MB':>13}")
    print(f"{'  on a one-row dataset':40}{small[0]:8.2f}{small[1]:13.0f}")
    print(f"{'  on the ' + f'{rows:,}-row dataset':40}{big[0]:8.2f}{big[1]:13.0f}")
    print(f"the big dataset adds {big[0] - small[0]:+.2f} s and {big[1] - small[1]:+.0f} MB")
    # The same runs in one process with the model already loaded, alternating the two
    # datasets (the machine's load drifts): what a notebook user waits for.
    warm = (
        "import json, statistics, sys, time, llmos\n"
        "llmos.load('smollm2-135m-instruct')\n"
        "times = {'one': [], 'big': []}\n"
        "for _ in range(3):\n"
        "    for d in ('one', 'big'):\n"
        "        t0 = time.perf_counter()\n"
        "        llmos.run('echo1', data=d, limit=1, background=False)\n"
        "        times[d].append(time.perf_counter() - t0)\n"
        "print(json.dumps({k: statistics.median(v) for k, v in times.items()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", warm], env=env, check=True, cwd=REPO,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    medians = json.loads(out)
    print(f"\nin one process, model loaded (median of 3): run --limit 1 on the one-row dataset "
          f"{medians['one']:.2f} s, on the big one {medians['big']:.2f} s (target < 2 s)")


if __name__ == "__main__":
    main()
