"""The %llmos line magic and %%llmos cell magic: parse, then dispatch.

Line verbs are the CLI's verbs (one shared table, commands/table.py) plus notebook
verbs; cell verbs are `generate`, `chat`, `task NAME` and `train`. Mistakes a user can fix are
UsageErrors with a hint: the notebook shows the message, not a traceback.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from llmos_jupyter.commands.output import error_message
from llmos_jupyter.commands.table import CommandError, Context, HelpShown, parse
from llmos_jupyter.errors import LLMOSError


@magics_class
class LLMOSMagics(Magics):
    """`%llmos VERB ...` and `%%llmos generate|chat|task ...`."""

    def __init__(self, shell: Any, show_widget: Callable[[str], Any] | None = None):
        super().__init__(shell)
        # The %%llmos chat conversation of this notebook: list of {"role", "content"}.
        self.conversation: list[dict[str, str]] = []
        # Makes the widget `%llmos dashboard` / `playground` shows (see magics/__init__).
        self.show_widget = show_widget

    @line_cell_magic
    def llmos(self, line: str, cell: str | None = None) -> Any:
        """LLMOS: `%llmos help` lists the verbs; `%llmos help VERB` explains one."""
        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%llmos: cannot parse the line ({e}); check the quotes") from None
        try:
            if cell is not None:
                # The cell verbs bring the api's stack: loaded on the first cell.
                from llmos_jupyter.magics.cells import run_cell

                return run_cell(self, argv, cell)
            return self._line(argv)
        except UsageError:
            raise
        except KeyboardInterrupt:
            print("\n[interrupted]")
            return None
        except (LLMOSError, ValueError, FileNotFoundError, KeyError) as e:
            raise UsageError(error_message(e, notebook=True)) from None

    def _line(self, argv: list[str]) -> Any:
        # The handlers bring the api's stack: `%load_ext llmos` stays instant.
        from llmos_jupyter.commands.dispatch import dispatch
        from llmos_jupyter.magics.verbs import NOTEBOOK_HANDLERS

        try:
            args = parse(argv, prog="%llmos", notebook=True)
        except HelpShown as h:
            print(h.text)
            return None
        except CommandError as e:
            raise UsageError(str(e)) from None
        ctx = Context(notebook=True, namespace=self.shell.user_ns, write=_write, progress=True)
        args._magics = self  # notebook verbs need the shell and the conversation
        try:
            out = dispatch(args, ctx, NOTEBOOK_HANDLERS)
        except CommandError as e:
            raise UsageError(error_message(e, notebook=True)) from None
        var = getattr(args, "out", None)
        if var:
            self.shell.user_ns[var] = getattr(out, "value", None) or out
        if getattr(args, "json", False):
            print(out.json())
            return None
        if not out.text():
            return None
        return out


def _write(text: str) -> None:
    import sys

    sys.stdout.write(text)
    sys.stdout.flush()

