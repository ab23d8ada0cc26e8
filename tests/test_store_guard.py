"""The user's store is never touched: the session's LLMOS_HOME is temporary, and the
guard `make test` runs around the suite detects any change to a store."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.seed_home import REPO
from tests.store_guard import differences, snapshot


def test_session_store_is_temporary_not_the_users():
    home = Path(os.environ["LLMOS_HOME"]).resolve()
    assert home != (Path.home() / ".llmos").resolve()
    assert home.is_relative_to(Path(tempfile.gettempdir()).resolve())


def test_services_open_the_session_store():
    from llmos_jupyter.store.home import llmos_home

    assert llmos_home() == Path(os.environ["LLMOS_HOME"])


def _store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    (store / "models" / "m").mkdir(parents=True)
    (store / "models" / "m" / "weights.bin").write_bytes(b"\x00" * 100)
    (store / "catalog.sqlite").write_bytes(b"rows")
    (store / "latest").symlink_to("models/m")
    return store


def test_snapshot_unchanged_store_has_no_differences(tmp_path):
    store = _store(tmp_path)
    assert differences(snapshot(store), snapshot(store)) == []
    assert snapshot(tmp_path / "absent") == {}


def test_snapshot_sees_every_kind_of_change(tmp_path):
    store = _store(tmp_path)
    before = snapshot(store)
    (store / "catalog.sqlite").write_bytes(b"rowz")  # same size, other bytes
    (store / "models" / "m" / "weights.bin").unlink()
    (store / "datasets").mkdir()
    (store / "latest").unlink()
    (store / "latest").symlink_to("datasets")
    assert differences(before, snapshot(store)) == [
        "added: datasets",
        "changed: catalog.sqlite",
        "changed: latest",
        "removed: models/m/weights.bin",
    ]


def test_guard_command_fails_on_a_changed_store(tmp_path):
    store, saved = _store(tmp_path), tmp_path / "snap.json"
    guard = [sys.executable, "-m", "tests.store_guard"]
    subprocess.run([*guard, "snapshot", str(store), str(saved)], cwd=REPO, check=True)
    ok = subprocess.run([*guard, "check", str(store), str(saved)], cwd=REPO,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (store / "notes.txt").write_text("a tutorial wrote here")
    bad = subprocess.run([*guard, "check", str(store), str(saved)], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "added: notes.txt" in bad.stderr
