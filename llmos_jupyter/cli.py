"""The `llmos` command line: parses with the shared verb table and prints the result.

Only the parser is imported before a verb is known, and only the verbs that run a model
import torch (on `api.load`): catalog verbs answer in a fraction of a second.
"""

from __future__ import annotations

import os
import signal
import sys

from llmos_jupyter.commands.output import error_message
from llmos_jupyter.commands.table import CommandError, Context, parse_command_line
from llmos_jupyter.errors import LLMOSError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `llmos` console script. Returns the exit status."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # The reader went away (`llmos runs list --json | head`): stop quietly, as Unix
        # tools do. Point stdout at /dev/null so the interpreter's final flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: list[str]) -> int:
    args = parse_command_line(argv)
    if isinstance(args, int):
        return args
    # The handlers bring the api's stack: `llmos --help` answers from the parser alone.
    from llmos_jupyter.commands.dispatch import dispatch

    ctx = Context(notebook=False, progress=sys.stderr.isatty() or not getattr(args, "json", False),
                  stdin=sys.stdin)
    try:
        out = dispatch(args, ctx, {"serve": _serve})
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except CommandError as e:  # usage the handler refused: exit status 2, as argparse's
        print(f"error: {error_message(e)}", file=sys.stderr)
        return 2
    except (LLMOSError, ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {error_message(e)}", file=sys.stderr)
        return 1
    text = out.json() if getattr(args, "json", False) else out.text()
    if text:
        print(text)
    sys.stdout.flush()  # here, inside the BrokenPipeError handler, not at exit
    return 0


def _serve(args, ctx):  # noqa: ANN001, ANN202 - a dispatch handler
    # tornado and the model stack: only for `llmos serve`.
    from llmos_jupyter.server.standalone import serve_verb

    return serve_verb(args, ctx)


if __name__ == "__main__":
    sys.exit(main())
