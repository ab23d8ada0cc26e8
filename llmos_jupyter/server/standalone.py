"""`llmos serve`: the LLMOS routes on their own tornado server, outside Jupyter.

Auth is a bearer key (`--api-key` or LLMOS_API_KEY) on every route but GET /health; the
server refuses to listen on a non-loopback address without one. SIGINT / SIGTERM drain:
no new connections, admitted requests finish (streams included), then the process exits;
a second signal exits at once. The store is never half-written by a drain, since requests
only read it.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import logging
import os
import signal
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.netutil
import tornado.web

from llmos_jupyter.commands.output import Message, Output
from llmos_jupyter.commands.table import Context, parse_command_line
from llmos_jupyter.errors import LLMOSError
from llmos_jupyter.runtime.serving import Serving
from llmos_jupyter.server import routes
from llmos_jupyter.server.base import LLMOSHandler
from llmos_jupyter.server.protocol import APIError

log = logging.getLogger("llmos.serve")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
DRAIN_TIMEOUT_S = 120.0  # how long a drain waits for admitted requests


class ServeError(LLMOSError):
    """The server cannot start as asked (exposed without a key, address in use, ...)."""


class StandaloneHandler(tornado.web.RequestHandler):
    """Host base of `llmos serve`: bearer-key auth before any handler code runs.

    Browsers: with a key, any origin may call (the key guards, and it is never a cookie a
    page could borrow), so answers carry CORS headers and preflights are answered. Without
    a key, a web page the user visits must not reach the models: a request naming another
    origin (`Origin`), or a host name that is not loopback (DNS rebinding), is refused.
    """

    def set_default_headers(self) -> None:
        """CORS headers, when a key guards the server."""
        if self.settings.get("llmos_api_key"):
            self.set_header("Access-Control-Allow-Origin", "*")
            self.set_header("Access-Control-Expose-Headers", "Retry-After, Content-Disposition")

    def options(self, *_args: str) -> None:
        """A browser's preflight: the methods and headers a cross-origin call may use."""
        if not self.settings.get("llmos_api_key"):
            raise APIError(403, "cross-origin calls need a server started with --api-key")
        self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def prepare(self) -> None:
        self.application.settings["llmos_active"].add(self)
        key = self.settings.get("llmos_api_key")
        if not key:
            self._refuse_foreign_pages()
            return
        if getattr(self, "public", False) or self.request.method == "OPTIONS":
            return
        given = self.request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            self.set_header("WWW-Authenticate", 'Bearer realm="llmos"')
            raise APIError(401, "missing or wrong API key; send the header "
                           "'Authorization: Bearer KEY' (the key given to llmos serve)",
                           code="invalid_api_key")

    def _refuse_foreign_pages(self) -> None:
        host = self.request.host_name
        if not _is_loopback_name(host):
            raise APIError(403, f"host {host!r} is not this machine's loopback name; a "
                           "server without --api-key answers only 127.0.0.1 / localhost")
        origin = self.request.headers.get("Origin")
        if origin and not _is_loopback_name(urlsplit(origin).hostname or ""):
            raise APIError(403, f"a page from {origin} may not call a server without an API "
                           "key; start llmos serve with --api-key KEY to allow browser apps")

    def on_finish(self) -> None:
        self.application.settings["llmos_active"].discard(self)

    def on_connection_close(self) -> None:
        # A client that left may never see its request finish: a drain must not wait on it.
        self.application.settings["llmos_active"].discard(self)
        super().on_connection_close()


class NotFoundHandler(LLMOSHandler, StandaloneHandler):
    """Unknown paths: 404 in OpenAI's error body (after auth, so it reveals nothing)."""

    def prepare(self) -> None:
        super().prepare()
        raise APIError(404, f"no route {self.request.path}; see GET /health and /v1/models")


def make_app(serving: Serving, api_key: str | None) -> tornado.web.Application:
    """The tornado application serving every route at `/`."""
    return tornado.web.Application(
        routes.build("/", StandaloneHandler),
        default_handler_class=NotFoundHandler,
        llmos_serving=serving, llmos_api_key=api_key or None, llmos_active=set(),
    )


def is_loopback(host: str) -> bool:
    """Whether every address `host` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _is_loopback_name(host: str) -> bool:
    """localhost or a loopback IP literal (no DNS lookup: a name may be rebound)."""
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without a key (ServeError names the fix)."""
    if not api_key and not is_loopback(host):
        raise ServeError(f"refusing to listen on {host} without an API key: anyone who "
                       "can reach it could use your models; pass --api-key KEY (or set "
                       "LLMOS_API_KEY), or listen on 127.0.0.1")


async def serve(host: str, port: int, api_key: str | None, max_rows: int = 32,
                max_queue: int = 64, ready: Any = None) -> None:
    """Serve until SIGINT/SIGTERM, then drain. `ready(port)` is called once listening."""
    check_exposure(host, api_key)
    serving = Serving(max_rows=max_rows, max_queue=max_queue)
    app = make_app(serving, api_key)
    sockets = tornado.netutil.bind_sockets(port, address=host)
    server = tornado.httpserver.HTTPServer(app, max_buffer_size=64 * 2**20)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # a second signal: leave now
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    if ready is not None:
        ready(bound)
    await stop.wait()
    log.info("draining: no new connections; waiting for admitted requests")
    server.stop()
    await loop.run_in_executor(None, serving.close, DRAIN_TIMEOUT_S)
    active = app.settings["llmos_active"]
    for _ in range(int(DRAIN_TIMEOUT_S * 10)):  # handlers write what the schedulers gave
        if not active:
            break
        await asyncio.sleep(0.1)
    await server.close_all_connections()


def run(host: str, port: int, api_key: str | None, max_batch: int = 32,
        max_queue: int = 64) -> None:
    """Serve in the foreground until SIGINT/SIGTERM, printing where it listens.

    Raises ServeError: exposed beyond loopback without a key, or cannot listen."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def ready(bound: int) -> None:
        auth = "bearer key required" if api_key else "no key (loopback only)"
        print(f"llmos serve: listening on http://{host}:{bound} ({auth}); "
              "Ctrl-C drains and stops", flush=True)

    try:
        asyncio.run(serve(host, port, api_key, max_batch, max_queue, ready))
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}; pick another "
                         "--port (or stop what holds this one)") from None



def serve_verb(args: argparse.Namespace, ctx: Context) -> Output:
    """The `serve` verb's handler (the CLI hands it to dispatch): serve until stopped."""
    run(args.host, args.port, args.api_key or os.environ.get("LLMOS_API_KEY"),
        args.max_batch, args.max_queue)
    return Message("llmos serve: stopped")


def main(argv: list[str] | None = None) -> int:
    """The module run as a script: the `serve` verb with these arguments."""
    args = parse_command_line(["serve", *(sys.argv[1:] if argv is None else argv)])
    if isinstance(args, int):
        return args
    try:
        print(serve_verb(args, Context(progress=False)).text())
    except LLMOSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
