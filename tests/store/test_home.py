"""Store names: matched whole, so a trailing newline (or anything after) is refused."""

from __future__ import annotations

import pytest

from llmos_jupyter.errors import LLMOSError
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.datasets import DatasetStore
from llmos_jupyter.store.home import check_name


@pytest.mark.parametrize("name", ["ok\n", "ok\r\n", "ok\nrm", "\nok", "ok ", "a" * 129])
def test_check_name_refuses(name):
    with pytest.raises(LLMOSError, match="invalid model name"):
        check_name("model", name)


def test_check_name_accepts():
    for name in ("ok", "smollm2-135m-instruct", "org:model.v2_1", "a" * 128):
        assert check_name("model", name) == name


def test_dataset_with_trailing_newline_refused_and_nothing_left(llmos_home):
    datasets = DatasetStore(Catalog())
    with pytest.raises(LLMOSError, match=r"invalid dataset name 'ok\\n'"):
        datasets.add("ok\n", [{"text": "a"}])
    assert datasets.names() == []
    assert not any((llmos_home / "datasets").iterdir())


def test_staging_cleanup_knows_dead_from_live_without_waiting(llmos_home):
    """A stage- directory without a held lock is stale at once (staging locks before it
    names a directory stage-); a making- directory is stale when its PID is dead."""
    import os
    import subprocess
    import sys

    from llmos_jupyter.store.home import HomeLayout

    home = HomeLayout(llmos_home)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    home.tmp.mkdir(parents=True, exist_ok=True)
    unlocked = home.tmp / "stage-model-x-0123456789ab"
    orphan = home.tmp / f"making-{dead}-0123456789ab"
    mine = home.tmp / f"making-{os.getpid()}-0123456789ab"
    for d in (unlocked, orphan, mine):
        d.mkdir()
    with home.staging("model") as live:
        removed = set(home.clean_stale_staging())
        assert live.name.startswith("stage-model-") and live.is_dir()
    assert removed == {unlocked, orphan}
    assert mine.is_dir() and not live.exists()
