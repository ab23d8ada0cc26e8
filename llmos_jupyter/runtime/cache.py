"""The loaded-model cache ("ps"): models stay in memory between calls.

Loading reads the store's native files and builds our Transformer in the requested
weight mode. A model is keyed by (store home, name, device, dtype) so two stores or two
modes never share an entry. Presets resolve to their base model's weights plus their own
system prompt and sampling defaults.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmos_jupyter.core.tokenizer_spec import TokenizerSpec
from llmos_jupyter.errors import CheckpointError

if TYPE_CHECKING:  # both import torch; the catalog verbs import this module without it
    from llmos_jupyter.runtime.loaded_model import LoadedModel
    from llmos_jupyter.tokenizer import Tokenizer


@dataclass
class CacheEntry:
    model: LoadedModel
    loaded_at: float
    load_seconds: float
    last_used: float


class ModelCache:
    """Process-wide cache of loaded models. Thread-safe."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str, str], CacheEntry] = {}
        self._lock = threading.Lock()

    def get(
        self, services: Any, name: str, device: str = "auto", dtype: str = "auto"
    ) -> LoadedModel:
        """The loaded model `name` (a model or preset in `services`' store), loading on miss."""
        key = (str(services.home), name, device, dtype)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._load(services, name, device, dtype)
                self._entries[key] = entry
            entry.last_used = time.time()
            return entry.model

    def _load(self, services: Any, name: str, device: str, dtype: str) -> CacheEntry:
        # torch, numpy: imported on first use, not with this module
        from llmos_jupyter.formats.native import read_native
        from llmos_jupyter.model.loading import build_model
        from llmos_jupyter.runtime.loaded_model import LoadedModel
        from llmos_jupyter.tokenizer import Tokenizer

        record, system, params = services.models.resolve(name)
        t0 = time.perf_counter()
        ckpt = read_native(services.models.model_dir(record.name))
        model = build_model(ckpt, device=device, dtype=dtype)
        tokenizer = Tokenizer.from_spec(ckpt.tokenizer)
        seconds = time.perf_counter() - t0
        loaded = LoadedModel(
            name, model, tokenizer,
            mode=getattr(model, "weight_mode", dtype), system=system, defaults=params,
            info={"base": record.name, "load_seconds": seconds},
        )
        now = time.time()
        return CacheEntry(loaded, now, seconds, now)

    def unload(self, name: str | None = None) -> list[str]:
        """Drop `name` (every device/dtype of it) or, with None, everything. Returns names."""
        with self._lock:
            keys = [k for k in self._entries if name is None or k[1] == name]
            for k in keys:
                del self._entries[k]
        gc.collect()
        return sorted({k[1] for k in keys})

    def list(self) -> list[dict[str, Any]]:
        """What is loaded: name, mode, device, parameter bytes, load time, last use."""
        with self._lock:
            items = list(self._entries.items())
        rows = []
        for (_home, name, _device, _dtype), e in items:
            m = e.model
            size = sum(t.numel() * t.element_size() for t in m.model.state_dict().values())
            rows.append({
                "name": name, "mode": m.mode, "device": str(m.device),
                "size_bytes": size, "load_seconds": round(e.load_seconds, 3),
                "loaded_at": e.loaded_at, "last_used": e.last_used,
            })
        return rows


MODELS = ModelCache()


def load_tokenizer(services: Any, name: str) -> Tokenizer:
    """The tokenizer of model or preset `name`, read without its weights (token counts
    need no model). Raises NotFoundError, or CheckpointError if it has no tokenizer."""
    import json

    # torch, numpy: imported on first use, not with this module
    from llmos_jupyter.formats.native import TOKENIZER
    from llmos_jupyter.tokenizer import Tokenizer

    record, _system, _params = services.models.resolve(name)
    path = services.models.model_dir(record.name) / TOKENIZER
    if not path.is_file():
        raise CheckpointError(f"model {name!r} has no tokenizer ({path} is missing)")
    try:
        spec = TokenizerSpec(**json.loads(path.read_text(encoding="utf-8")))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a tokenizer ({exc}); pull or import "
                              f"{record.name!r} again") from exc
    return Tokenizer.from_spec(spec)
