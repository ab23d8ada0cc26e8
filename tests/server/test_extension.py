"""The Jupyter server extension: the same routes under {base_url}llmos/, behind Jupyter's
auth (pytest-jupyter's real server and jp_fetch)."""

from __future__ import annotations

import json

import pytest
import tornado.httpclient

from tests.server.conftest import MODEL
from tests.server.test_auth import route_calls

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.slow


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"llmos_jupyter": True}}}


async def test_chat_through_jupyter_equals_in_process(jp_fetch, store_home):
    import llmos

    question = [{"role": "user", "content": "What is the capital of France?"}]
    want = llmos.load(MODEL).chat(question, max_tokens=16, temperature=0).text
    r = await jp_fetch("llmos", "v1", "chat", "completions", method="POST",
                       body=json.dumps({"model": MODEL, "messages": question,
                                        "max_tokens": 16, "temperature": 0}))
    assert json.loads(r.body)["choices"][0]["message"]["content"] == want
    models = json.loads((await jp_fetch("llmos", "v1", "models")).body)
    assert MODEL in [m["id"] for m in models["data"]]


async def test_every_route_needs_jupyter_auth(jp_fetch, store_home):
    for method, path, public in route_calls():
        body = "{}" if method not in ("GET", "DELETE") else None
        try:
            r = await jp_fetch("llmos", *path.split("/"), method=method, body=body,
                               headers={"Authorization": ""})
            status = r.code
        except tornado.httpclient.HTTPClientError as e:
            status = e.code
        if public:
            assert status == 200, (method, path)
        else:
            assert status in (401, 403), (method, path, status)


async def test_errors_are_openai_bodies_in_jupyter_too(jp_fetch, store_home):
    with pytest.raises(tornado.httpclient.HTTPClientError) as e:
        await jp_fetch("llmos", "v1", "chat", "completions", method="POST",
                       body=json.dumps({"model": "no-such-model", "messages": [
                           {"role": "user", "content": "hi"}]}))
    assert e.value.code == 404
    assert json.loads(e.value.response.body)["error"]["code"] == "model_not_found"


async def test_native_routes_in_jupyter_answer_as_the_cli(jp_fetch, store_home):
    """A verb route under {base_url}llmos/ answers what `llmos VERB --json` prints, and a
    PUT with a body passes Jupyter's auth (token) like a GET."""
    from llmos_jupyter.commands.dispatch import dispatch
    from llmos_jupyter.commands.table import Context, parse

    def cli(*argv: str):
        return json.loads(dispatch(parse([*argv, "--json"]), Context(progress=False)).json())

    r = await jp_fetch("llmos", "api", "models", MODEL)
    assert json.loads(r.body) == cli("show", MODEL)
    yaml = "name: jp-echo\ninputs: [text]\nprompt: 'Repeat: {text}'\n"
    r = await jp_fetch("llmos", "api", "tasks", "jp-echo", method="PUT", body=yaml)
    assert json.loads(r.body)["inputs"] == ["text"]
    assert json.loads((await jp_fetch("llmos", "api", "tasks", "jp-echo")).body) == \
        cli("task", "show", "jp-echo")
    await jp_fetch("llmos", "api", "tasks", "jp-echo", method="DELETE")
    doc = json.loads((await jp_fetch("llmos", "api", "openapi.json")).body)
    assert "/api/tasks/{name}/run" in doc["paths"]
