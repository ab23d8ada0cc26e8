"""GET api/openapi.json: the OpenAPI 3 document of every route, generated from the same
definitions the routes are built from (the verb table, the sampling settings, the
handlers' docstrings), so it cannot describe an API the server does not serve."""

from __future__ import annotations

import re
from typing import Any

from llmos_jupyter.commands.spec import REST, Param, Verb
from llmos_jupyter.core.params import SETTINGS
from llmos_jupyter.server.base import MAX_BODY_BYTES
from llmos_jupyter.server.verb_routes import (
    BODY_METHODS,
    MAX_UPLOAD_BYTES,
    rest_verbs,
    split_route,
)

_SCHEMAS = {
    "str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
    "bool": {"type": "boolean"}, "list": {"type": "array", "items": {"type": "string"}},
    "map": {"type": "object", "additionalProperties": True},
}
_ERROR = {"description": "an error: {\"error\": {\"message\", \"type\", \"param\", \"code\"}}",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def param_schema(p: Param) -> dict[str, Any]:
    """The JSON schema of one parameter's value."""
    schema = dict(_SCHEMAS[p.kind])
    if p.choices:
        schema["enum"] = list(p.choices)
    if p.minimum is not None:
        schema["minimum"] = p.minimum
    if p.maximum is not None:
        schema["maximum"] = p.maximum
    if p.default is not None and p.kind != "map":
        schema["default"] = p.default
    if p.help:
        schema["description"] = p.help
    return schema


def verb_operation(verb: Verb) -> dict[str, Any]:
    """The operation object of a verb's route."""
    method, _, names = split_route(verb)
    op: dict[str, Any] = {
        "operationId": verb.handler, "summary": verb.help,
        "description": f"The REST form of the verb `{verb.name}`: its JSON is that of --json.",
        "tags": [verb.words[0] if len(verb.words) == 2 else "models"],
        "responses": {"200": {"description": "the verb's JSON result"},
                      "400": _ERROR, "404": _ERROR},
    }
    params = [{"name": p.name, "in": "path", "required": True, "schema": param_schema(p)}
              for p in verb.params if p.name in names]
    fields = [p for p in verb.params_on(REST)
              if p.name not in names and p.kind not in ("file_in", "file_out")]
    upload = any(p.kind == "file_in" for p in verb.params_on(REST))
    if method in BODY_METHODS and not upload:
        if fields:
            op["requestBody"] = {"content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {p.name: param_schema(p) for p in fields},
                "required": [p.name for p in fields if p.must]}}}}
    else:
        params += [{"name": p.name, "in": "query", "required": p.must,
                    "schema": param_schema(p)} for p in fields]
    if upload:
        op["requestBody"] = {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    if any(p.kind == "file_out" for p in verb.params_on(REST)):
        op["responses"]["200"] = {"description": "the file", "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    if verb.handler in ("task_run", "run", "train", "runs_resume"):
        op["responses"]["202"] = {"description": "started: the run's record; follow it "
                                                 "at api/runs/{id}/events"}
    if params:
        op["parameters"] = params
    return op


def sampling_properties() -> dict[str, Any]:
    """The sampling settings as JSON schema properties (GenerationParams' fields)."""
    kinds = {"int": "integer", "float": "number", "bool": "boolean"}
    return {s.name: ({"type": "array", "items": {"type": "string"}} if s.kind == "list"
                     else {"type": kinds[s.kind]}) | {"description": f"{s.help} ({s.allowed})"}
            for s in SETTINGS.values()}


def document(routes: list[tuple[str, type]]) -> dict[str, Any]:
    """The OpenAPI 3 document of `routes` (the host's (path, handler) list, relative)."""
    paths: dict[str, dict[str, Any]] = {}
    for verb in rest_verbs():
        method, path, _ = split_route(verb)
        paths.setdefault("/" + path, {})[method.lower()] = verb_operation(verb)
    for path, handler in routes:
        if getattr(handler, "verbs", None) is not None:
            continue  # a verb route, described above from its definition
        template = "/" + _template(path, handler)
        for method in ("get", "post", "put", "delete"):
            if method in vars(handler):
                paths.setdefault(template, {})[method] = _operation(
                    handler, method, vars(handler)[method], template)
    return {
        "openapi": "3.0.3",
        "info": {"title": "LLMOS", "version": _version(),
                 "description": "Models, datasets, tasks and runs of an LLMOS store, and "
                                "OpenAI-compatible completions."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {
                "type": "object", "properties": {k: {"type": "string", "nullable": True}
                                                 for k in ("message", "type", "param",
                                                           "code")}}}},
                        "Sampling": {"type": "object", "properties": sampling_properties()}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _template(pattern: str, handler: type) -> str:
    names = iter(getattr(handler, "path_names", None) or ["name", "id", "arg"])
    return re.sub(r"\(\[\^/\]\+\)", lambda _m: "{" + next(names) + "}", pattern)


def _operation(handler: type, method: str, fn: Any, template: str) -> dict[str, Any]:
    doc = (handler.__doc__ or "").strip().splitlines()
    summary = (fn.__doc__ or handler.__doc__ or method.upper()).strip().splitlines()[0]
    op: dict[str, Any] = {"summary": summary,
                          "description": " ".join(s.strip() for s in doc),
                          "responses": {"200": {"description": "OK"}, "400": _ERROR}}
    names = re.findall(r"\{(\w+)\}", template)
    if names:
        op["parameters"] = [{"name": n, "in": "path", "required": True,
                             "schema": {"type": "string"}} for n in names]
    if template.startswith("/v1/") and method == "post":
        op["requestBody"] = {"content": {"application/json": {"schema": {
            "allOf": [{"$ref": "#/components/schemas/Sampling"}],
            "description": "OpenAI's request body; the sampling settings LLMOS reads"}}}}
    if getattr(handler, "public", False):
        op["security"] = []
    return op


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmos-jupyter")
    except PackageNotFoundError:
        return "0"


def markdown() -> str:
    """docs/rest-api.md: the native routes as a table, generated from the verb table
    (`python -m llmos_jupyter.server.openapi > docs/rest-api.md`)."""
    lines = [
        "# REST API reference",
        "",
        "Generated from the verb table by `python -m llmos_jupyter.server.openapi`; do not",
        "edit by hand. Every route is under `/` for `llmos serve` and under",
        "`{base_url}llmos/` inside Jupyter; `GET api/openapi.json` serves the OpenAPI 3",
        "document. A route answers what its verb prints with `--json`; errors are",
        "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}` with the CLI's message.",
        "Path segments are `{name}`-style; other fields go in the query for GET and DELETE,",
        f"in a JSON body otherwise (up to {MAX_BODY_BYTES // 2**20} MiB). A `file_in` "
        "parameter is the request body",
        "(an upload, its fields in the query; streamed to disk as it arrives, up to "
        f"{MAX_UPLOAD_BYTES // 2**30} GiB);",
        "a `file_out` parameter is the response (a download).",
        "",
        "| route | verb | fields |",
        "|---|---|---|",
    ]
    for verb in rest_verbs():
        method, path, names = split_route(verb)
        fields = []
        for p in verb.params_on(REST):
            if p.name in names:
                continue
            kind = {"file_in": "request body", "file_out": "response body"}.get(p.kind, p.kind)
            if p.minimum is not None:
                kind += f", >= {p.minimum:g}"
            if p.maximum is not None:
                kind += f", <= {p.maximum:g}"
            fields.append(f"`{p.name}`{'*' if p.must else ''} ({kind})")
        lines.append(f"| `{method} /{path}` | {verb.name} | {', '.join(fields) or '-'} |")
    lines += [
        "",
        "`*` marks a required field. Beyond the verbs: `GET /api/runs/{id}/events` (the",
        "run's record as server-sent events, each time it changes, until it ends),",
        "`POST /api/tasks/{name}/invoke` (a task as an endpoint), the OpenAI-compatible",
        "`/v1/models`, `/v1/chat/completions`, `/v1/completions`, `GET /health` (no",
        "credentials) and `GET /metrics` (Prometheus text).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
