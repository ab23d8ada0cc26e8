"""HTML fragments the widgets show: tables, key/value records, progress bars, errors.

Every value is escaped: model names, dataset rows and generated text are user data.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

# Compact styling that reads well in both JupyterLab themes (colors come from its vars).
TABLE_STYLE = (
    "border-collapse:collapse;font-size:12px;font-family:var(--jp-ui-font-family,sans-serif);"
)
CELL_STYLE = (
    "border-bottom:1px solid var(--jp-border-color2,#ddd);padding:2px 8px;text-align:left;"
    "vertical-align:top;max-width:420px;overflow:hidden;text-overflow:ellipsis;"
)


def cell_text(value: Any, width: int = 80) -> str:
    """One value as short plain text: None -> '', floats to 4 digits, JSON for containers."""
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: str = "(none)",
          raw: Sequence[str] = ()) -> str:
    """An HTML table of `rows` (dicts) showing `columns`; columns in `raw` are trusted HTML."""
    if not rows:
        return f"<p><em>{html.escape(empty)}</em></p>"
    head = "".join(f"<th style='{CELL_STYLE}'>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            content = str(v) if c in raw else html.escape(cell_text(v))
            cells.append(f"<td style='{CELL_STYLE}'>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table class='llmos-table' style='{TABLE_STYLE}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def record(data: dict[str, Any], width: int = 200) -> str:
    """An HTML key/value table (e.g. a model's details)."""
    rows = "".join(
        f"<tr><th style='{CELL_STYLE}'>{html.escape(str(k))}</th>"
        f"<td style='{CELL_STYLE}'>{html.escape(cell_text(v, width))}</td></tr>"
        for k, v in data.items()
    )
    return f"<table class='llmos-record' style='{TABLE_STYLE}'>{rows}</table>"


def progress_bar(fraction: float, width_px: int = 120) -> str:
    """A small inline progress bar; `fraction` is clamped to 0..1."""
    f = min(max(float(fraction), 0.0), 1.0)
    return (f"<span style='white-space:nowrap'><div style='width:{width_px}px;height:10px;"
            "background:var(--jp-layout-color3,#eee);"
            f"display:inline-block;vertical-align:middle'><div style='width:{f * 100:.1f}%;"
            "height:100%;background:var(--jp-brand-color1,#1976d2)'></div></div>"
            f" {f * 100:.0f}%</span>")


def preformatted(text: str) -> str:
    """Text in a scrollable <pre> block (a task's YAML)."""
    return ("<pre style='margin:0;max-height:320px;overflow:auto;font-size:12px;"
            f"white-space:pre-wrap'>{html.escape(text)}</pre>")


def error(message: str) -> str:
    """An error line in the theme's error color."""
    return f"<span style='color:var(--jp-error-color1,#d32f2f)'>{html.escape(message)}</span>"


def describe_error(e: BaseException) -> str:
    """What a user sees for an exception: its type and message, no traceback."""
    return f"{type(e).__name__}: {e}"
