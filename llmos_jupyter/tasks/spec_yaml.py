"""The task-spec parser: walks yaml's node tree so every error names its LINE and FIELD.

The plain loaded dict has lost where each value came from; the node tree keeps marks, so
`_SpecParser` reads the spec node by node and builds a checked TaskSpec, raising
SpecError "line N, field F: what is wrong". A dict source is dumped to YAML first, so one
walker checks both (its errors have no line). `parse_task_spec` is the entry point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NoReturn

import yaml

from llmos_jupyter.core.params import PARAM_NAMES, SettingError, check_setting
from llmos_jupyter.errors import LLMOSError, SpecError, clip, excerpt, suggest
from llmos_jupyter.tasks.task_output import OUTPUT_FIELDS, OUTPUT_TYPES, OutputSpec, split_list
from llmos_jupyter.tasks.taskspec import (
    PROMPT_STEP_FIELDS,
    TASK_NAME,
    TASK_STEP_FIELDS,
    TOP_FIELDS,
    KnownTasks,
    StepSpec,
    TaskSpec,
    _find_cycle,
)
from llmos_jupyter.tasks.templates import (
    IDENT,
    TemplateSyntaxError,
    parse_template,
    template_fields,
)

# A task spec is a few fields deep; YAML's composer recurses per level, so a spec nested
# thousands deep would end in a RecursionError traceback instead of an error naming it.
MAX_DEPTH = 64
# A dict source is dumped to YAML before parsing; count its values first so a shared or
# self-referencing structure (a Python "billion laughs") cannot expand without bound.
MAX_DICT_VALUES = 100_000


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and caps nesting, naming the line.

    Aliases (`*a`) let a few hundred bytes stand for gigabytes once expanded ("billion
    laughs"); a spec has no use for them, so the first one is an error.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SpecError(f"line {event.start_mark.line + 1}: YAML aliases "
                            f"(*{event.anchor[:40]}) are not allowed in a task spec; "
                            "write the value out")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecError(f"line {mark.line + 1}: the spec nests more than {MAX_DEPTH} "
                                "levels deep; a task spec is a few fields deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_dict_size(source: Mapping[str, Any]) -> None:
    """Refuse a dict source nested past MAX_DEPTH or holding past MAX_DICT_VALUES values."""
    count, stack = 0, [(source, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise SpecError(f"the spec nests more than {MAX_DEPTH} levels deep (or refers to "
                            "itself); a task spec is a few fields deep")
        if count > MAX_DICT_VALUES:
            raise SpecError(f"the spec holds more than {MAX_DICT_VALUES} values; a task spec "
                            "is a few fields")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


class _NoAliasDumper(yaml.SafeDumper):
    """Writes a value shared by two fields out twice: _SpecLoader refuses aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {bool: "true/false", int: "a number", float: "a number", str: "text",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


class _SpecParser:
    """Walks yaml's node tree so every error can name the line it comes from."""

    def __init__(self, source: str | Mapping[str, Any], known_tasks: KnownTasks):
        self.has_lines = isinstance(source, str)
        self.known_tasks = known_tasks
        if isinstance(source, Mapping):
            _check_dict_size(source)
            try:  # a dict goes through YAML too, so one walker checks both (without lines)
                source = yaml.dump(dict(source), Dumper=_NoAliasDumper, sort_keys=False,
                                   allow_unicode=True)
            except yaml.YAMLError as e:
                raise SpecError(f"the spec holds a value YAML cannot represent ({e})") from None
        elif not isinstance(source, str):
            raise SpecError(f"a task spec is YAML text or a dict, not {type(source).__name__}")
        self.loader = _SpecLoader(source)
        try:
            self.root = self.loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            raise SpecError(f"line {mark.line + 1}: {clip(str(e.problem or e.context))}"
                            ) from None
        except yaml.YAMLError as e:
            raise SpecError(f"invalid YAML: {clip(str(e))}") from None

    # -- helpers: each names the node's line and the field path
    def fail(self, node: yaml.Node | None, fld: str, msg: str, extra_lines: int = 0) -> NoReturn:
        line = f"line {node.start_mark.line + 1 + extra_lines}, " \
            if self.has_lines and node is not None else ""
        # A backstop: every value quoted is an excerpt, but a field path holds user keys.
        raise SpecError(f"{line}field {clip(fld, 100)}: {clip(msg, 600)}")

    def value(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as e:  # e.g. a !!python/... tag, which SafeLoader refuses
            raise SpecError(f"line {node.start_mark.line + 1}: {clip(str(e.problem))}"
                            ) from None
        except (ValueError, OverflowError) as e:  # e.g. an integer of 5000 digits
            what = ("a number too long to read (Python reads at most 4300 digits)"
                    if "digits" in str(e) else f"cannot read this value ({clip(str(e), 120)})")
            raise SpecError(f"line {node.start_mark.line + 1}: {what}") from None

    def mapping(self, node: yaml.Node, fld: str, allowed: tuple[str, ...]
                ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, fld, f"expected a mapping of fields, got {_kind(self.value(node))}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            path = f"{fld}.{key}" if fld else str(key)
            if not isinstance(key, str):
                self.fail(key_node, path, "field names must be text")
            if key in out:
                self.fail(key_node, path, "duplicate field")
            if key not in allowed:
                self.fail(key_node, path, f"unknown field{suggest(key, allowed)}; "
                          f"known: {', '.join(allowed)}")
            out[key] = (key_node, value_node)
        return out

    def typed(self, node: yaml.Node, fld: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = self.value(node)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(node, fld, f"expected {what}, got {_kind(value)} {excerpt(value)}")
        return value

    def names(self, node: yaml.Node, fld: str, pattern: re.Pattern = IDENT) -> list[str]:
        value = self.value(node)
        if isinstance(value, str):  # `labels: a, b` is as clear as a YAML list
            value, items = split_list(value), [node] * len(split_list(value))
        elif isinstance(node, yaml.SequenceNode):
            items = node.value
        else:
            self.fail(node, fld, f"expected a list of names, got {_kind(value)}")
        for item_node, item in zip(items, value, strict=True):
            if not isinstance(item, str) or not pattern.fullmatch(item):
                self.fail(item_node, fld,
                          f"{excerpt(item)} is not a valid name (letters, digits, _)")
        if len(set(value)) != len(value):
            self.fail(node, fld, f"duplicate names in {excerpt(value)}")
        return value

    def template(self, node: yaml.Node, fld: str, known: list[str], later: list[str]) -> str:
        if isinstance(node, yaml.MappingNode) and node.flow_style:
            self.fail(node, fld, "expected a template (text), got a mapping; quote a template "
                      'that starts with {, e.g. prompt: "{text}"')
        text = self.typed(node, fld, str, "a template (text)")
        # In a literal block (|) the text starts on the line after the indicator, so the
        # offending line can be named exactly; other styles name the field's first line.
        def lines_in(pos: int) -> int:
            return 1 + text.count("\n", 0, pos) if node.style == "|" else 0

        try:
            parts = parse_template(text)
        except TemplateSyntaxError as e:
            self.fail(node, fld, str(e), lines_in(e.pos))
        for _, name, pos in parts:
            if name is None or name in known:
                continue
            if name in later:
                msg = (f"refers to step {name!r}, which runs later; steps run in order, so "
                       f"move {name!r} above this step")
            else:
                msg = (f"unknown placeholder {{{name}}}; known: {', '.join(known) or 'none'}"
                       f"{suggest(name, known)}")
            self.fail(node, fld, msg, lines_in(pos))
        return text

    # -- the spec
    def parse(self, name: str | None) -> TaskSpec:
        if self.root is None:
            raise SpecError("the task spec is empty; it needs at least name, inputs and prompt")
        if not isinstance(self.root, yaml.MappingNode):
            raise SpecError(f"line {self.root.start_mark.line + 1}: a task spec is a mapping of "
                            "fields (name, inputs, prompt, ...)" if self.has_lines else
                            "a task spec is a mapping of fields (name, inputs, prompt, ...)")
        top = self.mapping(self.root, "", TOP_FIELDS)
        get = lambda k: top[k][1] if k in top else None
        spec = TaskSpec(name=name or "")
        if name is None:
            if "name" not in top:
                self.fail(self.root, "name", "missing; every task needs a name")
            spec.name = self.typed(get("name"), "name", str, "text")
        if not TASK_NAME.fullmatch(spec.name):
            self.fail(get("name"), "name", f"{excerpt(spec.name)} is not a valid task name "
                      "(letters, digits, '.', '_' and '-')")
        if "description" in top:
            spec.description = self.typed(get("description"), "description", str, "text")
        if "model" in top and self.value(get("model")) is not None:
            spec.model = self.typed(get("model"), "model", str, "a model name")
        if "inputs" in top:
            spec.inputs = self.names(get("inputs"), "inputs")
        if "chat" in top:
            spec.chat = self.typed(get("chat"), "chat", bool, "true or false")
        if "params" in top:
            spec.params = self.params(get("params"), "params")
        if "system" in top:
            spec.system = self.template(get("system"), "system", spec.inputs, [])
        if ("prompt" in top) == ("steps" in top):
            both = "prompt" in top
            self.fail(get("steps") if both else self.root, "prompt" if not both else "steps",
                      "give either prompt or steps, not both" if both else
                      "missing; a task needs a prompt (or steps, for a flow)")
        if "prompt" in top:
            spec.prompt = self.template(get("prompt"), "prompt", spec.inputs, [])
            if "output_step" in top:
                self.fail(get("output_step"), "output_step", "only a flow (steps) has steps")
            if "output" in top:
                spec.output = self.output(get("output"), "output", spec.inputs)
            return spec
        if "output" in top:
            self.fail(get("output"), "output", "in a flow, put output under the step that "
                      "produces it")
        self.flow(spec, get("steps"), get("output_step"))
        return spec

    def params(self, node: yaml.Node, fld: str) -> dict[str, Any]:
        out = {}
        for key, (_, value_node) in self.mapping(node, fld, PARAM_NAMES).items():
            value = self.value(value_node)  # its own SpecError names the line
            try:
                out[key] = check_setting(key, value)
            except SettingError as e:
                self.fail(value_node, f"{fld}.{key}", e.reason)
        return out

    def output(self, node: yaml.Node, fld: str, inputs: list[str]) -> OutputSpec:
        if isinstance(node, yaml.ScalarNode):  # `output: json` is short for {type: json}
            fields, type_node = {}, node
        else:
            fields = self.mapping(node, fld, OUTPUT_FIELDS)
            type_node = fields["type"][1] if "type" in fields else None
        out = OutputSpec()
        if type_node is not None:
            out.type = self.typed(type_node, f"{fld}.type", str, "text")
        if out.type not in OUTPUT_TYPES:
            self.fail(type_node, f"{fld}.type", f"output type {excerpt(out.type)} is not one of "
                      f"{', '.join(OUTPUT_TYPES)}{suggest(out.type, OUTPUT_TYPES)}")
        for key, (key_node, value_node) in fields.items():
            path, wants = f"{fld}.{key}", {"required": "json", "required_from": "json",
                                          "retries": "json", "labels": "choice",
                                          "labels_from": "choice"}.get(key, out.type)
            if wants != out.type:
                self.fail(key_node, path, f"only for output type {wants}, not {out.type}")
            if key in ("required", "labels"):
                items = self.value(value_node)
                items = split_list(items) if isinstance(items, str) else items
                if not isinstance(items, list) or not all(isinstance(i, str) and i.strip()
                                                          for i in items):
                    self.fail(value_node, path, "expected a list of non-empty strings")
                setattr(out, key, [i.strip() for i in items])
            elif key in ("required_from", "labels_from"):
                source = self.typed(value_node, path, str, "an input name")
                if source not in inputs:
                    self.fail(value_node, path, f"{excerpt(source)} is not an input; inputs: "
                              f"{', '.join(inputs) or 'none'}{suggest(source, inputs)}")
                setattr(out, key, source)
            elif key == "retries":
                out.retries = self.typed(value_node, path, int, "a whole number")
                if not 0 <= out.retries <= 10:
                    self.fail(value_node, path, f"must be in 0..10, got {out.retries}")
        if out.type == "choice" and not (out.labels or out.labels_from):
            self.fail(node, fld, "a choice output needs labels (a list) or labels_from "
                      "(an input holding a comma-separated list)")
        if out.labels and out.labels_from:
            self.fail(node, fld, "give labels or labels_from, not both")
        return out

    def flow(self, spec: TaskSpec, node: yaml.Node, output_step: yaml.Node | None) -> None:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, "steps", "expected a non-empty list of steps")
        # Pass 1: ids and raw fields, so references to any step (and cycles) can be named.
        raw: list[tuple[str, yaml.Node, dict[str, tuple[yaml.Node, yaml.Node]]]] = []
        for i, step_node in enumerate(node.value, 1):
            fields = self.mapping(step_node, f"steps[{i}]",
                                  tuple(dict.fromkeys(PROMPT_STEP_FIELDS + TASK_STEP_FIELDS)))
            if "id" not in fields:
                self.fail(step_node, f"steps[{i}].id", "missing; every step needs an id")
            sid = self.typed(fields["id"][1], f"steps[{i}].id", str, "a step id")
            if not IDENT.fullmatch(sid):
                self.fail(fields["id"][1], f"steps[{i}].id", f"{excerpt(sid)} is not a valid id "
                          "(letters, digits and _, not starting with a digit)")
            if sid in spec.inputs or sid in [r[0] for r in raw]:
                self.fail(fields["id"][1], f"steps[{i}].id", f"{sid!r} is already "
                          f"{'an input' if sid in spec.inputs else 'the id of another step'}")
            raw.append((sid, step_node, fields))
        ids = [r[0] for r in raw]
        graph = {}
        for sid, _, fields in raw:
            texts = [self.value(v) for k, (_, v) in fields.items() if k in ("prompt", "system")]
            if "inputs" in fields and isinstance(fields["inputs"][1], yaml.MappingNode):
                texts += [self.value(v) for _, v in fields["inputs"][1].value]
            refs = []
            for text in texts:
                try:
                    refs += [f for f in template_fields(text) if f in ids]
                except (SpecError, TypeError):
                    pass  # pass 2 reports it with its line
            graph[sid] = refs
        cycle = _find_cycle(graph)
        if cycle:
            self.fail(raw[ids.index(cycle[0])][1], "steps",
                      f"cycle between steps: {' -> '.join(cycle)}")
        # Pass 2: each step, knowing the inputs and the steps before it.
        for n, (sid, step_node, fields) in enumerate(raw):
            spec.steps.append(self.step(spec, sid, step_node, fields, ids[:n], ids[n + 1:]))
        if output_step is not None:
            spec.output_step = self.typed(output_step, "output_step", str, "a step id")
            if spec.output_step not in ids:
                self.fail(output_step, "output_step", f"no step {excerpt(spec.output_step)}; "
                          f"steps: {', '.join(ids)}{suggest(spec.output_step, ids)}")
        spec.output = next(s.output for s in spec.steps if s.id == spec.final_step)

    def step(self, spec: TaskSpec, sid: str, node: yaml.Node,
             fields: dict[str, tuple[yaml.Node, yaml.Node]], earlier: list[str],
             later: list[str]) -> StepSpec:
        fld, known = f"steps.{sid}", spec.inputs + earlier
        step = StepSpec(id=sid)
        if ("prompt" in fields) == ("task" in fields):
            self.fail(node, fld, "a step needs either prompt or task (another task to call)"
                      if "prompt" not in fields else "give prompt or task, not both")
        allowed = PROMPT_STEP_FIELDS if "prompt" in fields else TASK_STEP_FIELDS
        for key, (key_node, _) in fields.items():
            if key not in allowed:
                self.fail(key_node, f"{fld}.{key}", "not allowed in a step with "
                          f"{'prompt' if 'prompt' in fields else 'task'}; allowed: "
                          f"{', '.join(allowed)}")
        get = lambda k: fields[k][1]
        for key in ("system", "prompt"):
            if key in fields:
                setattr(step, key, self.template(get(key), f"{fld}.{key}", known, later))
        if "chat" in fields:
            step.chat = self.typed(get("chat"), f"{fld}.chat", bool, "true or false")
        if "params" in fields:
            step.params = self.params(get("params"), f"{fld}.params")
        if "output" in fields:
            step.output = self.output(get("output"), f"{fld}.output", spec.inputs)
        if "task" in fields:
            step.task = self.typed(get("task"), f"{fld}.task", str, "a task name")
            mapping = {}
            if "inputs" in fields:
                if not isinstance(get("inputs"), yaml.MappingNode):
                    self.fail(get("inputs"), f"{fld}.inputs", "expected a mapping of the "
                              "task's input names to templates")
                names = tuple(str(self.value(k)) for k, _ in get("inputs").value)
                mapping = self.mapping(get("inputs"), f"{fld}.inputs", names)
            for key, (_, value_node) in mapping.items():
                step.inputs[key] = self.template(value_node, f"{fld}.inputs.{key}", known, later)
            self.check_call(step, fields, fld, spec.name)
        return step

    def check_call(self, step: StepSpec, fields: dict, fld: str, own_name: str) -> None:
        """Check a step's `task` against known_tasks, and its inputs against that task's."""
        task_node = fields["task"][1]
        if step.task == own_name:
            self.fail(task_node, f"{fld}.task", "a task cannot call itself")
        known, target = self.known_tasks, None
        if known is None:
            return
        if callable(known) and not isinstance(known, Mapping):
            try:
                target = known(step.task)
            except LLMOSError as e:  # e.g. the store's NotFoundError, with its did-you-mean
                self.fail(task_node, f"{fld}.task", str(e))
            if target is None:
                self.fail(task_node, f"{fld}.task", f"unknown task {excerpt(step.task)}")
        else:
            names = list(known)
            if step.task not in names:
                self.fail(task_node, f"{fld}.task", f"unknown task {excerpt(step.task)}"
                          f"{suggest(step.task, names)}; known: {', '.join(sorted(names))}")
            target = known[step.task] if isinstance(known, Mapping) else None
        if isinstance(target, TaskSpec):
            cycle = self.call_cycle(own_name, step.task, target)
            if cycle:
                self.fail(task_node, f"{fld}.task", "tasks would call each other in a "
                          f"cycle: {' -> '.join(cycle)}; a task cannot call itself, directly "
                          "or through others")
            for key in step.inputs:
                if key not in target.inputs:
                    self.fail(fields["inputs"][1], f"{fld}.inputs.{key}",
                              f"task {step.task!r} has no input {key!r}; its inputs: "
                              f"{', '.join(target.inputs)}{suggest(key, target.inputs)}")
            missing = [k for k in target.inputs if k not in step.inputs]
            if missing:
                self.fail(fields.get("inputs", fields["task"])[1], f"{fld}.inputs",
                          f"missing value for input {', '.join(missing)} of task {step.task!r}")


    def lookup(self, name: str) -> TaskSpec | None:
        """The TaskSpec `known_tasks` gives for `name`, or None when it gives none."""
        known = self.known_tasks
        if callable(known) and not isinstance(known, Mapping):
            try:
                found = known(name)
            except LLMOSError:
                return None
        else:
            found = known.get(name) if isinstance(known, Mapping) else None
        return found if isinstance(found, TaskSpec) else None

    def call_cycle(self, own_name: str, first: str, target: TaskSpec) -> list[str] | None:
        """The chain own_name -> first -> ... -> own_name if the called tasks lead back.

        A depth-first walk over the task steps of the known tasks; each task is visited
        once and paths stop at MAX_DEPTH (the executor refuses deeper calls anyway).
        """
        seen = {first}
        stack = [(target, [own_name, first])]
        while stack:
            spec, path = stack.pop()
            for callee in [s.task for s in spec.steps if s.task]:
                if callee == own_name:
                    return [*path, own_name]
                if callee in seen or len(path) >= MAX_DEPTH:
                    continue
                seen.add(callee)
                sub = self.lookup(callee)
                if sub is not None:
                    stack.append((sub, [*path, callee]))
        return None


def parse_task_spec(source: str | Mapping[str, Any], name: str | None = None, *,
                    known_tasks: KnownTasks = None) -> TaskSpec:
    """Parse and check a task spec given as YAML text or as a dict.

    `name`, when given, is the task's name (it wins over a `name` field). `known_tasks`
    lets steps that call other tasks be checked: a mapping name -> TaskSpec (the call's
    inputs are checked too), an iterable of names, or a callable name -> TaskSpec | None.
    Raises SpecError "line N, field F: what is wrong" (no line for a dict source).
    """
    return _SpecParser(source, known_tasks).parse(name)
