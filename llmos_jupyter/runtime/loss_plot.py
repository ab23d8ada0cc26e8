"""Live training progress: a loss plot updated in place in a notebook, a line per step in
a terminal. Called from the training thread; it only updates a widget's value (thread
safe through the widget's comm) or writes to stderr, never prints into another cell."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Metrics = Callable[[dict[str, Any]], None]


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def render_loss_png(metrics: list[dict[str, Any]], title: str = "") -> bytes:
    """A PNG of train loss (and val loss where measured) against step."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=90)
    ax = fig.add_subplot()
    steps = [m["step"] for m in metrics]
    ax.plot(steps, [m["loss"] for m in metrics], label="train loss")
    val = [(m["step"], m["val_loss"]) for m in metrics if m.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class LossPlot:
    """An image widget redrawn every `every` steps, with a status line under it."""

    def __init__(self, total_steps: int, title: str, every: int = 1) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.total, self.title, self.every = total_steps, title, max(1, every)
        self.metrics: list[dict[str, Any]] = []
        self.image = w.Image(format="png")
        self.status = w.Label(value=f"{title}: starting")
        self.box = w.VBox([self.image, self.status])
        display(self.box)

    def __call__(self, m: dict[str, Any]) -> None:
        self.metrics.append(m)
        self.status.value = status_line(m, self.total, self.title)
        if m["step"] % self.every == 0 or m["step"] >= self.total or "val_loss" in m:
            self.image.value = render_loss_png(self.metrics, self.title)


def status_line(m: dict[str, Any], total: int, title: str) -> str:
    """'title: step 12/60 loss 1.234 val 1.300 1234 tok/s ETA 40s'."""
    parts = [f"{title}: step {m['step']}/{total}", f"loss {m['loss']:.4f}"]
    if m.get("val_loss") is not None:
        parts.append(f"val {m['val_loss']:.4f}")
    if m.get("tokens_per_s"):
        parts.append(f"{m['tokens_per_s']:.0f} tok/s")
    if m.get("eta_s") is not None:
        parts.append(f"ETA {m['eta_s']:.0f}s")
    return " ".join(parts)


def metrics_callback(progress: bool | Metrics | None, total_steps: int, title: str
                     ) -> Metrics | None:
    """The `progress` argument of api.train as a per-step callback (or None)."""
    if callable(progress):
        return progress
    if not progress:
        return None
    if _in_notebook():
        return LossPlot(total_steps, title, every=max(1, total_steps // 30))

    def line(m: dict[str, Any]) -> None:
        sys.stderr.write(status_line(m, total_steps, title) + "\n")
        sys.stderr.flush()

    return line
