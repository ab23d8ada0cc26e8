"""What a command returns: a table, a record or a message — rendered per interface.

The CLI prints `text()` or `json()`; in a notebook the object itself is the cell's
result, so JupyterLab shows `_repr_html_` and plain frontends `__repr__`.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _short(text: str, width: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class Table:
    """Rows under column headings: aligned text in a terminal, an HTML table in a notebook."""

    rows: list[dict[str, Any]]
    columns: list[str]
    title: str = ""
    empty: str = "(none)"

    def json(self) -> str:
        """The rows as a JSON array (for --json)."""
        return json.dumps(self.rows, ensure_ascii=False, default=str, indent=2)

    def text(self) -> str:
        """The rows as aligned columns under upper-case headings."""
        if not self.rows:
            return self.empty
        cells = [[_short(_cell(r.get(c))) for c in self.columns] for r in self.rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(self.columns)]
        line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True))
        out = [line([c.upper() for c in self.columns])] + [line(r) for r in cells]
        return "\n".join(s.rstrip() for s in out)

    __repr__ = text

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p><em>{html.escape(self.empty)}</em></p>"
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_short(_cell(r.get(c)), 120))}</td>"
                             for c in self.columns) + "</tr>"
            for r in self.rows
        )
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return (f"<table class='llmos-table'>{cap}<thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


class TitledTable(Table):
    """A table whose text starts with its title (a run's status above its items)."""

    def text(self) -> str:
        """The title, then the table."""
        return f"{self.title}\n{super().text()}" if self.title else super().text()

    __repr__ = text


@dataclass
class Record:
    """One object's fields, one per line (`show` verbs); an HTML table in a notebook."""

    data: dict[str, Any]
    title: str = ""
    value: Any = field(default=None, repr=False)  # the Python object behind it, for -o VAR

    def json(self) -> str:
        """The fields as a JSON object (for --json)."""
        return json.dumps(self.data, ensure_ascii=False, default=str, indent=2)

    def text(self) -> str:
        """The title, then `field  value` lines; multi-line values indented below."""
        width = max((len(k) for k in self.data), default=0)
        lines = [self.title] if self.title else []
        for k, v in self.data.items():
            val = _cell(v)
            if "\n" in val:
                val = "\n" + "\n".join("    " + s for s in val.splitlines())
            lines.append(f"{k.ljust(width)}  {val}")
        return "\n".join(lines)

    __repr__ = text

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td><pre style='margin:0;white-space:pre-wrap'>{html.escape(_cell(v))}</pre>"
            "</td></tr>"
            for k, v in self.data.items()
        )
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table class='llmos-record'>{cap}{rows}</table>"


@dataclass
class Message:
    """A sentence saying what a verb did."""

    message: str
    value: Any = field(default=None, repr=False)

    def json(self) -> str:
        """{"message": ...} (for --json)."""
        return json.dumps({"message": self.message}, ensure_ascii=False)

    def text(self) -> str:
        """The message itself."""
        return self.message

    __repr__ = text


Output = Table | Record | Message


def error_message(error: BaseException, notebook: bool = False) -> str:
    """What a command-line interface prints for `error`: its command-line spelling.

    Hints name commands as `llmos VERB ...`; a notebook shows them as `%llmos VERB ...`.
    A KeyError's message is its first argument (str() would quote it).
    """
    text = getattr(error, "command_line", None) or (
        error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    )
    text = str(text) or type(error).__name__
    return text.replace("`llmos ", "`%llmos ") if notebook else text
