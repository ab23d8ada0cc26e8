"""The native REST API against a real `llmos serve`: each route answers what the same
verb prints with --json, errors carry the CLI's messages, uploads and downloads round
trip, runs start in the server and stream their progress, and bad input is refused."""

from __future__ import annotations

import json
import socket
import tempfile
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from llmos_jupyter.commands.dispatch import dispatch
from llmos_jupyter.commands.output import error_message
from llmos_jupyter.commands.table import Context, parse
from llmos_jupyter.server.verb_routes import MAX_UPLOAD_BYTES
from tests.server.conftest import MODEL, wait_until

pytestmark = pytest.mark.slow
ROWS = b'{"text": "I love it"}\n{"text": "awful day"}\n{"text": "it is fine"}\n'


def http(served, method: str, path: str, body=None, raw: bytes | None = None):
    """(status, parsed JSON or raw bytes, headers) of one request with the server's key."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(f"{served.url}/{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {served.key}"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            payload, status, headers = r.read(), r.status, r.headers
    except urllib.error.HTTPError as e:
        payload, status, headers = e.read(), e.code, e.headers
    if "json" in (headers.get("Content-Type") or ""):
        return status, json.loads(payload), headers
    return status, payload, headers


def cli_json(*argv: str):
    """What `llmos ARGV --json` prints, parsed (in this process, same store)."""
    return json.loads(dispatch(parse([*argv, "--json"]), Context(progress=False)).json())


def cli_error(*argv: str) -> str:
    with pytest.raises(Exception) as e:
        dispatch(parse(list(argv)), Context(progress=False))
    return error_message(e.value)


def sse(served, path: str, body: dict | None = None) -> list[dict]:
    """Every `data:` event of a stream (a GET, or a POST of `body`), parsed, until the
    server ends it."""
    req = urllib.request.Request(f"{served.url}/{path}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 method="GET" if body is None else "POST",
                                 headers={"Authorization": f"Bearer {served.key}"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return [json.loads(line[6:]) for line in r.read().decode().splitlines()
                if line.startswith("data: ")]


def test_reads_answer_as_the_cli(served, store_home):
    for path, argv in [("api/models", ["list"]), (f"api/models/{MODEL}", ["show", MODEL]),
                       ("api/tasks", ["task", "list"]), ("api/tasks/classify",
                                                         ["task", "show", "classify"])]:
        status, body, _ = http(served, "GET", path)
        assert status == 200 and body == cli_json(*argv), path


def test_errors_carry_the_cli_message(served, store_home):
    status, body, _ = http(served, "GET", "api/models/no-such-model")
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert body["error"]["message"] == cli_error("show", "no-such-model")
    status, body, _ = http(served, "DELETE", "api/datasets/no-such-data")
    assert status == 404 and body["error"]["message"] == cli_error("data", "rm", "no-such-data")


@pytest.mark.parametrize("method,path,body,field,says", [
    ("GET", "api/runs?limit=many", None, "limit", "must be an integer"),
    ("GET", "api/runs?limt=3", None, "limt", "did you mean 'limit'"),
    ("POST", "api/models/cp", {"src": MODEL}, "dst", "'dst' is required"),
    ("POST", "api/models/cp", {"src": MODEL, "dst": 7}, "dst", "must be a string"),
    ("POST", "api/tasks/classify/run", {"limit": True}, "limit", "must be an integer"),
    ("POST", "api/tasks/classify/run", {"map": ["text"]}, "map", "must be an object"),
    ("POST", "api/train", {"model": MODEL, "data": "d", "method": "half"}, "method",
     "must be one of lora, full"),
    ("POST", "api/models/cp", [1, 2], None, "must be a JSON object"),
    ("GET", "api/runs?limit=-1", None, "limit", "must be at least 1, got -1"),
    ("GET", "api/runs/some-run?offset=-2", None, "offset", "must be at least 0, got -2"),
    ("POST", "api/train", {"model": MODEL, "data": "d", "steps": 0}, "steps",
     "must be at least 1, got 0"),
])
def test_bad_fields_are_refused_by_name(served, method, path, body, field, says):
    status, out, _ = http(served, method, path, body)
    assert status == 400, out
    assert says in out["error"]["message"] and out["error"]["param"] == field


@pytest.mark.parametrize("name", ["..%2F..%2Fetc", "a%2Fb", "..", "%2Ftmp%2Fx"])
def test_path_traversal_in_names_is_refused(served, name):
    for method, path in [("GET", f"api/datasets/{name}"), ("DELETE", f"api/models/{name}"),
                         ("POST", f"api/datasets/{name}?format=jsonl")]:
        status, out, _ = http(served, method, path, raw=ROWS if method == "POST" else None)
        assert status in (400, 404), (method, path, status)
        assert "error" in out


def test_dataset_upload_show_export_remove(served, store_home):
    status, rec, _ = http(served, "POST", "api/datasets/rest-reviews?format=jsonl", raw=ROWS)
    assert status == 200 and rec["rows"] == 3 and rec["columns"] == ["text"]
    assert rec["source"] == "an upload over the REST API"  # not the server's temp file
    assert http(served, "GET", "api/datasets/rest-reviews?head=2")[1] == \
        cli_json("data", "show", "rest-reviews", "--head", "2")
    status, again, _ = http(served, "POST", "api/datasets/rest-reviews?format=jsonl",
                            raw=ROWS + b'{"text": "one more"}\n')
    assert status == 400 and "replace" in again["error"]["message"]
    status, data, headers = http(served, "GET", "api/datasets/rest-reviews/export?format=jsonl")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert [json.loads(x) for x in data.splitlines()] == [json.loads(x)
                                                           for x in ROWS.splitlines()]
    status, csv, _ = http(served, "GET", "api/datasets/rest-reviews/export?format=csv")
    assert csv.decode().splitlines()[0] == "text"
    assert http(served, "DELETE", "api/datasets/rest-reviews")[0] == 200
    assert http(served, "GET", "api/datasets/rest-reviews")[0] == 404


def _spooled() -> list[Path]:
    """The server's upload files in progress (it shares this machine's temp dir)."""
    return list(Path(tempfile.gettempdir()).glob("llmos-upload-*"))


def test_an_upload_streams_to_disk_past_the_buffer_limits(served, store_home):
    # 66 MiB: over the JSON body limit (8 MiB) and the server's in-memory buffer (64 MiB),
    # so it only arrives because the body goes to a file as it comes.
    row = json.dumps({"text": "x" * 1000}).encode() + b"\n"
    n = 66 * 2**20 // len(row) + 1
    status, rec, _ = http(served, "POST", "api/datasets/rest-big?format=jsonl", raw=row * n)
    assert status == 200 and rec["rows"] == n, rec
    assert not _spooled()
    assert http(served, "DELETE", "api/datasets/rest-big")[0] == 200


def test_an_upload_over_the_limit_is_refused_before_it_is_read(served):
    url = urlsplit(served.url)
    conn = HTTPConnection(url.hostname, url.port, timeout=60)
    conn.putrequest("POST", "/api/datasets/rest-huge?format=jsonl")
    conn.putheader("Authorization", f"Bearer {served.key}")
    conn.putheader("Content-Length", str(MAX_UPLOAD_BYTES + 1))
    conn.endheaders()  # no body follows: the answer must not wait for it
    r = conn.getresponse()
    assert r.status == 413 and str(MAX_UPLOAD_BYTES) in json.loads(r.read())["error"]["message"]
    conn.close()


def test_a_client_gone_mid_upload_leaves_nothing(served, store_home):
    url = urlsplit(served.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(b"POST /api/datasets/rest-cut?format=jsonl HTTP/1.1\r\n"
                     b"Host: 127.0.0.1\r\nAuthorization: Bearer " + served.key.encode()
                     + b"\r\nContent-Length: 1000000\r\n\r\n" + ROWS)
        wait_until(_spooled, what="the upload's file")
    wait_until(lambda: not _spooled(), what="the upload's file removed")
    assert http(served, "GET", "api/datasets/rest-cut")[0] == 404


def test_task_run_over_data_streams_and_shows_in_the_cli(served, store_home):
    http(served, "POST", "api/datasets/rest-run?format=jsonl&replace=true", raw=ROWS)
    yaml = b"name: rest-echo\ninputs: [text]\nprompt: 'Repeat: {text}'\nparams: {max_tokens: 3}\n"
    assert http(served, "PUT", "api/tasks/rest-echo", raw=yaml)[0] == 200
    status, run, _ = http(served, "POST", "api/tasks/rest-echo/run",
                          {"data": "rest-run", "model": MODEL, "temperature": 0})
    assert status == 202 and run["status"] in ("queued", "running"), run
    events = sse(served, f"api/runs/{run['id']}/events")
    assert events[-1]["status"] == "succeeded" and events[-1]["progress"]["done"] == 3
    done = [e["progress"]["done"] for e in events]
    assert done == sorted(done) and len(set(map(json.dumps, events))) == len(events)
    assert run["id"] in [r["id"] for r in cli_json("runs", "list")]
    status, page, _ = http(served, "GET", f"api/runs/{run['id']}?items=2&offset=1")
    assert [it["idx"] for it in page["items"]] == [1, 2]
    status, data, _ = http(served, "GET", f"api/runs/{run['id']}/export?format=jsonl")
    items = [json.loads(x) for x in data.splitlines()]
    assert [it["inputs"]["text"] for it in items] == ["I love it", "awful day", "it is fine"]
    assert all(it["status"] == "succeeded" and it["output"] for it in items)


def test_a_run_started_in_a_notebook_streams_over_events(served, store_home):
    """The run executes in this process (as a notebook's would); the server, another
    process, follows it through the store."""
    import llmos

    llmos.datasets.add("rest-nb", _rows_file(store_home), replace=True)
    handle = llmos.run("summarize", data="rest-nb", model=MODEL, background=True,
                       progress=False, params={"max_tokens": 4, "temperature": 0})
    events = sse(served, f"api/runs/{handle.id}/events")
    assert events[-1]["status"] == "succeeded" and events[-1]["progress"]["total"] == 3
    assert handle.wait().status == "succeeded"


def test_cancel_a_run_over_rest(served, store_home):
    rows = b"".join(b'{"text": "story %d"}\n' % i for i in range(40))
    http(served, "POST", "api/datasets/rest-long?format=jsonl&replace=true", raw=rows)
    _, run, _ = http(served, "POST", "api/tasks/summarize/run",
                     {"data": "rest-long", "model": MODEL, "max_tokens": 64})
    assert http(served, "POST", f"api/runs/{run['id']}/cancel")[0] == 200
    wait_until(lambda: cli_json("runs", "show", run["id"])["status"] == "cancelled",
               timeout=300, what="the run cancelled")
    events = sse(served, f"api/runs/{run['id']}/events")
    assert events == [events[-1]] and events[-1]["status"] == "cancelled"
    assert events[-1]["progress"]["done"] < 40


def test_pull_streams_progress_then_the_record(served, store_home):
    events = sse(served, "api/models/pull", {"name": MODEL, "stream": True})
    assert events[-1]["status"] == "success"
    assert events[-1]["result"]["name"] == MODEL
    assert events[-1]["result"] == cli_json("pull", MODEL) | {
        "created_at": events[-1]["result"]["created_at"]}


def test_load_ps_unload_in_the_server(served):
    status, row, _ = http(served, "POST", f"api/models/{MODEL}/load")
    assert status == 200 and row["name"] == MODEL
    assert MODEL in [r["name"] for r in http(served, "GET", "api/ps")[1]]
    assert MODEL in http(served, "GET", "health")[1]["models"]
    assert http(served, "POST", f"api/models/{MODEL}/unload")[0] == 200
    assert MODEL not in [r["name"] for r in http(served, "GET", "api/ps")[1]]


def test_openapi_describes_every_route(served):
    status, doc, _ = http(served, "GET", "api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    for want in [("GET", "/api/models"), ("POST", "/api/datasets/{name}"),
                 ("GET", "/api/runs/{id}/events"), ("POST", "/v1/chat/completions"),
                 ("PUT", "/api/tasks/{name}"), ("GET", "/health")]:
        assert want in ops
    run = doc["paths"]["/api/tasks/{name}/run"]["post"]
    props = run["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"data", "map", "temperature", "presence_penalty"} <= set(props)
    assert "with_" not in props and "out" not in props  # notebook-only options


def _rows_file(home):
    path = home.parent / "rest-nb.jsonl"
    path.write_bytes(ROWS)
    return path


def test_training_over_rest_streams_its_steps(served, store_home):
    """POST api/train starts a run in the server (202); its events carry each step's
    loss; the tuned model lands in the catalog."""
    pairs = b"".join(b'{"prompt": "Say %d", "response": "%d"}\n' % (i, i) for i in range(8))
    http(served, "POST", "api/datasets/rest-pairs?format=jsonl&replace=true", raw=pairs)
    status, run, _ = http(served, "POST", "api/train", {
        "model": MODEL, "data": "rest-pairs", "output": "rest-tuned", "steps": 2,
        "batch_size": 2, "seq_len": 64, "lr": 1e-3})
    assert status == 202, run
    events = sse(served, f"api/runs/{run['run_id']}/events")
    assert events[-1]["status"] == "succeeded", events[-1]
    steps = [e["metrics"]["step"] for e in events if "metrics" in e]
    assert steps and steps[-1] == 2 and all(e["metrics"]["loss"] > 0 for e in events
                                            if "metrics" in e)
    shown = http(served, "GET", "api/models/rest-tuned")[1]
    assert shown["name"] == "rest-tuned"
    assert http(served, "DELETE", "api/models/rest-tuned")[0] == 200
