"""Tasks as endpoints: POST /api/tasks/{name}/invoke runs a task on one set of inputs.

A task defined in a notebook (`%%llmos task brief ...`) is at once an HTTP endpoint:

    POST /api/tasks/brief/invoke  {"inputs": {"text": "..."}, "model": "...", "params": {...}}
    -> {"output": ..., "text": "...", "run_id": "...", "status": "succeeded", "usage": {...}}

Each call is recorded as a run in the store, like `llmos.run(...)`. A task whose answer
fails (e.g. JSON that never parses) answers 422 with the run id to inspect.
"""

from __future__ import annotations

from typing import Any

from llmos_jupyter import api
from llmos_jupyter.server.base import LLMOSHandler
from llmos_jupyter.server.protocol import APIError


class TaskInvokeHandler(LLMOSHandler):
    """POST /api/tasks/{name}/invoke."""

    path_names = ["name"]

    async def post(self, name: str) -> None:
        body = self.body_json()
        if not isinstance(body, dict):
            raise APIError(400, "the body must be a JSON object: "
                           '{"inputs": {...}, "model": optional, "params": optional}')
        inputs = body.get("inputs", {})
        params = body.get("params")
        model = body.get("model")
        if not isinstance(inputs, dict) or not all(isinstance(k, str) for k in inputs):
            raise APIError(400, "'inputs' must be an object of the task's input values",
                           param="inputs")
        if params is not None and not isinstance(params, dict):
            raise APIError(400, "'params' must be an object of sampling settings",
                           param="params")
        if model is not None and not isinstance(model, str):
            raise APIError(400, "'model' must be a model or preset name", param="model")
        reserved = {"model", "data", "map", "limit", "params", "background", "progress"}
        clash = sorted(reserved & set(inputs))
        if clash:
            raise APIError(400, f"input names {clash} are reserved by the API", param="inputs")
        result = await self.in_thread(lambda: api.run(name, model=model, params=params,
                                                      **inputs))
        out: dict[str, Any] = {"output": result.output, "text": result.text,
                               "run_id": result.run_id, "status": result.status,
                               "usage": result.usage}
        if result.status != "succeeded":
            raise APIError(422, f"task {name!r} failed: {result.error} (run {result.run_id}; "
                           f"see `llmos runs show {result.run_id}`)", code="task_failed")
        self.send_json(out)
