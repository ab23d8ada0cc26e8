"""The route table both hosts serve, and how a host turns it into tornado handlers.

Paths are relative: the standalone server mounts them at `/`, the Jupyter extension at
`{base_url}llmos/`. Every handler requires credentials except those marked `public`.
"""

from __future__ import annotations

from collections.abc import Callable

from llmos_jupyter.server.base import LLMOSHandler
from llmos_jupyter.server.health import HealthHandler, MetricsHandler
from llmos_jupyter.server.openai_routes import (
    ChatCompletionsHandler,
    CompletionsHandler,
    ModelsHandler,
)
from llmos_jupyter.server.openapi import document
from llmos_jupyter.server.task_routes import TaskInvokeHandler
from llmos_jupyter.server.verb_routes import RunEventsHandler, verb_routes


class OpenAPIHandler(LLMOSHandler):
    """The OpenAPI 3 document of this server's routes."""

    async def get(self) -> None:
        """The OpenAPI 3 document."""
        self.send_json(document(ROUTES))


# Literal paths first: tornado takes the first pattern that matches.
ROUTES: list[tuple[str, type]] = [
    ("health", HealthHandler),
    ("metrics", MetricsHandler),
    ("v1/models", ModelsHandler),
    ("v1/chat/completions", ChatCompletionsHandler),
    ("v1/completions", CompletionsHandler),
    ("api/openapi.json", OpenAPIHandler),
    (r"api/tasks/([^/]+)/invoke", TaskInvokeHandler),
    (r"api/runs/([^/]+)/events", RunEventsHandler),
    *verb_routes(),
]



HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def build(prefix: str, host_base: type,
          guard: Callable[[Callable], Callable] | None = None,
          public_mark: Callable[[Callable], Callable] | None = None) -> list[tuple[str, type]]:
    """(url pattern, handler class) for every route: each class combines the route's
    mixin with `host_base`; `guard` (e.g. tornado.web.authenticated) wraps the HTTP
    methods of every non-public route, `public_mark` those of the public ones."""
    out = []
    for path, mixin in ROUTES:
        wrap = public_mark if getattr(mixin, "public", False) else guard
        methods = {}
        if wrap is not None:
            methods = {m: wrap(getattr(mixin, m)) for m in HTTP_METHODS if hasattr(mixin, m)}
        cls = type(mixin.__name__, (mixin, host_base), methods)
        out.append((prefix + path, cls))
    return out
