"""Progress bars for long work: a widget in notebooks, text in terminals (tqdm.auto)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Progress = Callable[[int, int, str], None]
BYTE_STAGES = ("download", "extract", "verify")


@contextmanager
def progress_callback(progress: bool | Progress | None, desc: str) -> Iterator[Progress | None]:
    """Turn the `progress` argument of an API call into a (done, total, stage) callback.

    True draws a tqdm.auto bar whose description follows the stage (download, extract,
    verify, convert); a callable is passed through; False/None gives no callback.
    """
    if callable(progress):
        yield progress
        return
    if not progress:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=True)
    state = {"stage": None}

    def update(done: int, total: int, stage: str) -> None:
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
        bar.close()


Count = Callable[[int, int], None]


def count_callback(progress: bool | Count | None, desc: str) -> Count | None:
    """A (done, total) callback for item counts (dataset runs, tokenization).

    True draws a tqdm.auto bar (a widget in notebooks, text in terminals) that closes
    itself when done reaches total; it may be called from a background thread, since it
    only updates the bar. A callable is passed through; False/None gives None.
    """
    if callable(progress):
        return progress
    if not progress:
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=desc, unit="item", leave=True)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update
