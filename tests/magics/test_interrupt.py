"""Interrupting a real kernel mid-generation keeps the partial text and the model usable."""

from __future__ import annotations

import os
import time

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


def _run(kc, code: str, timeout: float = 300) -> dict:
    """Execute code; return {'stdout': str, 'status': str, 'error': str|None}."""
    msg_id = kc.execute(code)
    out, error = [], None
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            error = content["ename"]
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    return {"stdout": "".join(out), "status": reply["content"]["status"], "error": error}


def test_interrupt_keeps_partial_text_and_model_works(store_home):
    km, kc = start_new_kernel(env={**os.environ, "LLMOS_HOME": str(store_home)})
    try:
        assert _run(kc, f"%load_ext llmos\n%llmos load {MODEL}")["status"] == "ok"
        msg_id = kc.execute(
            "%%llmos generate --max-tokens 400 --temperature 0 -o out\n"
            "Once upon a time, in a land far away,"
        )
        # Wait until text streams, then interrupt the kernel as the notebook's stop button does.
        streamed, deadline = "", time.time() + 300
        while time.time() < deadline and len(streamed) < 20:
            msg = kc.get_iopub_msg(timeout=300)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                streamed += msg["content"]["text"]
        km.interrupt_kernel()
        while True:  # drain the interrupted cell
            msg = kc.get_iopub_msg(timeout=60)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                break
        kc.get_shell_msg(timeout=60)
        check = _run(kc, "print(out.finish_reason, len(out.token_ids) < 400, bool(out.text))")
        assert check["stdout"].split() == ["cancelled", "True", "True"], check
        again = _run(kc, "%%llmos generate --max-tokens 4 --temperature 0 -o again\n"
                         "The capital of France is\n")
        assert again["status"] == "ok" and "Paris" in again["stdout"], again
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
