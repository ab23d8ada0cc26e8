"""Bad input over HTTP: each answered with its status and an OpenAI error body that says
what to fix; a client that leaves frees its row; a flood at a full queue gets 429s and
the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import httpx
import pytest

from tests.server.conftest import MODEL, start_serve, stop_serve, wait_until
from tests.server.test_auth import call

pytestmark = pytest.mark.slow


def post(served, path: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{served.url}/{path}", data=data, method="POST",
                                 headers={"Authorization": f"Bearer {served.key}"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def chat(**kw):
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **kw}


@pytest.mark.parametrize("body, status, param, words", [
    (b"{not json", 400, None, "not valid JSON"),
    (b"[1, 2]", 400, None, "must be a JSON object"),
    (chat(model="no-such-model"), 404, None, "unknown model 'no-such-model'"),
    (chat(model="../../etc/passwd"), 404, None, "unknown model"),
    (chat(max_tokens=-5), 400, "max_tokens", "at least 1"),
    (chat(max_tokens="many"), 400, "max_tokens", "must be int"),
    (chat(n=1000), 400, "n", "between 1 and 16"),
    (chat(temperature=9), 400, "temperature", "between 0.0 and 2.0"),
    (chat(stop=["a", "b", "c", "d", "e"]), 400, "stop", "at most 4"),
    (chat(messages=[]), 400, "messages", "non-empty list"),
    (chat(messages=[{"role": "wizard", "content": "x"}]), 400, "messages[0]", "role"),
    (chat(seed=10**23), 400, "seed", "64 bits"),
])
def test_bad_requests(served, body, status, param, words):
    got, err = post(served, "v1/chat/completions", body)
    assert got == status
    assert words in err["error"]["message"]
    assert err["error"]["param"] == param


def test_prompt_longer_than_the_context(served):
    long = "hello " * 9000  # SmolLM2's context is 8192 tokens
    got, err = post(served, "v1/chat/completions",
                    chat(messages=[{"role": "user", "content": long}]))
    assert got == 400 and err["error"]["code"] == "context_length_exceeded"
    assert "context is 8192" in err["error"]["message"]


def metric(served, name: str) -> float:
    req = urllib.request.Request(f"{served.url}/metrics",
                                 headers={"Authorization": f"Bearer {served.key}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read().decode()
    found = re.search(rf'^llmos_{name}{{model="{MODEL}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_client_gone_mid_stream_frees_its_row(served):
    before = metric(served, "requests_cancelled_total")
    body = {"model": MODEL, "prompt": "Count from 1 to 100000: 1, 2, 3, 4,",
            "max_tokens": 4000, "temperature": 0, "stream": True}
    with httpx.Client(timeout=300) as client:
        with client.stream("POST", f"{served.url}/v1/completions", json=body,
                           headers={"Authorization": f"Bearer {served.key}"}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: {") and '"text": "' in line:
                    break  # one piece received: leave
    wait_until(lambda: metric(served, "requests_cancelled_total") == before + 1,
               what="the abandoned request cancelled")
    wait_until(lambda: metric(served, "queue_depth") == 0, what="an empty queue")
    # And the server answers the next client as usual.
    assert post(served, "v1/chat/completions", chat(max_tokens=4))[0] == 200


def test_flood_at_a_full_queue_gets_429_then_normal_service(default_store):
    s = start_serve(default_store, "--max-batch", "2", "--max-queue", "4")
    try:
        async def flood():
            limits = httpx.Limits(max_connections=500)
            async with httpx.AsyncClient(timeout=600, limits=limits) as client:
                async def one():
                    return await client.post(
                        f"{s.url}/v1/completions",
                        json={"model": MODEL, "prompt": "Hello", "max_tokens": 3,
                              "temperature": 0},
                        headers={"Authorization": f"Bearer {s.key}"})
                return await asyncio.gather(*(one() for _ in range(500)))

        responses = asyncio.run(flood())
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 429}, set(codes)
        assert codes.count(200) >= 6 and codes.count(429) > 0
        for r in responses:
            if r.status_code == 429:
                assert r.headers["Retry-After"] == "1"
                assert r.json()["error"]["type"] == "rate_limit_error"
        assert call(f"{s.url}/health", "GET")[0] == 200
        status, _ = post(s, "v1/completions", {"model": MODEL, "prompt": "Hello",
                                               "max_tokens": 3, "temperature": 0})
        assert status == 200
    finally:
        assert "stopped" in stop_serve(s)
