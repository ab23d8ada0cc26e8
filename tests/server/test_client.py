"""llmos.Client against a real `llmos serve`: same answers as in process, errors typed,
and importing it loads no torch."""

from __future__ import annotations

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
