"""`llmos train`, `llmos eval`, `llmos task eval` and `%%llmos train` on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from llmos_jupyter import api
from llmos_jupyter.cli import main
from llmos_jupyter.errors import ConfigError
from tests.checkpoint_factory import write_tiny_gguf


@pytest.fixture
def tiny_store(llmos_home, tmp_path):
    api.import_model("tiny", write_tiny_gguf(tmp_path / "tiny.gguf"))
    api.datasets.add("pairs", [{"prompt": f"hello {i}", "response": "the world"}
                               for i in range(8)])
    api.datasets.add("labelled", [{"text": f"hello {i}", "label": "world"} for i in range(4)])
    api.tasks.add("echo", {"name": "echo", "inputs": ["text"], "chat": True,
                           "prompt": "{text}", "params": {"max_tokens": 2, "temperature": 0}})
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: thread pools only cost time
    yield llmos_home
    torch.set_num_threads(before)


def _json(capsys, *argv):
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_cli_train_then_eval_and_task_eval(tiny_store, capsys):
    out = _json(capsys, "train", "tiny", "--data", "pairs", "-O", "tuned", "--steps", "3",
                "--seq-len", "32", "--lr", "1e-2", "--lora-targets", "all-linear")
    assert out["status"] == "succeeded" and out["model"] == "tuned" and out["steps"] == "3/3"
    runs = _json(capsys, "runs", "list")
    assert runs[0]["kind"] == "train" and runs[0]["task"] == "train"
    shown = _json(capsys, "show", "tuned")
    assert shown["lineage"]["base"] == "tiny" and shown["lineage"]["dataset"] == "pairs"
    assert shown["lineage"]["hyperparameters"]["lora_targets"][0] == "q_proj"
    assert shown["source"] == f"train:{out['run_id']}"

    ev = _json(capsys, "eval", "tuned", "--data", "pairs")
    assert ev["kind"] == "instruction" and ev["tokens"] > 0
    assert ev["perplexity"] == pytest.approx(2.718281828 ** ev["loss"], rel=1e-4)

    te = _json(capsys, "task", "eval", "echo", "--data", "labelled", "--label", "label",
               "--model", "tuned")
    assert te["n"] == 4 and 0 <= te["accuracy"] <= 1
    assert te["per_label"][0]["label"] == "world" and te["per_label"][0]["n"] == 4
    assert len(te["failures"]) == 4 - te["correct"]


def test_cli_gradient_checkpointing_reaches_the_run(tiny_store, capsys):
    out = _json(capsys, "train", "tiny", "--data", "pairs", "-O", "ck", "--steps", "1",
                "--seq-len", "32", "--gradient-checkpointing")
    assert out["status"] == "succeeded"
    shown = _json(capsys, "show", "ck")
    assert shown["lineage"]["hyperparameters"]["gradient_checkpointing"] is True


def test_cli_bad_input_is_an_error_message(tiny_store, capsys):
    assert main(["train", "tiny", "--data", "pairs", "--lr", "0", "--seq-len", "32"]) == 1
    assert "learning rate must be a positive" in capsys.readouterr().err
    assert main(["task", "eval", "echo", "--data", "labelled", "--label", "answer"]) == 1
    assert "no label column 'answer'" in capsys.readouterr().err


def test_eval_refuses_a_batch_or_length_that_cannot_work(tiny_store):
    # Through the Python API (the CLI's parser refuses them before: test_verb_parity).
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        api.eval_model("tiny", data="pairs", batch_size=0)
    with pytest.raises(ConfigError, match="seq_len must be an integer >= 2"):
        api.eval_model("tiny", data="pairs", seq_len=-4)


def test_train_cell_magic(tiny_store):
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "llmos")
    ip.run_cell_magic("llmos", "train --wait -o run",
                      "model: tiny\ndata: pairs\noutput: celled\nsteps: 2\nseq_len: 32\n")
    run = ip.user_ns["run"]
    assert run.status == "succeeded" and len(run.metrics) == 2
    assert "celled" in [m["name"] for m in api.list_models()]
    with pytest.raises(UsageError, match="at least `model:` and `data:`"):
        ip.run_cell_magic("llmos", "train", "steps: 3\n")
