"""Progress bars for long work: a widget in notebooks, text in terminals (tqdm.auto)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Progress = Callable[[int, int, str], None]
BYTE_STAGES = ("download", "extract", "verify")


@contextmanager
def progress_callback(progress: bool | Progress | None, desc: str) -> Iterator[Progress | None]:
    """Turn the `progress` argument of an API call into a (done, total, stage) callback.

    True draws a tqdm.auto bar whose description follows the stage (download, extract,
    verify, convert); a callable is passed through; False/None gives no callback. The bar
    appears at the first report: work that fails at once or has nothing to do (a model
    already pulled) draws none.
    """
    if callable(progress):
        yield progress
        return
    if not progress:
        yield None
        return
    from tqdm.auto import tqdm

    bar = None
    state = {"stage": None}

    def update(done: int, total: int, stage: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=desc, leave=True)
        if stage != state["stage"]:
            state["stage"] = stage
            # Byte stages count bytes; the others (convert) count steps.
            bar.unit, bar.unit_scale = ("B", True) if stage in BYTE_STAGES else ("step", False)
            bar.reset(total=total or None)
            bar.set_description(f"{desc}: {stage}")
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


Count = Callable[[int, int], None]


class CountBar:
    """A (done, total) callback drawing a tqdm.auto bar of items (a widget in notebooks,
    text in terminals). The bar appears at the first report, so work that fails before
    its first item draws none, and closes itself when done reaches total. It may be called
    from a background thread, since it only updates the bar."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="item", leave=True)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the bar where it stands (a run that failed or was cancelled part way)."""
        if self.bar is not None:
            self.bar.close()


def count_callback(progress: bool | Count | None, desc: str) -> Count | None:
    """A (done, total) callback for item counts (dataset runs, tokenization).

    True gives a CountBar; a callable is passed through; False/None gives None.
    """
    if callable(progress):
        return progress
    if not progress:
        return None
    return CountBar(desc)


@contextmanager
def count_progress(
    progress: bool | Count | None, desc: str, foreground: bool
) -> Iterator[Count | None]:
    """count_callback for one call. Its bar ends when the call raises, or when it returns
    if the work ran in the calling thread (`foreground`), so a run that fails part way
    leaves one finished bar; a background run's bar ends itself at the last item."""
    callback = count_callback(progress, desc)
    try:
        yield callback
    except BaseException:
        if isinstance(callback, CountBar):
            callback.close()
        raise
    if foreground and isinstance(callback, CountBar):
        callback.close()
