"""The native REST API: one route per verb of the verb table, built from its definition.

`GET api/models/{name}` is `llmos show NAME --json`: the request becomes the same parsed
arguments the CLI makes (path segments, then query fields for GET/DELETE or JSON body
fields otherwise, typed and checked by the parameter definitions), the same handler runs
in a worker thread, and its `--json` output is the response. Errors carry the messages
the CLI prints. A `file_in` parameter is the request body (an upload, streamed to a
temporary file as it arrives, so its size is bounded by MAX_UPLOAD_BYTES, not memory);
a `file_out` parameter is the response (a download). Work that runs long (a task over a
dataset, training, resuming) is started in the server's background and answered at once
with the run's record and 202; `GET api/runs/{id}/events` follows it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llmos_jupyter import api
from llmos_jupyter.commands.dispatch import dispatch
from llmos_jupyter.commands.output import Message, Record
from llmos_jupyter.commands.spec import REST, Context, Param, Verb
from llmos_jupyter.commands.table import VERBS
from llmos_jupyter.errors import excerpt, suggest
from llmos_jupyter.server.base import MAX_BODY_BYTES, LLMOSHandler, as_api_error
from llmos_jupyter.server.protocol import APIError

BODY_METHODS = ("POST", "PUT", "PATCH")
# Query fields a host may add for its own auth; they are not verb parameters.
HOST_QUERY = ("token", "_xsrf")
RUNNING = ("queued", "running")
CHUNK = 1 << 20  # downloads are written in pieces of this size
MAX_UPLOAD_BYTES = 4 * 2**30  # an upload (a dataset file, a task's YAML) over this gets 413


def rest_verbs() -> list[Verb]:
    """The verbs the REST API offers, each with its `http` route."""
    return [v for v in VERBS if REST in v.on and v.http]


def split_route(verb: Verb) -> tuple[str, str, list[str]]:
    """(METHOD, path template, names of its {param} segments) of a verb's route."""
    assert verb.http is not None
    method, path = verb.http.split(" ", 1)
    return method, path, re.findall(r"\{(\w+)\}", path)


def verb_routes() -> list[tuple[str, type]]:
    """(path pattern, handler mixin) per route path, the verbs on it by method. Literal
    paths come before templated ones, so `api/models/pull` is not read as a model name."""
    by_path: dict[str, dict[str, Verb]] = {}
    for verb in rest_verbs():
        method, path, _ = split_route(verb)
        methods = by_path.setdefault(path, {})
        if method in methods:
            raise ValueError(f"{method} {path} is claimed by {methods[method].name!r} and "
                             f"{verb.name!r}")
        methods[method] = verb
    out = []
    for path in sorted(by_path, key=lambda p: (p.count("{"), -len(p))):
        names = re.findall(r"\{(\w+)\}", path)
        pattern = re.sub(r"\{\w+\}", "([^/]+)", path)
        attrs: dict[str, Any] = {"verbs": by_path[path], "path_names": names,
                                 "__doc__": " / ".join(f"{m} {path}: llmos {v.name}"
                                                       for m, v in by_path[path].items())}
        for method in by_path[path]:
            attrs[method.lower()] = _method(method)
        uploads = any(upload_param(v) for v in by_path[path].values())
        out.append((pattern, type("VerbRoute", (UploadHandler if uploads else VerbHandler,),
                                  attrs)))
    return out


def upload_param(verb: Verb) -> Param | None:
    """The verb's `file_in` parameter over REST (its request body is the file), if any."""
    return next((p for p in verb.params_on(REST) if p.kind == "file_in"), None)


def _method(method: str):
    async def handle(self: VerbHandler, *path_args: str) -> None:
        await self.run_verb(method, path_args)

    handle.__name__ = method.lower()
    return handle


class VerbHandler(LLMOSHandler):
    """Runs the verb a route's method names (subclasses set `verbs` and `path_names`)."""

    verbs: dict[str, Verb]
    path_names: list[str]

    async def run_verb(self, method: str, path_args: tuple[str, ...]) -> None:
        """Parse the request into the verb's arguments, run its handler off the loop,
        answer with its JSON output (or the file it wrote, or a progress stream)."""
        verb = self.verbs[method]
        with tempfile.TemporaryDirectory(prefix="llmos-rest-") as tmp:
            args = self.arguments(verb, method, path_args, Path(tmp))
            if getattr(args, "stream", False):
                await self.stream_progress(args)
                return
            ctx = Context(progress=False, rest=True, write=lambda _s: None)
            out = await self.in_thread(dispatch, args, ctx, self.rest_handlers())
            download = next((p for p in verb.params if p.kind == "file_out"), None)
            if download is not None:
                await self.send_file(Path(getattr(args, download.name)))
                return
        body = out.json()  # serialized once: sent as is, read for the status only
        data = json.loads(body)
        started = (isinstance(data, dict) and data.get("status") in RUNNING
                   and ("id" in data or "run_id" in data))
        self.set_status(202 if started else 200)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    # --- request -> arguments -------------------------------------------------------------

    def arguments(self, verb: Verb, method: str, path_args: tuple[str, ...],
                  tmp: Path) -> argparse.Namespace:
        """The verb's arguments from path segments, query or body, typed and checked."""
        _, _, names = split_route(verb)
        params = {p.name: p for p in verb.params}
        values: dict[str, Any] = {p.name: _default(p) for p in verb.params}
        values.update(json=True, handler=verb.handler, verb=verb.words[0])
        if len(verb.words) == 2:
            values[f"{verb.words[0]}_verb"] = verb.words[1]
        for name, raw in zip(names, path_args, strict=True):
            values[name] = _from_text(params[name], [raw])
        upload = upload_param(verb)
        fields = {p.name: p for p in verb.params_on(REST)
                  if p.name not in names and p.kind not in ("file_in", "file_out")}
        if method in BODY_METHODS and upload is None:
            given = self._body_fields(fields)
        else:
            given = self._query_fields(fields)
        values.update(given)
        if upload is not None:
            values[upload.name] = str(self._save_upload(verb, values, tmp))
        for p in verb.params_on(REST):
            if p.kind == "file_out":
                fmt = values.get("format") or "jsonl"
                values[p.name] = str(tmp / f"{values.get('name') or values.get('id')}.{fmt}")
            elif p.must and values.get(p.name) in (None, []):
                raise APIError(400, f"{verb.name}: {p.name!r} is required"
                               + (f" ({p.help})" if p.help else ""), param=p.name)
        return argparse.Namespace(**values)

    def _body_fields(self, fields: dict[str, Param]) -> dict[str, Any]:
        body = self.body_json()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise APIError(400, "the body must be a JSON object of the verb's parameters: "
                           f"{', '.join(fields) or '(none)'}")
        out = {}
        for key, value in body.items():
            if key not in fields:
                raise APIError(400, f"unknown field {key!r}{suggest(key, fields)}; this "
                               f"route takes {', '.join(fields) or 'no fields'}", param=key)
            out[key] = _from_json(fields[key], value)
        return out

    def _query_fields(self, fields: dict[str, Param]) -> dict[str, Any]:
        out = {}
        for key in self.request.query_arguments:
            if key in HOST_QUERY:
                continue
            if key not in fields:
                raise APIError(400, f"unknown query field {key!r}{suggest(key, fields)}; "
                               f"this route takes {', '.join(fields) or 'no fields'}",
                               param=key)
            out[key] = _from_text(fields[key], self.get_query_arguments(key))
        return out

    def _save_upload(self, verb: Verb, values: dict[str, Any], tmp: Path) -> Path:
        """The upload as the file the verb reads (UploadHandler's routes only)."""
        raise NotImplementedError("a route with an upload is an UploadHandler")

    # --- answers --------------------------------------------------------------------------

    async def send_file(self, path: Path) -> None:
        """The file a verb wrote, as a download, in pieces."""
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
        with path.open("rb") as f:
            while piece := await self.in_thread(f.read, CHUNK):
                self.write(piece)
                await self.flush()
        self.finish()

    async def stream_progress(self, args: argparse.Namespace) -> None:
        """Run the verb reporting progress as server-sent events, then its result."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def on_progress(done: int, total: int | None, stage: str = "") -> None:
            event = {"status": stage or "downloading", "completed": done, "total": total}
            loop.call_soon_threadsafe(events.put_nowait, event)

        ctx = Context(progress=False, rest=True, write=lambda _s: None, on_progress=on_progress)
        work = asyncio.ensure_future(self.in_thread(dispatch, args, ctx, self.rest_handlers()))
        self.sse_start()
        while not work.done() or not events.empty():
            getter = asyncio.ensure_future(events.get())
            await asyncio.wait({work, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await self.sse_send(getter.result())
            else:
                getter.cancel()
        try:
            out = work.result()
        except Exception as e:  # the stream has begun: the error is its last event
            await self.sse_send(as_api_error(e).body())
        else:
            await self.sse_send({"status": "success", "result": json.loads(out.json())})
        self.finish()

    # --- verbs whose meaning is the server's ------------------------------------------------

    def rest_handlers(self) -> dict[str, Any]:
        """`load` and `unload` act on the models this server keeps warm."""
        serving = self.serving

        def load(args: argparse.Namespace, ctx: Context) -> Record:
            serving.scheduler(args.name)
            row = next((r for r in api.ps() if r["name"] == args.name), {"name": args.name})
            return Record(row, title=f"loaded {args.name}")

        def unload(args: argparse.Namespace, ctx: Context) -> Message:
            names = serving.unload(args.name)
            return Message(f"unloaded {', '.join(names)}" if names else "nothing was loaded")

        return {"load": load, "unload": unload}


class UploadHandler(VerbHandler):
    """A route whose verb takes an upload: the body streams to a temporary file as it
    arrives (tornado's stream_request_body), after the host's prepare() has checked the
    credentials, so no client can make the server hold a dataset in memory. A JSON body
    of another verb on the same path is gathered in memory, up to MAX_BODY_BYTES."""

    _stream_request_body = True  # what @tornado.web.stream_request_body sets

    async def prepare(self) -> None:
        """Auth (the host's prepare), then size limits and where the body goes."""
        self._spool: Any = None
        self._buffer, self._size = bytearray(), 0
        ready = super().prepare()  # type: ignore[misc]
        if inspect.isawaitable(ready):  # Jupyter's is a coroutine, the standalone's not
            await ready
        verb = self.verbs.get(self.request.method)
        if verb is None:
            return
        upload = upload_param(verb) is not None
        limit = MAX_UPLOAD_BYTES if upload else MAX_BODY_BYTES
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise APIError(413, f"request body of {length} bytes is over the limit of "
                           f"{limit} bytes")
        # tornado drops the connection past this, so the buffer below stays bounded and
        # body_json() sees one byte too many and answers 413 itself.
        self.request.connection.set_max_body_size(limit + 1)
        if upload:
            self._spool_dir = tempfile.mkdtemp(prefix="llmos-upload-")
            self.upload_path = Path(self._spool_dir) / "body"
            self._spool = self.upload_path.open("wb")

    def data_received(self, chunk: bytes) -> None:
        """A piece of the body: to the upload's file, or the JSON buffer."""
        self._size += len(chunk)
        if self._spool is not None:
            if self._size <= MAX_UPLOAD_BYTES:
                self._spool.write(chunk)
        else:
            self._buffer += chunk

    def _save_upload(self, verb: Verb, values: dict[str, Any], tmp: Path) -> Path:
        """The spooled body moved to a file named for its format (if given) in `tmp`;
        400 when empty, 413 when it ran over the limit."""
        self._spool.close()
        if self._size > MAX_UPLOAD_BYTES:
            raise APIError(413, f"the upload is over the limit of {MAX_UPLOAD_BYTES} bytes")
        if not self._size:
            raise APIError(400, f"{verb.name}: the request body must be the file to upload")
        fmt = values.get("format")
        path = tmp / (f"upload.{fmt}" if fmt else "upload")
        shutil.move(self.upload_path, path)
        return path

    async def run_verb(self, method: str, path_args: tuple[str, ...]) -> None:
        if self._spool is None:  # a JSON body: what body_json() reads (and size-checks)
            self.request.body = bytes(self._buffer)
        await super().run_verb(method, path_args)

    def on_finish(self) -> None:
        self._drop_spool()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._drop_spool()  # a client gone mid-upload leaves no file behind
        super().on_connection_close()

    def _drop_spool(self) -> None:
        if getattr(self, "_spool", None) is not None:
            self._spool.close()
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            self._spool = None


def _default(p: Param) -> Any:
    if p.kind == "map":
        return []
    return p.default


def _from_json(p: Param, value: Any) -> Any:
    """A JSON body value checked against parameter `p`; APIError 400 naming it."""
    if value is None:
        return _default(p)
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "list": isinstance(value, str) or (isinstance(value, list)
                                           and all(isinstance(v, str) for v in value)),
        "map": isinstance(value, dict),
    }[p.kind]
    if not ok:
        want = {"str": "a string", "int": "an integer", "float": "a number",
                "bool": "true or false", "list": "a list of strings",
                "map": "an object"}[p.kind]
        raise APIError(400, f"{p.name!r} must be {want}, got {excerpt(value)}", param=p.name)
    if p.kind == "list" and isinstance(value, str):
        value = [value]
    if p.kind == "map":
        value = [(str(k), v if isinstance(v, str) else json.dumps(v))
                 for k, v in value.items()]
    _check_value(p, value)
    return value


def _from_text(p: Param, raw: list[str]) -> Any:
    """A path segment or query field's text(s) as parameter `p`'s kind."""
    text = raw[-1]
    try:
        if p.kind == "int":
            value: Any = int(text)
        elif p.kind == "float":
            value = float(text)
        elif p.kind == "bool":
            if text.lower() not in ("", "1", "true", "yes", "0", "false", "no"):
                raise ValueError(text)
            value = text.lower() in ("", "1", "true", "yes")
        elif p.kind == "list":
            value = list(raw)
        elif p.kind == "map":
            value = [tuple(t.split("=", 1)) for t in raw if "=" in t]
            if len(value) != len(raw):
                raise ValueError(raw)
        else:
            value = text
    except ValueError:
        want = {"int": "an integer", "float": "a number", "bool": "true or false",
                "map": "KEY=VALUE"}.get(p.kind, "text")
        raise APIError(400, f"{p.name!r} must be {want}, got {excerpt(text)}",
                       param=p.name) from None
    _check_value(p, value)
    return value


def _check_value(p: Param, value: Any) -> None:
    if p.choices and value not in p.choices:
        raise APIError(400, f"{p.name!r} must be one of {', '.join(p.choices)}, got "
                       f"{excerpt(value)}", param=p.name)
    problem = p.out_of_range(value)
    if problem:
        raise APIError(400, f"{p.name!r} {problem}", param=p.name)


class RunEventsHandler(LLMOSHandler):
    """GET api/runs/{id}/events: the run's record as server-sent events, one each time
    its progress or status changes, until it ends (or stops, resumable); a training run's
    events carry its latest step's metrics."""

    POLL_S = 0.25  # how often the store is read: a run may execute in another process
    HEARTBEAT_S = 15.0  # a comment line this often while nothing changes
    path_names = ["id"]
    _gone = False

    async def get(self, run_id: str) -> None:
        """Stream the run's progress."""
        record = await self.in_thread(_run_record, run_id)  # 404 before the stream starts
        self.sse_start()
        last, quiet = None, 0.0
        while not self._gone:
            if record != last:
                await self.sse_send(record)
                last, quiet = record, 0.0
            elif quiet >= self.HEARTBEAT_S:
                # Keeps proxies from closing an idle stream, and finds a client that left.
                await self.sse_comment("waiting")
                quiet = 0.0
            if record["status"] not in RUNNING:
                break
            await asyncio.sleep(self.POLL_S)
            quiet += self.POLL_S
            record = await self.in_thread(_run_record, run_id)
        if not self._gone:
            self.finish()

    def on_connection_close(self) -> None:
        """The client left: stop reading the store for it."""
        self._gone = True
        super().on_connection_close()


def _run_record(run_id: str) -> dict[str, Any]:
    """The run's record; a training run's adds its latest step (loss, val_loss,
    tokens_per_s, eta_s) as `metrics`."""
    handle = api.runs.get(run_id)
    record = handle.to_dict()
    steps = getattr(handle, "metrics", None)
    if steps:
        record["metrics"] = steps[-1]
    return record

