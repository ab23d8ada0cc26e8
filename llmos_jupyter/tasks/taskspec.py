"""Task specs: the YAML a user writes to define a task, parsed and checked up front.

A task is either one `prompt` (a template over its `inputs`) or a flow of `steps` that
run in order, each step a prompt or a call of another task, where `{step_id}` in a later
step is that step's output. Every mistake is a `SpecError` naming the LINE and the FIELD.

In a flow, top-level `chat`, `system` and `params` are defaults for its prompt steps
(`TaskSpec.step_settings`); the output belongs to each step, and `TaskSpec.output` is the
output spec of the step whose result is the task's (`output_step`, default the last).

This module holds the spec itself (fields, dataclasses, sampling-parameter and flow-order
checks). The rest lives by concern, re-exported here so
`from llmos_jupyter.tasks.taskspec import ...` keeps working:
- `templates`: the template language (`parse_template`, `render_template`, ...);
- `task_output`: `OutputSpec` and reading a model's answer (`parse_json_output`, ...).
Parsing a spec from YAML or a dict is `spec_yaml.parse_task_spec`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from llmos_jupyter.core.params import SettingError, check_setting
from llmos_jupyter.errors import SpecError
from llmos_jupyter.tasks.task_output import (
    OUTPUT_FIELDS,
    OUTPUT_TYPES,
    OutputFormatError,
    OutputSpec,
    normalize_choice,
    parse_json_output,
    split_list,
)
from llmos_jupyter.tasks.templates import (
    IDENT,
    TemplateSyntaxError,
    parse_template,
    render_template,
    template_fields,
)

__all__ = [
    # defined here
    "TASK_NAME", "TOP_FIELDS", "PROMPT_STEP_FIELDS", "TASK_STEP_FIELDS",
    "KnownTasks", "StepSpec", "TaskSpec", "check_params", "step_dependencies", "flow_order",
    # re-exported from templates
    "IDENT", "TemplateSyntaxError", "parse_template", "template_fields", "render_template",
    # re-exported from task_output
    "OUTPUT_FIELDS", "OUTPUT_TYPES", "OutputSpec", "OutputFormatError", "split_list",
    "parse_json_output", "normalize_choice",
]

TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
TOP_FIELDS = ("name", "description", "model", "inputs", "system", "prompt", "steps",
              "output_step", "chat", "params", "output")
PROMPT_STEP_FIELDS = ("id", "prompt", "system", "chat", "params", "output")
TASK_STEP_FIELDS = ("id", "task", "inputs", "params")
KnownTasks = Mapping[str, Any] | Iterable[str] | Callable[[str], Any] | None


@dataclass
class StepSpec:
    """One step of a flow: a `prompt` of its own, or a call of another `task`."""

    id: str
    prompt: str | None = None
    task: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # task steps: input -> template
    system: str | None = None
    chat: bool | None = None  # None: the flow's setting
    params: dict[str, Any] = field(default_factory=dict)  # over the flow's (or task's)
    output: OutputSpec = field(default_factory=OutputSpec)

    def templates(self) -> dict[str, str]:
        """Every template of this step, by field name."""
        out = {f"inputs.{k}": v for k, v in self.inputs.items()}
        out.update({k: v for k, v in (("system", self.system), ("prompt", self.prompt)) if v})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this step."""
        out: dict[str, Any] = {"id": self.id}
        for key in ("task", "inputs", "system", "prompt", "chat", "params"):
            value = getattr(self, key)
            if value not in (None, {}):
                out[key] = value
        if self.output != OutputSpec():
            out["output"] = self.output.to_dict()
        return out


@dataclass
class TaskSpec:
    """A parsed, checked task definition (see the module docstring)."""

    name: str
    description: str = ""
    model: str | None = None  # None: whatever model the run is given
    inputs: list[str] = field(default_factory=list)
    prompt: str | None = None
    steps: list[StepSpec] = field(default_factory=list)
    chat: bool = True  # instruct models want their chat template; false for raw completion
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    output: OutputSpec = field(default_factory=OutputSpec)
    output_step: str | None = None

    @property
    def is_flow(self) -> bool:
        """True for a flow of steps, False for a one-prompt task."""
        return bool(self.steps)

    @property
    def final_step(self) -> str | None:
        """Id of the step whose output is the task's output (None for a one-prompt task)."""
        return (self.output_step or self.steps[-1].id) if self.steps else None

    def step_settings(self, step: StepSpec) -> dict[str, Any]:
        """chat, system and params for a step: its own, else the flow's."""
        return {"chat": self.chat if step.chat is None else step.chat,
                "system": step.system if step.system is not None else self.system,
                "params": {**self.params, **step.params}}

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that `spec_yaml.parse_task_spec` turns back into an equal spec."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.model:
            out["model"] = self.model
        out["inputs"] = list(self.inputs)
        out["chat"] = self.chat
        if self.system is not None:
            out["system"] = self.system
        if self.params:
            out["params"] = dict(self.params)
        if self.steps:
            out["steps"] = [s.to_dict() for s in self.steps]
            if self.output_step:
                out["output_step"] = self.output_step
        else:
            out["prompt"] = self.prompt
            if self.output != OutputSpec():
                out["output"] = self.output.to_dict()
        return out

    def to_yaml(self) -> str:
        """YAML text of `to_dict()`, multi-line strings as literal `|` blocks."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         width=100)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate sampling parameters; returns them normalized (`stop` always a list).

    Raises SpecError naming the parameter: unknown name (with a did-you-mean), wrong type,
    or out of range.
    """
    out = {}
    for key, value in params.items():
        try:
            out[key] = check_setting(key, value)
        except SettingError as e:
            raise SpecError(f"field params.{key}: {e.reason}") from None
    return out


def _find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle (first node repeated at the end) in a dependency graph, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep in graph and dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


def step_dependencies(spec: TaskSpec) -> dict[str, list[str]]:
    """For each step id, the ids of the steps its templates refer to."""
    ids = {s.id for s in spec.steps}
    return {s.id: [f for t in s.templates().values() for f in template_fields(t) if f in ids]
            for s in spec.steps}


def flow_order(spec: TaskSpec) -> list[str]:
    """Step ids in the order they run: a topological order, ties kept in declared order.

    A checked spec only refers to earlier steps, so this is the declared order; for a
    spec built by hand it also checks. Raises SpecError for a cycle (naming the steps)
    or a reference to a step that runs later. Returns [] for a one-prompt task.
    """
    deps = step_dependencies(spec)
    cycle = _find_cycle(deps)
    if cycle:
        raise SpecError(f"field steps: cycle between steps: {' -> '.join(cycle)}")
    order: list[str] = []
    for s in spec.steps:
        later = [d for d in deps[s.id] if d not in order]
        if later:
            raise SpecError(f"field steps.{s.id}: refers to step {later[0]!r}, which runs later;"
                            f" steps run in order — move {later[0]!r} above {s.id!r}")
        order.append(s.id)
    return order
