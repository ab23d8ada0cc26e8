"""`llmos serve`: the HTTP server in the foreground until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import os

from llmos_jupyter.commands.output import Message, Output
from llmos_jupyter.commands.table import Context


def serve(args: argparse.Namespace, ctx: Context) -> Output:
    """Serve until stopped (a drain); raises LLMOSError when it cannot listen as asked."""
    from llmos_jupyter.server.standalone import run  # tornado and torch: only for serve

    run(args.host, args.port, args.api_key or os.environ.get("LLMOS_API_KEY"),
        args.max_batch, args.max_queue)
    return Message("llmos serve: stopped")
