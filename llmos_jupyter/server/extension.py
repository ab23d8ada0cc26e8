"""The Jupyter server extension: the LLMOS routes under `{base_url}llmos/`, behind
Jupyter's own authentication (token or login cookie) and XSRF checks.

`pip install` enables it (jupyter-config/ ships `jpserver_extensions: {llmos_jupyter:
true}` into etc/jupyter/jupyter_server_config.d/); `jupyter server extension list` shows
it. The models load on their first request, in a worker thread.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from llmos_jupyter.runtime.serving import Serving
from llmos_jupyter.server import routes


class JupyterHost(APIHandler):
    """Host base inside Jupyter: APIHandler authenticates every request (prepare)."""


def load(serverapp: Any) -> None:
    """Add the LLMOS handlers to a running Jupyter server's web app."""
    web_app = serverapp.web_app
    web_app.settings["llmos_serving"] = Serving()
    prefix = url_path_join(web_app.settings.get("base_url", "/"), "llmos/")
    handlers = routes.build(prefix, JupyterHost, guard=tornado.web.authenticated,
                            public_mark=allow_unauthenticated)
    web_app.add_handlers(".*$", handlers)
    serverapp.log.info("LLMOS routes at %s (OpenAI-compatible under %sv1/)", prefix, prefix)
