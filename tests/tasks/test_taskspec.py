"""Task specs: parsing with line-and-field errors, flows, params, built-ins, re-exports."""

from __future__ import annotations

import pytest

from llmos_jupyter.errors import SpecError
from llmos_jupyter.tasks import task_output, taskspec, templates
from llmos_jupyter.tasks.builtin_tasks import BUILTIN_TASKS, builtin_specs, builtin_task
from llmos_jupyter.tasks.spec_yaml import parse_task_spec
from llmos_jupyter.tasks.taskspec import (
    OutputSpec,
    StepSpec,
    TaskSpec,
    check_params,
    flow_order,
    render_template,
    template_fields,
)

QA = """\
name: my-qa
description: answer questions
inputs: [text, question]
params:
  max_tokens: 64
  stop: "###"
prompt: |
  Read this:
  {text}
  Question: {question}
"""

FLOW = """\
name: digest
inputs: [text, target_language]
steps:
  - id: summary
    task: summarize
    inputs:
      text: "{text}"
  - id: translated
    task: translate
    inputs:
      text: "{summary}"
      target_language: "{target_language}"
  - id: title
    prompt: "Give a title for: {translated}"
    params: {max_tokens: 12}
"""


def spec_error(source, **kw) -> str:
    with pytest.raises(SpecError) as e:
        parse_task_spec(source, **kw)
    return str(e.value)


# ---------------------------------------------------------------------------- good specs

def test_parse_prompt_task():
    spec = parse_task_spec(QA)
    assert spec.name == "my-qa" and spec.inputs == ["text", "question"]
    assert spec.prompt.startswith("Read this:\n{text}") and spec.chat is True
    assert spec.params == {"max_tokens": 64, "stop": ["###"]}
    assert spec.output == OutputSpec() and not spec.is_flow and flow_order(spec) == []
    assert parse_task_spec(QA, name="other").name == "other"  # the caller's name wins


def test_parse_flow_and_order():
    spec = parse_task_spec(FLOW, known_tasks=builtin_specs())
    assert [s.id for s in spec.steps] == ["summary", "translated", "title"]
    assert spec.steps[1] == StepSpec(id="translated", task="translate",
                                     inputs={"text": "{summary}",
                                             "target_language": "{target_language}"})
    assert flow_order(spec) == ["summary", "translated", "title"]
    assert spec.final_step == "title"
    assert spec.step_settings(spec.steps[2]) == {"chat": True, "system": None,
                                                 "params": {"max_tokens": 12}}


def test_round_trip_yaml_and_dict():
    for source in (QA, FLOW, *BUILTIN_TASKS.values()):
        spec = parse_task_spec(source)
        assert parse_task_spec(spec.to_yaml()) == spec
        assert parse_task_spec(spec.to_dict()) == spec


def test_output_step_and_outputs():
    spec = parse_task_spec(FLOW.replace("steps:", "output_step: summary\nsteps:"))
    assert spec.final_step == "summary"
    js = parse_task_spec("name: t\ninputs: [a, keys]\nprompt: '{a}'\n"
                         "output: {type: json, required: [x], required_from: keys}\n")
    assert js.output.required_keys({"keys": "y, x,z"}) == ["x", "y", "z"]
    assert parse_task_spec("name: t\nprompt: hi\noutput: json\n").output.type == "json"


# ---------------------------------------------------------------------------- errors

def test_malformed_yaml_names_line():
    msg = spec_error("name: t\ninputs: [a]\nprompt: x\nchat: a: b\n")
    assert msg == "line 4: mapping values are not allowed here"


def test_unknown_top_level_field_did_you_mean():
    msg = spec_error("name: t\ninputs: [a]\npromt: '{a}'\n")
    assert msg.startswith("line 3, field promt: unknown field (did you mean 'prompt'?)")


@pytest.mark.parametrize("source,expected", [
    ("name: t\ninputs: a b\nprompt: x\n", "line 2, field inputs: 'a b' is not a valid name"),
    ("name: t\nchat: maybe\nprompt: x\n", "line 2, field chat: expected true or false"),
    ("name: t\nprompt: [1, 2]\n", "line 2, field prompt: expected a template (text), got a list"),
    ("name: t\nprompt: {text}\n", "line 2, field prompt: expected a template (text), got a "
                                  "mapping; quote"),
    ("name: 5\nprompt: x\n", "line 1, field name: expected text, got a number"),
    ("name: t\nparams: {temperature: hot}\nprompt: x\n",
     "line 2, field params.temperature: must be a number, got 'hot'"),
    ("name: t\nparams:\n  top_p: 0\nprompt: x\n", "line 3, field params.top_p: must be in (0, 1]"),
    ("name: t\nparams:\n  max_tokens: true\nprompt: x\n",
     "line 3, field params.max_tokens: must be an integer"),
    ("name: t\nparams:\n  temprature: 1\nprompt: x\n",
     "line 3, field params.temprature: unknown field (did you mean 'temperature'?)"),
    ("name: t\ndescription: x\n", "line 1, field prompt: missing; a task needs a prompt"),
    ("description: x\nprompt: y\n", "line 1, field name: missing"),
    ("name: t\nprompt: x\nsteps: []\n", "line 3, field steps: give either prompt or steps"),
    ("name: t\nprompt: x\noutput: {type: jsn}\n",
     "line 3, field output.type: output type 'jsn' is not one of text, json, choice "
     "(did you mean 'json'?)"),
    ("name: t\nprompt: x\noutput:\n  type: choice\n",
     "line 4, field output: a choice output needs labels"),
    ("name: t\nprompt: x\noutput:\n  type: text\n  labels: [a]\n",
     "line 5, field output.labels: only for output type choice, not text"),
    ("name: t\nprompt: x\noutput:\n  type: choice\n  labels_from: lbls\n",
     "line 5, field output.labels_from: 'lbls' is not an input"),
    ("name: t\nprompt: x\nname: u\n", "line 3, field name: duplicate field"),
])
def test_field_errors_name_line_and_field(source, expected):
    assert spec_error(source).startswith(expected)


def test_unknown_placeholder_exact_line_in_block():
    source = "name: t\ninputs: [text, question]\nprompt: |\n  Read:\n  {text}\n  Q: {txt}\n"
    assert spec_error(source) == ("line 6, field prompt: unknown placeholder {txt}; known: "
                                  "text, question (did you mean 'text'?)")


@pytest.mark.parametrize("template,problem", [
    ("{a.b}", "attribute access is not allowed"), ("{a[0]}", "indexing is not allowed"),
    ("{a!r}", "a conversion (!r) is not allowed"), ("{a:>10}", "a format spec (:...) is not"),
    ("{a.__class__.__mro__}", "attribute access"), ("{}", "empty placeholder"),
    ("x {a", "unclosed {"), ("x } y", "single }"), ("{ a }", "is not a plain name"),
])
def test_templates_cannot_reach_python(template, problem):
    source = f'name: t\ninputs: [a]\nprompt: "{template}"\n'
    msg = spec_error(source)
    assert msg.startswith("line 3, field prompt: ") and problem in msg
    with pytest.raises(SpecError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        render_template(template, {"a": "v"})


def test_step_reference_errors():
    later = ("name: t\ninputs: [x]\nsteps:\n  - id: a\n    task: summarize\n"
             "    inputs: {text: '{x} {b}'}\n  - id: b\n    prompt: '{x}'\n")
    assert spec_error(later) == (
        "line 6, field steps.a.inputs.text: refers to step 'b', which runs later; steps run "
        "in order, so move 'b' above this step")
    unknown = FLOW.replace("{translated}", "{translate}")
    assert spec_error(unknown).startswith(
        "line 14, field steps.title.prompt: unknown placeholder {translate}; known: text, "
        "target_language, summary, translated (did you mean 'translated'?)")


def test_cycles_name_the_steps():
    cyc = ("name: t\ninputs: [x]\nsteps:\n  - id: a\n    prompt: '{b}'\n"
           "  - id: b\n    prompt: '{a} {x}'\n")
    assert spec_error(cyc) == "line 4, field steps: cycle between steps: a -> b -> a"
    three = ("name: t\nsteps:\n  - id: a\n    prompt: '{c}'\n  - id: b\n    prompt: '{a}'\n"
             "  - id: c\n    prompt: '{b}'\n")
    assert spec_error(three).endswith("cycle between steps: a -> c -> b -> a")
    self_ref = "name: t\nsteps:\n  - id: a\n    prompt: 'again {a}'\n"
    assert spec_error(self_ref).endswith("cycle between steps: a -> a")
    # flow_order checks a spec built by hand, too.
    hand = TaskSpec(name="h", steps=[StepSpec(id="a", prompt="{b}"), StepSpec(id="b",
                                                                              prompt="{a}")])
    with pytest.raises(SpecError, match="cycle between steps: a -> b -> a"):
        flow_order(hand)


def test_step_task_checks():
    known = builtin_specs()
    bad_task = FLOW.replace("task: translate", "task: translat")
    assert spec_error(bad_task, known_tasks=known).startswith(
        "line 9, field steps.translated.task: unknown task 'translat' (did you mean "
        "'translate'?)")
    assert "unknown task 'nope'" in spec_error(FLOW.replace("task: summarize", "task: nope"),
                                               known_tasks=lambda name: None)
    bad_input = FLOW.replace("target_language: \"{target_language}\"", "lang: 'x'")
    msg = spec_error(bad_input, known_tasks=known)
    assert msg.startswith("line 11, field steps.translated.inputs.lang: task 'translate' has no "
                          "input 'lang'")
    missing = FLOW.replace("      target_language: \"{target_language}\"\n", "")
    assert "field steps.translated.inputs: missing value for input target_language" in \
        spec_error(missing, known_tasks=known)
    assert "field steps.title.inputs: not allowed in a step with prompt" in spec_error(
        FLOW + "    inputs: {a: b}\n")
    assert "line 4, field steps[2].id: 'dup' is already the id of another step" in spec_error(
        "name: t\nsteps:\n  - {id: dup, prompt: a}\n  - {id: dup, prompt: b}\n")
    assert "a task cannot call itself" in spec_error(FLOW.replace("task: summarize",
                                                                  "task: digest"))


def test_dict_source_errors_name_field_without_line():
    msg = spec_error({"name": "t", "inputs": ["a"], "prompt": "{b}"})
    assert msg == "field prompt: unknown placeholder {b}; known: a"


def test_check_params():
    assert check_params({"stop": "x", "temperature": 1}) == {"stop": ["x"], "temperature": 1.0}
    with pytest.raises(SpecError, match="field params.min_p: must be in"):
        check_params({"min_p": 2})


# ---------------------------------------------------------------------------- built-ins

def test_builtins_parse():
    specs = builtin_specs()
    assert set(specs) == {"generate", "summarize", "translate", "classify", "extract", "qa"}
    for name, spec in specs.items():
        assert spec.name == name and spec.chat and spec.prompt
        assert set(template_fields(spec.prompt)) == set(spec.inputs)
    assert specs["extract"].output.required_keys({"fields": "name, date"}) == ["name", "date"]
    assert specs["translate"].inputs == ["text", "target_language"]
    assert specs["qa"].inputs == ["context", "question"]
    with pytest.raises(KeyError, match="did you mean 'summarize'"):
        builtin_task("summarise")


# ---------------------------------------------------------------------------- re-exports

def test_split_out_names_still_import_from_taskspec():
    # Other modules import templates and outputs from taskspec; they must stay the same
    # objects as in their new homes, not copies.
    for home in (templates, task_output):
        for name in home.__dict__:
            if name in taskspec.__all__:
                assert getattr(taskspec, name) is getattr(home, name), name
    assert {"OutputSpec", "parse_json_output", "render_template", "template_fields",
            "normalize_choice", "OutputFormatError", "TemplateSyntaxError", "split_list",
            "parse_template", "IDENT", "OUTPUT_FIELDS", "OUTPUT_TYPES"} <= set(taskspec.__all__)
