"""A store (LLMOS_HOME) seeded with the default model, for test sessions and tutorial runs.

Tests and the nbval-executed tutorials never use the user's store: each run gets a
temporary LLMOS_HOME. Pulling there for real would download 98 MB every time, so the
default model's GGUF is fetched once per machine into a cache (checksum-verified) and
placed where `pull` downloads to; the pull itself (verification, conversion to native,
catalog row) then runs for real.

    python -m tests.seed_home DIR     # seed DIR (created if missing) and print it
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LLMOS_TEST_CACHE", REPO / ".cache"))


def cached_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf in the machine's test cache (fetched once)."""
    from llmos_jupyter.store.sources import cached_default_gguf

    return cached_default_gguf(CACHE / "models")


def seed_default_model(home: Path) -> Path:
    """Pull the default model into the store at `home` from the cached GGUF; return home.

    LLMOS_HOME is pointed at `home` only while pulling and restored afterwards.
    """
    from llmos_jupyter.runtime.services import services
    from llmos_jupyter.store.sources import DEFAULT_MODEL

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("LLMOS_HOME")
    os.environ["LLMOS_HOME"] = str(home)
    try:
        models = services().models
        dest = models.download_path(DEFAULT_MODEL)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached_gguf(), dest)
        models.pull(DEFAULT_MODEL)
    finally:
        if old is None:
            os.environ.pop("LLMOS_HOME", None)
        else:
            os.environ["LLMOS_HOME"] = old
    return home


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.seed_home DIR")
    print(seed_default_model(Path(sys.argv[1])))
