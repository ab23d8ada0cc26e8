"""The token-length histogram of a dataset column, drawn as inline SVG.

matplotlib draws it when installed (through its object API, not pyplot: the figure is
built in a worker thread, and pyplot's global state is neither thread-safe nor wanted in
the user's notebook). Without matplotlib a plain HTML bar chart is drawn instead.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence


def bin_counts(values: Sequence[int], bins: int = 20) -> tuple[list[float], list[int]]:
    """Equal-width bins over [min, max]: (edges (bins+1), counts (bins)). Empty -> ([], [])."""
    if not values:
        return [], []
    lo, hi = min(values), max(values)
    if lo == hi:
        return [lo - 0.5, hi + 0.5], [len(values)]
    bins = max(1, min(bins, hi - lo + 1))
    width = (hi - lo) / bins
    edges = [lo + i * width for i in range(bins + 1)]
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    return edges, counts


def histogram_html(values: Sequence[int], unit: str, title: str = "", bins: int = 20) -> str:
    """An HTML fragment (SVG with matplotlib, else div bars) of the distribution of `values`."""
    if not values:
        return "<p><em>no text values to plot</em></p>"
    try:
        return _matplotlib_svg(values, unit, title, bins)
    except ImportError:
        return _html_bars(values, unit, title, bins)


def _matplotlib_svg(values: Sequence[int], unit: str, title: str, bins: int) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 2.6), dpi=100)
    ax = fig.add_subplot()
    edges, counts = bin_counts(values, bins)
    ax.stairs(counts, edges, fill=True, color="#1976d2", alpha=0.85)
    ax.set_xlabel(f"{unit} per row")
    ax.set_ylabel("rows")
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    # Drop the XML prolog and DOCTYPE: the SVG is embedded in HTML, not served as a file.
    return svg[svg.index("<svg"):]


def _html_bars(values: Sequence[int], unit: str, title: str, bins: int) -> str:
    edges, counts = bin_counts(values, bins)
    top = max(counts)
    bars = "".join(
        f"<div title='{edges[i]:.0f}-{edges[i + 1]:.0f} {html.escape(unit)}: {c} rows' "
        f"style='display:inline-block;width:14px;margin-right:1px;background:#1976d2;"
        f"height:{max(1, round(100 * c / top))}px'></div>"
        for i, c in enumerate(counts)
    )
    return (f"<div><b>{html.escape(title)}</b><div style='display:flex;align-items:flex-end;"
            f"height:104px'>{bars}</div><small>{edges[0]:.0f} … {edges[-1]:.0f} "
            f"{html.escape(unit)} per row</small></div>")
