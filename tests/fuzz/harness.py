"""Run one fuzz case (import, then load and generate) in a forked child, bounded in time.

Each case runs in its own child process forked from the test process, which has torch
and our native kernel already loaded, so a case costs a fork rather than an interpreter
start. A segfault or an abort kills only the child (outcome "crash"), a case past its
time bound is killed (outcome "hang"), and the parent then checks the store for leftovers.

What each outcome means and whether it is allowed:

    refused          the import raised an LLMOSError of our readers' own        allowed
    accepted-same    imported; weights, config and tokenizer equal the          allowed
                     unmutated model's, and so is the greedy output
    accepted-changed imported; something used changed (weights, config or       allowed
                     tokenizer), the model loads, and generates or refuses the prompt
                     with an LLMOSError (a context of 2 tokens cannot hold it)
    --- failures ---
    safety-net       refused only by the importer's catch-all (a reader raised some
                     other exception, e.g. a TypeError, that the catch-all wrapped)
    exception        the import raised something that is not an LLMOSError
    unloadable       imported (registered), but load failed, or generation raised
                     something other than an LLMOSError
    same-but-differs weights, config and tokenizer equal the original's, output not
    header-changed-weights  the edits lie wholly in the header (metadata, tensor table)
                     yet the accepted model's weights differ: a table entry was silently
                     reinterpreted (retyped, moved, overlapping), which llama.cpp refuses
    crash, hang      the child died by a signal, or ran past the bound
    leftovers        a refused case left models/<name> or a catalog row behind
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sqlite3
import traceback
from pathlib import Path
from typing import Any

PROMPT = "hello world, the"
# kind -> outcome -> count, filled by the tests and printed by conftest.py at the end.
SUMMARY: dict[str, dict[str, int]] = {}
NEW_TOKENS = 6
ALLOWED = ("refused", "accepted-same", "accepted-changed")


def fingerprint(model_dir: Path) -> dict[str, str]:
    """Hashes of what a load uses: the weights (with the quantized table), the config
    (less its free-form `extra`: name, source) and the tokenizer."""
    import torch
    from safetensors.torch import load_file

    config = json.loads((model_dir / "config.json").read_text())
    model = {k: v for k, v in config["model"].items() if k != "extra"}
    tokenizer = model_dir / "tokenizer.json"
    # Tensor by tensor: the file's own bytes vary (safetensors orders its metadata freely).
    weights = hashlib.sha256(json.dumps(config.get("quantized"), sort_keys=True).encode())
    for name, t in sorted(load_file(str(model_dir / "model.safetensors")).items()):
        weights.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        weights.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {
        "weights": weights.hexdigest(),
        "config": json.dumps(model, sort_keys=True),
        "tokenizer": hashlib.sha256(tokenizer.read_bytes()).hexdigest()
        if tokenizer.exists() else "",
    }


def load(model_dir: Path) -> tuple[Any, Any]:
    """(model, tokenizer) of a native model, loaded as the runtime does (auto weight
    mode: our ggml kernel for block weights)."""
    from llmos_jupyter.formats.native import read_native
    from llmos_jupyter.model.loading import build_model
    from llmos_jupyter.tokenizer import Tokenizer

    ckpt = read_native(model_dir)
    return build_model(ckpt, device="cpu", dtype="auto"), Tokenizer.from_spec(ckpt.tokenizer)


def greedy_ids(model: Any, tokenizer: Any) -> list[int]:
    """The model's greedy completion of PROMPT (NEW_TOKENS ids)."""
    from llmos_jupyter.core.params import GenerationParams
    from llmos_jupyter.engine.generate import generate

    params = GenerationParams(max_tokens=NEW_TOKENS, temperature=0, ignore_eos=True)
    return generate(model, tokenizer, [tokenizer.encode(PROMPT)], params)[0].token_ids


def attempt(data: bytes, workdir: Path, name: str) -> dict[str, Any]:
    """In the child: import the bytes as model `name`, then load and generate."""
    import torch

    from llmos_jupyter.errors import LLMOSError
    from llmos_jupyter.store.catalog import Catalog
    from llmos_jupyter.store.models import ModelStore

    torch.set_num_threads(1)
    path = workdir / f"{name}.gguf"
    path.write_bytes(data)
    try:
        store = ModelStore(Catalog())
        try:
            store.import_model(name, path)
        except LLMOSError as exc:
            net = str(exc).startswith("cannot read checkpoint")
            return {"outcome": "safety-net" if net else "refused",
                    "error": f"{type(exc).__name__}: {exc}"[:400]}
        except Exception:
            return {"outcome": "exception", "error": traceback.format_exc()[-1500:]}
        model_dir = store.model_dir(name)
        try:
            fp = fingerprint(model_dir)
            model, tokenizer = load(model_dir)  # a registered model must load: no excuses
            try:
                ids: list[int] | str = greedy_ids(model, tokenizer)
            except LLMOSError as exc:  # a clean refusal of the prompt, e.g. by a tiny context
                ids = f"{type(exc).__name__}: {exc}"[:400]
        except Exception:
            return {"outcome": "unloadable", "error": traceback.format_exc()[-1500:]}
        finally:
            store.remove(name)
        return {"outcome": "accepted", "fingerprint": fp, "ids": ids}
    finally:
        path.unlink(missing_ok=True)


def _child(conn: Any, data: bytes, workdir: Path, name: str) -> None:
    try:
        result = attempt(data, workdir, name)
    except BaseException:
        result = {"outcome": "exception", "error": traceback.format_exc()[-1500:]}
    conn.send(result)
    conn.close()


def run_case(data: bytes, workdir: Path, name: str, timeout_s: float) -> dict[str, Any]:
    """Run one case in a forked child; the result dict has at least "outcome"."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, data, workdir, name))
    proc.start()
    send.close()
    result: dict[str, Any] | None = None
    if recv.poll(timeout_s):
        try:
            result = recv.recv()
        except EOFError:  # the child died before sending
            result = None
    proc.join(5 if result is not None else 0.5)
    if proc.is_alive():
        proc.kill()
        proc.join()
        if result is None:
            return {"outcome": "hang", "error": f"no answer within {timeout_s} s"}
    if result is None:
        return {"outcome": "crash", "error": f"child exited with code {proc.exitcode}"}
    return result


def leftovers(home: Path, name: str) -> list[str]:
    """What of model `name` is in the store at `home` (files or a catalog row)."""
    found = []
    if (home / "models" / name).exists():
        found.append(f"models/{name}")
    db = home / "catalog.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone():
                found.append("catalog row")
    return found


def classify(result: dict[str, Any], baseline: dict[str, Any], header_only: bool) -> str:
    """The outcome name (see the module docstring) of an attempt's result."""
    outcome = result["outcome"]
    if outcome != "accepted":
        return outcome
    same = result["fingerprint"] == baseline["fingerprint"]
    if same:  # (a refused prompt, ids as an error text, differs from the baseline's ids)
        return "accepted-same" if result["ids"] == baseline["ids"] else "same-but-differs"
    if header_only and result["fingerprint"]["weights"] != baseline["fingerprint"]["weights"]:
        return "header-changed-weights"
    return "accepted-changed"


def set_home(home: Path) -> None:
    """Point LLMOS_HOME at `home` for this process and the children it forks."""
    os.environ["LLMOS_HOME"] = str(home)
