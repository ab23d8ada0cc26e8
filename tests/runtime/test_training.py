"""Training runs on a tiny model: bad input refused before any step, Ctrl-C and cancel,
resume after SIGKILL equal to an uninterrupted run, DDP under torchrun equal to one
process with gradient accumulation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmos_jupyter import api
from llmos_jupyter.engine.train_data import build_examples, detect_fields
from llmos_jupyter.errors import ConfigError, DataError
from llmos_jupyter.formats.native import read_native
from llmos_jupyter.runtime.services import services
from tests.checkpoint_factory import write_tiny_gguf

REPO = Path(__file__).resolve().parents[2]
WORDS = "the cat sat on a mat while hello world is here and there".split()
# Small steps, several checkpoints: the shared settings of the runs compared below.
SETTINGS = dict(steps=12, batch_size=2, seq_len=32, lr=1e-2, checkpoint_every=3, seed=3)


@pytest.fixture
def tiny_store(llmos_home, tmp_path):
    """LLMOS_HOME with model 'tiny' (random, float32 GGUF) and datasets 'docs', 'pairs'."""
    api.import_model("tiny", write_tiny_gguf(tmp_path / "tiny.gguf"))
    docs = [{"text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i % 5))}
            for i in range(40)]
    api.datasets.add("docs", docs)
    api.datasets.add("pairs", [{"prompt": f"hello {w}", "response": f"the {w}"} for w in WORDS])
    return llmos_home


def _weights(name: str) -> dict[str, torch.Tensor]:
    ckpt = read_native(services().models.model_dir(name))
    return {k: v for k, v in ckpt.tensors.items()}


def _assert_same_weights(a: str, b: str, atol: float) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=k)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest on one thread, and a busy machine's spinning thread pools
    slow them many times over; subprocesses get the same setting (results compared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "kernels"),
                                         env.get("PYTHONPATH", "")])
    return env


# -- bad input: a clear error, and no run recorded ---------------------------------------


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(data="docs", prompt_field="question"), DataError, r"no field\(s\) \['question'"),
    (dict(data="docs", text_field="body"), DataError, "columns are"),
    (dict(data="pairs", seq_len=8), DataError, "row 0 is .* tokens long"),
    (dict(data="docs", lr=0), ConfigError, "learning rate must be a positive"),
    (dict(data="docs", lr=-1e-3), ConfigError, "learning rate must be a positive"),
    (dict(data="docs", seq_len=100_000), ConfigError, "exceeds .* context"),
    (dict(data="docs", steps=0), ConfigError, "steps must be a positive"),
    (dict(data="nope"), LookupError, "unknown dataset"),
])
def test_bad_input_fails_before_any_step(tiny_store, kwargs, error, match):
    with pytest.raises(error, match=match):
        api.train("tiny", output="never", **{"steps": 3, "seq_len": 32, **kwargs})
    assert api.runs.list() == []
    assert "never" not in [m["name"] for m in api.list_models()]


def test_empty_data_is_refused(tiny_store):
    fields = detect_fields("empty", ["text"])
    with pytest.raises(DataError, match="is empty"):
        build_examples("empty", [], fields, str.split, None, 2, 16)
    api.datasets.add("blank", [{"text": " "}, {"text": ""}])
    with pytest.raises(DataError, match="no tokens to learn from|empty"):
        api.train("tiny", data="blank", output="never", steps=2, seq_len=32)
    assert api.runs.list() == []


def test_a_model_without_float_weights_cannot_train(tiny_store):
    loaded = api.load("tiny", dtype="int8")
    with pytest.raises(ConfigError, match="no float weights"):
        api.train(loaded, data="docs", output="never", steps=2, seq_len=32)
    assert api.runs.list() == []


def test_output_name_taken_is_refused(tiny_store):
    with pytest.raises(ConfigError, match="already exists"):
        api.train("tiny", data="docs", output="tiny", steps=2, seq_len=32)


# -- stopping and resuming ---------------------------------------------------------------


def test_ctrl_c_keeps_a_checkpoint_and_resume_equals_an_uninterrupted_run(tiny_store):
    straight = api.train("tiny", data="docs", output="straight", background=False,
                         **SETTINGS)
    assert straight.status == "succeeded" and len(straight.metrics) == SETTINGS["steps"]

    def interrupt_at_5(m):
        if m["step"] == 5:
            raise KeyboardInterrupt

    stopped = api.train("tiny", data="docs", output="resumed", background=False,
                        progress=interrupt_at_5, **SETTINGS)
    rec = stopped.record()
    assert rec.status == "interrupted" and rec.done == 5 and "resume" in rec.error
    assert (services().runs.run_dir(rec.id) / "checkpoint.pt").is_file()
    assert [m["step"] for m in stopped.metrics] == [1, 2, 3, 4, 5]

    resumed = api.runs.resume(rec.id, background=False)
    assert resumed.status == "succeeded"
    assert [m["loss"] for m in resumed.metrics] == pytest.approx(
        [m["loss"] for m in straight.metrics], abs=1e-6)
    _assert_same_weights("resumed", "straight", atol=1e-6)


def test_cancel_stops_a_background_run(tiny_store):
    def cancel_at_2(m):
        if m["step"] == 2:
            api.runs.cancel(api.runs.list()[0]["id"])

    handle = api.train("tiny", data="docs", output="cancelled", progress=cancel_at_2,
                       **{**SETTINGS, "steps": 200})
    handle.wait(timeout=120)
    rec = handle.record()
    assert rec.status == "cancelled" and rec.done < 200
    assert "cancelled" not in [m["name"] for m in api.list_models()]


def test_resume_after_sigkill_equals_an_uninterrupted_run(tiny_store):
    args = ["--steps", "60", "--batch-size", "4", "--seq-len", "32", "--lr", "1e-2",
            "--checkpoint-every", "4", "--seed", "3", "--data", "docs"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmos_jupyter.cli", "train", "tiny", "-O", "killed", *args],
        env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs_dir = tiny_store / "runs"
    deadline = time.monotonic() + 300
    ckpt = None
    while ckpt is None and time.monotonic() < deadline and proc.poll() is None:
        found = list(runs_dir.glob("*/checkpoint.pt")) if runs_dir.is_dir() else []
        ckpt = found[0] if found else None
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt is not None, "the training process ended before writing a checkpoint"
    rec = api.runs.list()[0]
    assert rec["status"] == "interrupted", rec  # the dead pid is noticed
    assert 0 < rec["progress"]["done"] < 60

    resumed = api.runs.resume(rec["id"], background=False)
    assert resumed.status == "succeeded"
    straight = api.train("tiny", data="docs", output="straight", background=False,
                         steps=60, batch_size=4, seq_len=32, lr=1e-2, checkpoint_every=4,
                         seed=3)
    assert straight.metrics[-1]["loss"] == pytest.approx(resumed.metrics[-1]["loss"], abs=1e-6)
    _assert_same_weights("killed", "straight", atol=1e-6)
    assert api.show("killed")["lineage"]["steps"] == 60


# -- DDP ---------------------------------------------------------------------------------


def test_ddp_two_processes_equal_one_process_with_accumulation_two(tiny_store, tmp_path):
    common = "model: tiny\ndata: docs\nsteps: 10\nbatch_size: 2\nseq_len: 32\nlr: 0.01\n"
    (tmp_path / "ddp.yaml").write_text(common + "output: ddp\ngrad_accum: 1\n")
    (tmp_path / "one.yaml").write_text(common + "output: one\ngrad_accum: 2\n")
    env = _env()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--standalone", "-m", "llmos_jupyter.train",
                    str(tmp_path / "ddp.yaml")], env=env, cwd=REPO, check=True,
                   capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "llmos_jupyter.train", str(tmp_path / "one.yaml")],
                   env=env, cwd=REPO, check=True, capture_output=True, timeout=600)
    by_output = {r["spec"]["output"]: r for r in api.runs.list()}
    ddp = api.runs.get(by_output["ddp"]["id"]).metrics
    one = api.runs.get(by_output["one"]["id"]).metrics
    assert len(ddp) == len(one) == 10
    assert abs(ddp[-1]["loss"] - one[-1]["loss"]) <= 1e-4
    assert ddp[-1]["tokens"] == one[-1]["tokens"]  # the same examples in each step
    _assert_same_weights("ddp", "one", atol=1e-4)
