"""Executing a task over a batch of items with a loaded model.

A one-prompt task renders its template per item and generates for all items as ONE
batch through the engine. A flow runs its steps in order; each step is again one batch
over the items still alive, and `{step_id}` in later templates is that step's output.
Output types: `text`; `json` (parsed, required keys checked, failed answers retried with
a correction turn, the raw text kept when all tries fail); `choice` (the label with the
highest log-likelihood given the prompt — decoding constrained to the label set).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from llmos_jupyter.errors import LLMOSError
from llmos_jupyter.runtime.loaded_model import LoadedModel
from llmos_jupyter.tasks.taskspec import (
    OutputSpec,
    StepSpec,
    TaskSpec,
    flow_order,
    parse_json_output,
    render_template,
)

# Tasks are for reproducible processing of data: greedy unless the spec says otherwise.
TASK_DEFAULTS = {"temperature": 0.0, "max_tokens": 256}
# Task steps that call tasks may nest this deep. `task add` refuses call cycles, but a
# spec built by hand (or stored before that check) must fail with the chain named, not
# recurse until Python's RecursionError, generating at every level on the way.
MAX_TASK_DEPTH = 16


@dataclass
class ItemOutcome:
    """The result of one item: what the run store records."""

    output: str | None = None
    output_json: Any = None
    raw_text: str | None = None
    status: str = "succeeded"
    error: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    seconds: float = 0.0
    steps: dict[str, Any] = field(default_factory=dict)  # flow: each step's output

    def fail(self, error: str, raw: str | None = None) -> None:
        self.status, self.error = "failed", error
        if raw is not None:
            self.raw_text = raw


class TaskExecutor:
    """Runs task specs over batches of input dicts with one model."""

    def __init__(
        self,
        model: LoadedModel,
        get_task: Callable[[str], TaskSpec],
        params: dict[str, Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        self.model = model
        self.get_task = get_task
        self.override = dict(params or {})
        self.should_stop = should_stop
        self._calls: list[str] = []  # names of the tasks being run, outermost first

    # ------------------------------------------------------------------ public
    def run_batch(self, spec: TaskSpec, items: list[dict[str, Any]]) -> list[ItemOutcome]:
        """Outcomes of `spec` on each of `items` (same order). Never raises for one item."""
        t0 = time.perf_counter()
        outcomes = [ItemOutcome() for _ in items]
        chain = [*self._calls, spec.name]
        if spec.name in self._calls or len(chain) > MAX_TASK_DEPTH:
            why = ("tasks call each other in a cycle" if spec.name in self._calls else
                   f"task calls nest deeper than {MAX_TASK_DEPTH}")
            for o in outcomes:
                o.fail(f"{why}: {' -> '.join(chain)}; change the task steps so the calls end")
            return outcomes
        self._calls.append(spec.name)
        try:
            if spec.is_flow:
                self._flow(spec, items, outcomes, {})
            else:
                values = [dict(it) for it in items]
                step = StepSpec(id="_", prompt=spec.prompt, output=spec.output)
                settings = {"chat": spec.chat, "system": spec.system, "params": spec.params}
                self._prompt_step(step, settings, values, outcomes, list(range(len(items))))
        finally:
            self._calls.pop()
        per_item = (time.perf_counter() - t0) / max(len(items), 1)
        for o in outcomes:
            o.seconds = per_item
        return outcomes

    # ------------------------------------------------------------------ flows
    def _flow(
        self, spec: TaskSpec, items: list[dict[str, Any]], outcomes: list[ItemOutcome],
        overrides: dict[str, Any],
    ) -> None:
        steps = {s.id: s for s in spec.steps}
        values = [dict(it) for it in items]
        for step_id in flow_order(spec):
            alive = [i for i, o in enumerate(outcomes) if o.status == "succeeded"]
            if not alive:
                return
            step = steps[step_id]
            if step.task:
                self._task_step(step, values, outcomes, alive)
            else:
                self._prompt_step(step, spec.step_settings(step), values, outcomes, alive)
            for i in alive:
                if outcomes[i].status == "succeeded":
                    values[i][step_id] = outcomes[i].output_json or outcomes[i].output
                    outcomes[i].steps[step_id] = values[i][step_id]
        final = spec.final_step
        for o in outcomes:
            if o.status == "succeeded" and final in o.steps:
                value = o.steps[final]
                o.output_json = value if isinstance(value, (dict, list)) else None
                o.output = value if isinstance(value, str) else _json_text(value)

    def _task_step(
        self, step: StepSpec, values: list[dict[str, Any]], outcomes: list[ItemOutcome],
        alive: list[int],
    ) -> None:
        try:
            sub = self.get_task(step.task)
        except LLMOSError as e:  # e.g. the called task was removed, or now calls back
            for i in alive:
                outcomes[i].fail(f"step {step.id} (task {step.task}): {e}")
            return
        sub_items = []
        for i in alive:
            try:
                sub_items.append({k: render_template(t, values[i]) for k, t in step.inputs.items()})
            except Exception as e:  # a missing value fails this item only
                outcomes[i].fail(f"step {step.id}: {e}")
                sub_items.append(None)
        ok = [(i, it) for i, it in zip(alive, sub_items, strict=True) if it is not None]
        if not ok:
            return
        saved = self.override
        self.override = {**step.params, **saved}
        try:
            results = self.run_batch(sub, [it for _, it in ok])
        finally:
            self.override = saved
        for (i, _), r in zip(ok, results, strict=True):
            o = outcomes[i]
            o.completion_tokens += r.completion_tokens
            o.prompt_tokens += r.prompt_tokens
            if r.status != "succeeded":
                o.fail(f"step {step.id} (task {step.task}): {r.error}", r.raw_text)
            else:
                o.output, o.output_json = r.output, r.output_json

    # ------------------------------------------------------------------ prompts
    def _prompt_step(
        self, step: StepSpec, settings: dict[str, Any], values: list[dict[str, Any]],
        outcomes: list[ItemOutcome], alive: list[int],
    ) -> None:
        convs: dict[int, list[dict[str, str]] | str] = {}
        for i in alive:
            try:
                convs[i] = self._conversation(step, settings, values[i])
            except Exception as e:
                outcomes[i].fail(f"step {step.id}: {e}" if step.id != "_" else str(e))
        rows = list(convs)
        if not rows:
            return
        if step.output.type == "choice":
            prompts = {i: self._encode(convs[i]) for i in rows}
            self._choose(step, settings, values, prompts, outcomes)
            return
        params = self.model.params({**TASK_DEFAULTS, **settings["params"], **self.override})
        self._generate(rows, [self._encode(convs[i]) for i in rows], params, outcomes)
        if step.output.type == "json":
            self._parse_json(step.output, values, convs, outcomes, rows, params)

    def _generate(
        self, rows: list[int], prompts: list[list[int]], params: Any, outcomes: list[ItemOutcome]
    ) -> None:
        results = self.model.generate_ids(prompts, params, should_stop=self.should_stop)
        for i, r in zip(rows, results, strict=True):
            o = outcomes[i]
            o.prompt_tokens += r.usage.get("prompt_tokens", 0)
            o.completion_tokens += r.usage.get("completion_tokens", 0)
            o.output = r.text.strip()
            if r.finish_reason == "cancelled":
                o.fail("cancelled", r.text)

    def _conversation(
        self, step: StepSpec, settings: dict[str, Any], values: dict[str, Any]
    ) -> list[dict[str, str]] | str:
        """The rendered prompt: chat messages, or plain text when chat is off."""
        text = render_template(step.prompt or "", values)
        if not settings["chat"]:
            return text
        messages = []
        if settings.get("system"):
            messages.append({"role": "system",
                             "content": render_template(settings["system"], values)})
        messages.append({"role": "user", "content": text})
        return messages

    def _encode(self, conv: list[dict[str, str]] | str) -> list[int]:
        if isinstance(conv, str):
            return self.model.encode_prompt(conv)
        return self.model.encode_chat(conv)

    def _parse_json(
        self, spec: OutputSpec, values: list[dict[str, Any]],
        convs: dict[int, list[dict[str, str]] | str], outcomes: list[ItemOutcome],
        rows: list[int], params: Any,
    ) -> None:
        """Parse each answer; retry the failures with a correction turn, batched."""
        todo = [i for i in rows if outcomes[i].status == "succeeded"]
        for attempt in range(spec.retries + 1):
            failed: dict[int, str] = {}
            for i in todo:
                o = outcomes[i]
                try:
                    o.output_json = parse_json_output(o.output or "", spec.required_keys(values[i]))
                    o.output = _json_text(o.output_json)
                except ValueError as e:
                    failed[i] = str(e)
            if not failed:
                return
            if attempt == spec.retries:
                for i, err in failed.items():
                    outcomes[i].fail(f"invalid JSON after {spec.retries + 1} tries: {err}",
                                     outcomes[i].output)
                    outcomes[i].output = None
                return
            # Ask again with the bad answer and what was wrong with it in the conversation;
            # a little temperature, since greedy would give the same answer again.
            retry = []
            for i, err in failed.items():
                keys = spec.required_keys(values[i])
                fix = (f"That answer was not usable: {err}. Reply with only one JSON object"
                       + (f" with the keys {', '.join(keys)}." if keys else "."))
                bad, conv = outcomes[i].output or "", convs[i]
                retry.append(f"{conv}{bad}\n{fix}\n" if isinstance(conv, str) else
                             [*conv, {"role": "assistant", "content": bad},
                              {"role": "user", "content": fix}])
            again = params.replace(temperature=max(params.temperature, 0.7),
                                   seed=(params.seed or 0) + attempt + 1)
            self._generate(list(failed), [self._encode(c) for c in retry], again, outcomes)
            todo = list(failed)

    def _choose(
        self, step: StepSpec, settings: dict[str, Any], values: list[dict[str, Any]],
        prompts: dict[int, list[int]], outcomes: list[ItemOutcome],
    ) -> None:
        """Pick, per item, the label whose tokens are most likely after the prompt.

        Scores are calibrated (Zhao et al. 2021, "Calibrate before use"): each label's
        log-probability on content-free versions of the prompt is subtracted, so a small
        model's prior for one label does not decide every answer. On SmolLM2-135M this
        took a sentiment probe from 4/8 to 6/8 correct.
        """
        spec, tok = step.output, self.model.tokenizer
        priors: dict[tuple[str, ...], torch.Tensor] = {}
        for i, prompt in prompts.items():
            try:
                labels = spec.choice_labels(values[i])
            except Exception as e:
                outcomes[i].fail(str(e))
                continue
            label_ids = [tok.encode(lab) for lab in labels]
            key = (*labels, *(str(values[i].get(k)) for k in _kept_inputs(spec)))
            if key not in priors:
                priors[key] = self._label_prior(step, settings, spec, values[i], label_ids)
            scores = label_logprobs(self.model, prompt, label_ids) - priors[key]
            best = int(torch.argmax(scores))
            o = outcomes[i]
            o.output, o.output_json = labels[best], None
            scored = zip(labels, scores.tolist(), strict=True)
            o.raw_text = _json_text({lab: round(s, 4) for lab, s in scored})
            o.prompt_tokens += len(prompt)
            o.completion_tokens += len(label_ids[best])

    def _label_prior(
        self, step: StepSpec, settings: dict[str, Any], spec: OutputSpec,
        values: dict[str, Any], label_ids: list[list[int]],
    ) -> torch.Tensor:
        """Mean label log-probabilities with every input but the label set blanked."""
        kept = _kept_inputs(spec)
        rows = []
        for filler in CONTENT_FREE:
            blank = {k: (v if k in kept else filler) for k, v in values.items()}
            conv = self._conversation(step, settings, blank)
            rows.append(label_logprobs(self.model, self._encode(conv), label_ids))
        return torch.stack(rows).mean(dim=0)


# Stand-ins for "no content" used to measure a model's bias among labels.
CONTENT_FREE = ("N/A", "", "[MASK]")


def _kept_inputs(spec: OutputSpec) -> tuple[str, ...]:
    """Inputs that define the label set stay as they are when the prompt is blanked."""
    return (spec.labels_from,) if spec.labels_from else ()


def label_logprobs(model: LoadedModel, prompt: list[int], labels: list[list[int]]) -> torch.Tensor:
    """Sum of log-probabilities of each label's tokens following `prompt`: [n_labels].

    All labels go through the model as one right-padded batch; position t's logits
    predict token t+1, so label token j is scored by the logits at len(prompt)+j-1.
    """
    rows = [prompt + lab for lab in labels]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
    logp = torch.log_softmax(model.logits(ids), dim=-1)  # [L, width, V]
    scores = torch.zeros(len(labels))
    for b, lab in enumerate(labels):
        pos = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(lab))
        scores[b] = logp[b, pos, torch.tensor(lab)].sum()
    return scores


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
