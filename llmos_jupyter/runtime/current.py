"""The current model of this process: what `%llmos load` picked, used when none is named."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded_model imports torch; asking for the current model must not
    from llmos_jupyter.runtime.loaded_model import LoadedModel

_current: LoadedModel | None = None
_lock = threading.Lock()


def get_current() -> LoadedModel | None:
    return _current


def set_current(model: LoadedModel | None) -> None:
    global _current
    with _lock:
        _current = model
