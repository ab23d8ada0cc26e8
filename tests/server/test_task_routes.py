"""Tasks as endpoints: a task defined in the store answers over HTTP exactly as it does
in process, and each call is a run in the store."""

from __future__ import annotations

import pytest

from tests.server.conftest import MODEL
from tests.server.test_errors import post

pytestmark = pytest.mark.slow

BRIEF = {"inputs": ["text"], "prompt": "Summarize in one short sentence: {text}",
         "params": {"max_tokens": 24, "temperature": 0}}
DOC = ("The city council approved a plan to plant two thousand trees along the river. "
       "Work starts in April and should take three years.")


@pytest.fixture
def brief_task(store_home):
    import llmos

    llmos.tasks.add("brief-http", BRIEF)
    yield "brief-http"
    llmos.tasks.rm("brief-http")


def test_invoke_equals_in_process_run(served, brief_task):
    import llmos

    want = llmos.run(brief_task, text=DOC, model=MODEL)
    status, body = post(served, f"api/tasks/{brief_task}/invoke",
                        {"inputs": {"text": DOC}, "model": MODEL})
    assert status == 200, body
    assert body["output"] == want.output and body["status"] == "succeeded"
    assert body["usage"]["completion_tokens"] > 0
    assert llmos.runs.get(body["run_id"]).status == "succeeded"


def test_builtin_task_with_its_own_inputs(served):
    import llmos

    inputs = {"text": "I love this phone. The camera is great.", "labels": "positive, negative"}
    want = llmos.run("classify", model=MODEL, **inputs).output
    status, body = post(served, "api/tasks/classify/invoke", {"inputs": inputs,
                                                              "model": MODEL})
    assert status == 200 and body["output"] == want


@pytest.mark.parametrize("name, body, status, words", [
    ("no-such-task", {"inputs": {"text": "x"}}, 404, "unknown task 'no-such-task'"),
    ("summarize", {"inputs": {}}, 400, "text"),
    ("summarize", {"inputs": ["text"]}, 400, "'inputs' must be an object"),
    ("summarize", {"inputs": {"text": "x"}, "model": "nope"}, 404, "unknown model 'nope'"),
    ("..%2F..%2Fetc", {"inputs": {"text": "x"}}, 404, "unknown task"),
])
def test_bad_invocations(served, name, body, status, words):
    got, err = post(served, f"api/tasks/{name}/invoke", body)
    assert got == status, err
    assert words in err["error"]["message"]
