"""Every route of both hosts refuses a request without credentials; only /health answers.
The standalone server refuses to listen beyond loopback without a key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from llmos_jupyter.server.routes import HTTP_METHODS, ROUTES
from tests.seed_home import REPO
from tests.server.conftest import start_serve, stop_serve

pytestmark = pytest.mark.slow


def route_calls():
    """(method, path, public) for every method of every registered route (a name stands
    in for each pattern group)."""
    for pattern, mixin in ROUTES:
        path = re.sub(r"\([^)]*\)", "summarize", pattern)
        for method in HTTP_METHODS:
            if hasattr(mixin, method):
                yield method.upper(), path, getattr(mixin, "public", False)


def call(url: str, method: str, headers: dict | None = None) -> tuple[int, dict]:
    data = b"{}" if method not in ("GET", "DELETE") else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}") if "json" in (
                r.headers.get("Content-Type") or "") else {}
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, json.loads(body) if body.startswith(b"{") else {}


def test_standalone_every_route_needs_the_key(served):
    calls = list(route_calls())
    assert len(calls) >= 5
    for method, path, public in calls:
        status, body = call(f"{served.url}/{path}", method)
        if public:
            assert status == 200, (method, path)
            continue
        assert status == 401, (method, path, status)
        assert body["error"]["code"] == "invalid_api_key"
        wrong, _ = call(f"{served.url}/{path}", method, {"Authorization": "Bearer nope"})
        assert wrong == 401, (method, path)
    # Unknown paths too: nothing answers without the key.
    assert call(f"{served.url}/api/secret", "GET")[0] == 401


def test_standalone_with_the_key_answers(served):
    status, body = call(f"{served.url}/v1/models", "GET",
                        {"Authorization": f"Bearer {served.key}"})
    assert status == 200 and body["object"] == "list"


def test_non_loopback_without_a_key_is_refused(default_store):
    done = subprocess.run(
        [sys.executable, "-m", "llmos_jupyter.server.standalone", "--host", "0.0.0.0",
         "--port", "0"], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "LLMOS_HOME": str(default_store)})
    assert done.returncode == 1
    assert "error: refusing to listen on 0.0.0.0 without an API key" in done.stderr


def test_loopback_without_a_key_is_open(default_store):
    s = start_serve(default_store, key=None)
    try:
        assert call(f"{s.url}/v1/models", "GET")[0] == 200
    finally:
        assert "stopped" in stop_serve(s)


def test_browsers_cross_origin_only_with_a_key(served, default_store):
    """With a key any origin may call (CORS, preflight answered without the key); without
    one, a page from another origin or a rebound host name is refused."""
    req = urllib.request.Request(f"{served.url}/api/models", method="OPTIONS", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 204
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    status, _ = call(f"{served.url}/api/models", "GET",
                     {"Authorization": f"Bearer {served.key}", "Origin": "http://app.example"})
    assert status == 200

    open_server = start_serve(default_store, key=None)
    try:
        assert call(f"{open_server.url}/api/models", "GET")[0] == 200
        assert call(f"{open_server.url}/api/models", "GET",
                    {"Origin": "http://localhost:8888"})[0] == 200
        status, body = call(f"{open_server.url}/api/models/x", "DELETE",
                            {"Origin": "http://evil.example"})
        assert status == 403 and "--api-key" in body["error"]["message"]
        status, body = call(f"{open_server.url}/api/models", "GET",
                            {"Host": "evil.example"})
        assert status == 403 and "loopback" in body["error"]["message"]
        assert call(f"{open_server.url}/api/models", "OPTIONS")[0] == 403
    finally:
        stop_serve(open_server)
