"""Proof that a test run leaves the user's store (LLMOS_HOME) exactly as it was.

`make test` takes a snapshot of the user's store before the tests and checks it after:
the sha256 of every file, every directory and symlink, or the store's absence. Any
difference fails the run with the paths that changed.

    python -m tests.store_guard snapshot STORE OUT.json
    python -m tests.store_guard check STORE OUT.json
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def snapshot(store: Path) -> dict[str, str]:
    """{relative path: digest} of everything under `store` ({} when it does not exist).

    Files map to their sha256, directories to "dir", symlinks to "link:" + target.
    """
    store = Path(store)
    out: dict[str, str] = {}
    if not store.exists():
        return out
    for root, dirs, files in os.walk(store):
        for name in dirs + files:
            path = Path(root) / name
            rel = str(path.relative_to(store))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                out[rel] = h.hexdigest()
    return out


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Human-readable lines for every path added, removed or changed, sorted."""
    lines = [f"added: {p}" for p in after.keys() - before.keys()]
    lines += [f"removed: {p}" for p in before.keys() - after.keys()]
    lines += [f"changed: {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(lines)


def main(argv: list[str]) -> int:
    """`snapshot STORE OUT` writes the snapshot; `check STORE OUT` compares, exit 1 on change."""
    if len(argv) != 3 or argv[0] not in ("snapshot", "check"):
        print("usage: python -m tests.store_guard snapshot|check STORE SNAPSHOT.json",
              file=sys.stderr)
        return 2
    verb, store, saved = argv[0], Path(argv[1]).expanduser(), Path(argv[2])
    if verb == "snapshot":
        saved.write_text(json.dumps(snapshot(store)))
        return 0
    diff = differences(json.loads(saved.read_text()), snapshot(store))
    if diff:
        print(f"the tests changed the user's store {store}:", *diff[:50], sep="\n  ",
              file=sys.stderr)
        return 1
    print(f"user's store {store} unchanged ({len(json.loads(saved.read_text()))} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
