"""llmos.Client against a real `llmos serve`: same answers as in process, errors typed,
and importing it loads no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmos_jupyter.client import ClientError
from tests.seed_home import REPO
from tests.server.conftest import MODEL

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(served):
    import llmos

    return llmos.Client(served.url, api_key=served.key)


def test_client_imports_no_torch():
    code = ("import sys, llmos; llmos.Client('http://127.0.0.1:1'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_models_chat_generate_invoke(client, store_home):
    import llmos

    assert MODEL in [m["id"] for m in client.models.list()]
    assert client.health()["status"] == "ok"
    m = llmos.load(MODEL)
    want = m.chat(QUESTION, max_tokens=16, temperature=0).text
    got = client.chat(MODEL, QUESTION, max_tokens=16, temperature=0)
    assert got.text == want and got.usage["completion_tokens"] > 0
    assert "".join(client.chat(MODEL, QUESTION, max_tokens=16, temperature=0,
                               stream=True)) == want
    want = m.generate("Once upon a time", max_tokens=12, temperature=0).text
    assert client.generate(MODEL, "Once upon a time", max_tokens=12, temperature=0).text == want
    assert "".join(client.generate(MODEL, "Once upon a time", max_tokens=12, temperature=0,
                                   stream=True)) == want
    out = client.invoke("classify", model=MODEL, text="I love this phone.",
                        labels="positive, negative")
    assert out.output == llmos.run("classify", model=MODEL, text="I love this phone.",
                                   labels="positive, negative").output
    assert llmos.runs.get(out.run_id).status == "succeeded"


def test_errors_are_typed(client, served):
    import llmos

    with pytest.raises(ClientError) as e:
        client.chat("no-such-model", QUESTION)
    assert e.value.status == 404 and e.value.code == "model_not_found"
    assert "unknown model 'no-such-model'" in str(e.value)
    with pytest.raises(ClientError) as e:
        llmos.Client(served.url, api_key="wrong").models.list()
    assert e.value.status == 401
    with pytest.raises(ClientError, match="cannot reach the LLMOS server"):
        llmos.Client("http://127.0.0.1:9", timeout=5).health()
    for bad in ("not a url", "ftp://host/", "127.0.0.1:8765", None):
        with pytest.raises(ValueError, match="is not an http\\(s\\) URL"):
            llmos.Client(bad)


def test_client_datasets_tasks_and_remote_runs(client, store_home, tmp_path):
    """The SDK's native half: upload, a task, a run the server executes (progress,
    wait, results), cancel, and the store's records, with the in-process names."""
    import llmos

    rows = tmp_path / "sdk.jsonl"
    rows.write_text("".join(json.dumps({"body": t}) + "\n"
                            for t in ("I love it", "awful day", "it is fine")))
    rec = client.datasets.add("sdk-reviews", rows, replace=True)
    assert rec["rows"] == 3 and "sdk-reviews" in [d["name"] for d in client.datasets.list()]
    assert client.datasets.show("sdk-reviews", head=1)["head"] == [{"body": "I love it"}]
    client.tasks.add("sdk-echo", "name: sdk-echo\ninputs: [text]\nprompt: 'Repeat: {text}'\n")
    assert client.tasks.show("sdk-echo")["inputs"] == ["text"]

    run = client.run("sdk-echo", data="sdk-reviews", map={"text": "body"}, model=MODEL,
                     max_tokens=3, temperature=0)
    seen = []
    run.wait(on_progress=lambda rec: seen.append(rec["progress"]["done"]))
    assert run.status == "succeeded" and run.progress["done"] == 3 and seen[-1] == 3
    results = run.results()
    assert [r["inputs"]["text"] for r in results] == ["I love it", "awful day", "it is fine"]
    in_process = [{k: v for k, v in r.items() if k != "run_id"}
                  for r in llmos.runs.get(run.id).results()]
    assert results == in_process  # the same rows as in process
    assert run.id in [r["id"] for r in client.runs.list()]

    one = client.run("sdk-echo", text="hello", model=MODEL, max_tokens=3, temperature=0)
    assert one["status"] == "succeeded" and one["output"]

    out = tmp_path / "back.csv"
    client.datasets.export("sdk-reviews", out)
    assert out.read_text().splitlines()[0] == "body"
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({"text": f"story {i}"}) + "\n" for i in range(40)))
    client.datasets.add("sdk-long", long, replace=True)
    slow = client.run("summarize", data="sdk-long", model=MODEL, max_tokens=64)
    slow.cancel().wait()
    assert slow.status == "cancelled" and slow.progress["done"] < 40

    client.tasks.rm("sdk-echo")
    client.datasets.rm("sdk-reviews")
    client.datasets.rm("sdk-long")
    with pytest.raises(ClientError) as e:
        client.tasks.show("sdk-echo")
    assert e.value.status == 404 and e.value.code == "task_not_found"


def test_client_models_pull_show_load(client):
    events = []
    rec = client.models.pull(MODEL, on_progress=events.append)
    assert rec["name"] == MODEL and client.models.show(MODEL)["arch"] == "llama"
    assert client.models.load(MODEL)["name"] == MODEL
    assert MODEL in [m["name"] for m in client.models.ps()]
    client.models.unload(MODEL)
