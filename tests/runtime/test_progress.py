"""Progress bars appear only when there is progress to show, and end with their work."""

from __future__ import annotations

import pytest

from llmos_jupyter.runtime.progress import CountBar, count_progress, progress_callback


def test_byte_bar_appears_at_the_first_report_only(capsys):
    with progress_callback(True, "pull x") as cb:
        pass  # nothing to download (already pulled), or an error before any report
    assert capsys.readouterr().err == ""
    with progress_callback(True, "pull x") as cb:
        cb(512, 1024, "download")
        cb(1024, 1024, "download")
    err = capsys.readouterr().err
    assert "pull x: download" in err and "1.00k" in err.lower()


def test_count_bar_of_a_run_that_fails_before_its_first_item_draws_nothing(capsys):
    with pytest.raises(RuntimeError), count_progress(True, "task on data", foreground=True):
        raise RuntimeError("bad mapping")
    assert capsys.readouterr().err == ""


def test_count_bar_ends_where_a_failed_run_stopped(capsys):
    with pytest.raises(RuntimeError), count_progress(True, "task on data", foreground=False) as cb:
        cb(0, 4)
        cb(1, 4)
        raise RuntimeError("model crashed")
    assert isinstance(cb, CountBar) and cb.bar.disable  # closed: it will not print again
    assert "1/4" in capsys.readouterr().err


def test_callables_pass_through():
    seen = []
    with count_progress(lambda d, t: seen.append((d, t)), "x", foreground=True) as cb:
        cb(2, 3)
    assert seen == [(2, 3)]
