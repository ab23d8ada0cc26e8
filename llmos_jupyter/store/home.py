"""LLMOS_HOME: where the store keeps its catalog and files, and how files get there safely.

Layout (every path below is under `llmos_home()`):

    catalog.db            SQLite catalog (WAL mode) - the one source of truth for what exists
    models/<name>/        a model in the native format (safetensors + JSON)
    datasets/<name>/<sha>/ immutable snapshots of a dataset's rows
    shards/               token shards written for training
    runs/<id>/            files a run writes (exports, logs)
    tmp/                  staging: work happens here, then is renamed into place

`tmp/` is inside the home on purpose: a rename from it into `models/` or `datasets/` stays
on one filesystem and is therefore atomic, so a half-written model can never appear under
its final name. A directory appears under its final name before its catalog row does, and
the catalog row is what makes it exist: a directory without a row is invisible and is
replaced by the next write of that name.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmos_jupyter.errors import LLMOSError

# Names become directory names and CLI arguments: keep them to a portable, shell-safe set.
# Matched with fullmatch: `$` alone would let a trailing newline through ("ok\n").
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_LOCK_NAME = ".owner.lock"


def llmos_home() -> Path:
    """The store's root: $LLMOS_HOME if set, else ~/.llmos (read at every call, not import)."""
    env = os.environ.get("LLMOS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".llmos"


def check_name(kind: str, name: str) -> str:
    """Return `name` if it is a valid store name, else raise LLMOSError saying what is allowed."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise LLMOSError(
            f"invalid {kind} name {name!r}: use letters, digits, '.', '_', ':' or '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name


@dataclass(frozen=True)
class HomeLayout:
    """Paths of one LLMOS_HOME."""

    root: Path

    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.db"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def locks(self) -> Path:
        return self.tmp / "locks"

    def ensure(self) -> HomeLayout:
        """Create the directories (idempotent, safe to race)."""
        for p in (self.models, self.datasets, self.shards, self.runs, self.tmp, self.locks):
            p.mkdir(parents=True, exist_ok=True)
        return self

    # -- staging ---------------------------------------------------------------------------

    @contextmanager
    def staging(self, label: str) -> Iterator[Path]:
        """A fresh directory under tmp/ owned by this process; removed on exit.

        Ownership is an flock held on a file inside it for as long as the block runs. A
        process that dies (even by SIGKILL) releases the lock, which is how
        `clean_stale_staging` tells a leftover from a directory still being written.
        """
        # The directory gets its lock before it gets its `stage-` name: it is made under
        # a `making-PID-` name, locked, then renamed. So a `stage-` directory without a
        # held lock is always stale, and a process killed before the rename leaves a
        # `making-` directory whose dead PID marks it stale.
        self.tmp.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:12]
        making = self.tmp / f"making-{os.getpid()}-{tag}"
        making.mkdir()
        fd = os.open(making / _LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
        path = self.tmp / f"stage-{label}-{tag}"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(making, path)
            yield path
        finally:
            shutil.rmtree(making, ignore_errors=True)
            shutil.rmtree(path, ignore_errors=True)
            os.close(fd)

    def clean_stale_staging(self) -> list[Path]:
        """Remove staging and trash directories no live process owns; return what was removed."""
        removed: list[Path] = []
        if not self.tmp.is_dir():
            return removed
        for path in self.tmp.iterdir():
            if not path.is_dir():
                continue
            if path.name.startswith("trash-"):
                # Trash is renamed aside before deletion: nobody reads it, always safe to drop.
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif (path.name.startswith("stage-") and not _is_owned(path)) or (
                    path.name.startswith("making-") and not _maker_alive(path)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def discard(self, path: Path) -> None:
        """Delete a directory tree so it vanishes from its place atomically.

        The tree is first renamed into tmp/ (one atomic step), then deleted; a crash during
        the deletion leaves only a `trash-*` directory that the next cleanup removes.
        """
        if not path.exists():
            return
        trash = self.tmp / f"trash-{uuid.uuid4().hex[:12]}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def install(self, staged: Path, dest: Path) -> None:
        """Move the finished tree `staged` to `dest`, replacing whatever is there.

        A leftover at `dest` (from a crash between rename and catalog insert) is moved aside
        first; rename(2) cannot replace a non-empty directory in one step.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            self.discard(dest)
        os.replace(staged, dest)

    @contextmanager
    def name_lock(self, kind: str, name: str) -> Iterator[None]:
        """Hold an exclusive per-name file lock (across processes) for a slow write.

        Pulls and imports take minutes of work outside any SQLite transaction; this lock
        keeps two processes from converting the same model at once.
        """
        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{kind}-{name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock


def _maker_alive(making_dir: Path) -> bool:
    """True if the process named in a `making-PID-...` directory is still alive."""
    try:
        pid = int(making_dir.name.split("-")[1])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def _is_owned(stage_dir: Path) -> bool:
    """True if a live process holds the flock of this staging directory."""
    lock = stage_dir / _LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False  # `staging` locks a directory before naming it stage-: this one is dead
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def dir_size(path: Path) -> int:
    """Total bytes of the regular files under `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
