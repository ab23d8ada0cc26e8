"""The `llmos` command line: parses with the shared verb table and prints the result."""

from __future__ import annotations

import sys

from llmos_jupyter.errors import LLMOSError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `llmos` console script. Returns the exit status."""
    from llmos_jupyter.commands.dispatch import dispatch
    from llmos_jupyter.commands.table import CommandError, Context, _HelpShown, parse

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse(argv)
    except _HelpShown as h:
        print(h.text)
        return 0
    except CommandError as e:
        print(str(e), file=sys.stderr)
        return 2
    ctx = Context(notebook=False, progress=sys.stderr.isatty() or not getattr(args, "json", False))
    try:
        out = dispatch(args, ctx)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (LLMOSError, ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 1
    text = out.json() if getattr(args, "json", False) else out.text()
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
