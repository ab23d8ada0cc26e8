"""The Playground: try a model on a prompt, with sampling sliders and streamed output."""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as w
import traitlets as t

from llmos_jupyter import api
from llmos_jupyter.widgets import html
from llmos_jupyter.widgets.background import Jobs

# Pushing every token to the browser costs a message each; 20 updates a second reads as
# smooth streaming and keeps the comm channel quiet on fast models.
STREAM_INTERVAL_S = 0.05
WIDE = {"description_width": "initial"}  # show slider names in full


class Playground(w.VBox):
    """Model dropdown, prompt, sampling sliders, Generate / Stop, streamed output.

    `generate()` starts a generation in a thread (as the Generate button does) and
    `wait()` joins it. The generated text is in `text` (and the output Textarea), the
    decode speed in `tokens_per_s`, a failure in `error`. With `chat` checked the prompt
    is sent as one user turn through the model's chat template.
    """

    text = t.Unicode("", help="The text generated so far.").tag(sync=True)
    busy = t.Bool(False, help="A generation is running.").tag(sync=True)
    tokens_per_s = t.Float(0.0, help="Decode speed of the last generation.").tag(sync=True)
    finish_reason = t.Unicode("", help="stop | length | cancelled, of the last run.").tag(
        sync=True)
    error = t.Unicode("", help="The last error, empty when the last run succeeded.").tag(
        sync=True)

    def __init__(self, model: str | None = None, prompt: str = "", *, temperature: float = 0.7,
                 top_p: float = 0.9, max_tokens: int = 128, chat: bool = True, **kwargs: Any):
        self.jobs = Jobs("playground", self._fail)
        self._stop = threading.Event()
        self.model = w.Dropdown(description="Model", options=[])
        self.prompt = w.Textarea(value=prompt, placeholder="Type a prompt…",
                                 layout=w.Layout(width="100%", height="90px"))
        self.temperature = w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05,
                                         description="temperature", style=WIDE)
        self.top_p = w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05,
                                   description="top_p", style=WIDE)
        self.max_tokens = w.IntSlider(value=max_tokens, min=1, max=1024, description="max_tokens",
                                        style=WIDE)
        self.chat = w.Checkbox(value=chat, description="chat template", indent=False)
        self.generate_button = w.Button(description="Generate", icon="play",
                                        button_style="primary")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.output = w.Textarea(value="", disabled=True, placeholder="(output)",
                                 layout=w.Layout(width="100%", height="160px"))
        self.speed = w.Label("")
        self.status = w.HTML("")
        self.generate_button.on_click(lambda _: self.generate())
        self.stop_button.on_click(lambda _: self.stop())
        super().__init__(children=[
            w.HBox([self.model, self.chat]),
            self.prompt,
            w.HBox([self.temperature, self.top_p, self.max_tokens]),
            w.HBox([self.generate_button, self.stop_button, self.speed]),
            self.output,
            self.status,
        ], **kwargs)
        self.add_class("llmos-playground")  # a stable hook for styling and screenshots
        self.refresh(prefer=model)

    # ------------------------------------------------------------------ state
    def refresh(self, prefer: str | None = None) -> None:
        """Re-read the models in the store; select `prefer`, else the current model."""
        try:
            names = [m["name"] for m in api.list_models()]
        except Exception as e:
            self.error = html.describe_error(e)
            return
        current = api.current_model_or_none()
        want = prefer or self.model.value or (current.name if current else None)
        if prefer and prefer not in names:
            names.append(prefer)  # pullable but not pulled yet: api.load pulls it
        self.model.options = names
        self.model.value = want if want in names else (names[0] if names else None)

    @t.observe("busy")
    def _busy_changed(self, change: dict[str, Any]) -> None:
        self.generate_button.disabled = change["new"]
        self.stop_button.disabled = not change["new"]

    @t.observe("text")
    def _text_changed(self, change: dict[str, Any]) -> None:
        self.output.value = change["new"]

    @t.observe("error")
    def _error_changed(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.status.value = html.error(change["new"])

    def _fail(self, e: BaseException) -> None:
        self.error, self.busy = html.describe_error(e), False

    # ------------------------------------------------------------------ actions
    def generate(self) -> None:
        """Start generating from the prompt in a thread (no-op while one is running)."""
        if self.busy:
            return
        name, prompt = self.model.value, self.prompt.value
        if not name:
            self.error = "No model: pull or import one first (Dashboard → Models)."
            return
        params = dict(max_tokens=self.max_tokens.value, temperature=self.temperature.value,
                      top_p=self.top_p.value)
        self._stop.clear()
        self.busy, self.error, self.text, self.speed.value = True, "", "", ""
        self.finish_reason, self.tokens_per_s = "", 0.0
        current = api.current_model_or_none()
        self.status.value = (f"loading {name}…" if current is None or current.name != name
                             else "generating…")
        self.jobs.start(self._generate, name, prompt, self.chat.value, params)

    def _generate(self, name: str, prompt: str, chat: bool, params: dict[str, Any]) -> None:
        model = api.load(name)
        self.status.value = "generating…"
        pieces: list[str] = []
        last_push = [0.0]

        def on_piece(_row: int, piece: str) -> None:
            pieces.append(piece)
            now = time.monotonic()
            if now - last_push[0] >= STREAM_INTERVAL_S:
                last_push[0] = now
                self.text = "".join(pieces)

        kw = dict(on_piece=on_piece, should_stop=self._stop.is_set, **params)
        if chat:
            result = model.chat([{"role": "user", "content": prompt}], **kw)
        else:
            result = model.generate(prompt, **kw)
        self.text = result.text
        self.tokens_per_s = float(result.timings.get("decode_tokens_per_s", 0.0))
        self.finish_reason = result.finish_reason
        n = result.usage.get("completion_tokens", 0)
        self.speed.value = f"{self.tokens_per_s:.1f} tokens/s"
        self.status.value = html.cell_text(f"{n} tokens, finished: {result.finish_reason}")
        self.busy = False

    def stop(self) -> None:
        """Ask the running generation to stop after its current token."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Join the generation thread; True if it finished."""
        return self.jobs.wait(timeout)
