"""TaskStore: user specs beside built-ins."""

from __future__ import annotations

import pytest

from llmos_jupyter.errors import LLMOSError, NotFoundError, SpecError
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.tasks import TaskStore
from llmos_jupyter.tasks.builtin_tasks import BUILTIN_TASKS
from llmos_jupyter.tasks.spec_yaml import parse_task_spec

SPEC = """\
name: shout  # comments survive
inputs: [text]
prompt: "Repeat in capitals: {text}"
params: {temperature: 0}
"""


@pytest.fixture
def tasks(llmos_home) -> TaskStore:
    return TaskStore(Catalog())


def test_builtins_always_there(tasks):
    assert {"summarize", "generate"} <= set(BUILTIN_TASKS)
    assert tasks.get("summarize").inputs == ["text"]
    listed = tasks.list()
    assert [t.name for t in listed if t.builtin] == sorted(BUILTIN_TASKS)
    assert all(t.description for t in listed)


def test_add_get_list_remove(tasks):
    spec = tasks.add("shout", SPEC)
    assert spec.name == "shout" and spec.inputs == ["text"]
    assert tasks.get_yaml("shout") == SPEC  # the user's text, comments and all
    assert tasks.get("shout").prompt == "Repeat in capitals: {text}"
    assert "shout" in [t.name for t in tasks.list() if not t.builtin]
    tasks.add("shout", SPEC.replace("capitals", "CAPITALS"))  # replace
    assert "CAPITALS" in tasks.get("shout").prompt
    with pytest.raises(LLMOSError, match="already exists"):
        tasks.add("shout", SPEC, replace=False)
    tasks.remove("shout")
    with pytest.raises(NotFoundError, match="unknown task 'shout'"):
        tasks.get("shout")


def test_dict_spec_is_stored_as_yaml(tasks):
    tasks.add("echo", {"inputs": ["x"], "prompt": "Say {x}"})
    assert "prompt: Say {x}" in tasks.get_yaml("echo")
    assert tasks.get("echo").inputs == ["x"]


def test_copy_a_builtin(tasks):
    tasks.add("my-summary", tasks.get("summarize").to_yaml())
    assert tasks.get("my-summary").prompt == tasks.get("summarize").prompt
    assert tasks.get("my-summary").name == "my-summary"


def test_builtins_cannot_be_removed_or_overwritten(tasks):
    with pytest.raises(LLMOSError, match="built-in"):
        tasks.remove("summarize")
    with pytest.raises(LLMOSError, match="built-in"):
        tasks.add("summarize", SPEC)


def test_bad_spec_is_not_stored(tasks):
    with pytest.raises(SpecError, match="line"):
        tasks.add("bad", "inputs: [text]\nprompt: 'uses {missing}'\n")
    with pytest.raises(NotFoundError):
        tasks.get("bad")


def test_not_found_suggests(tasks):
    with pytest.raises(NotFoundError, match="summarize"):
        tasks.get("sumarize")



CALLS = """\
name: {name}
inputs: [text]
steps:
  - id: call
    task: {callee}
    inputs: {{text: "{{text}}"}}
"""


def test_call_cycle_refused_at_add_with_the_cycle_named(tasks):
    tasks.add("a", CALLS.format(name="a", callee="summarize"))
    tasks.add("b", CALLS.format(name="b", callee="a"))
    with pytest.raises(SpecError) as e:  # a -> b -> a, made by changing a
        tasks.add("a", CALLS.format(name="a", callee="b"))
    assert str(e.value) == ("line 5, field steps.call.task: tasks would call each other in a "
                            "cycle: a -> b -> a; a task cannot call itself, directly or "
                            "through others")
    assert "summarize" in tasks.get_yaml("a")  # the stored version is untouched
    tasks.add("c", CALLS.format(name="c", callee="b"))
    with pytest.raises(SpecError, match="cycle: a -> c -> b -> a;"):
        tasks.add("a", CALLS.format(name="a", callee="c"))
    assert "summarize" in tasks.get_yaml("a")


def test_task_names_with_a_trailing_newline_are_refused(tasks):
    with pytest.raises(LLMOSError, match=r"invalid task name 'ok\\n'"):
        tasks.add("ok\n", SPEC)
    with pytest.raises(SpecError, match=r"field name: 'ok\\n' is not a valid task name"):
        parse_task_spec('name: "ok\\n"\ninputs: [text]\nprompt: "{text}"\n')
    with pytest.raises(SpecError, match=r"'x\\n' is not a valid name"):
        tasks.add("ok", 'name: ok\ninputs: ["x\\n"]\nprompt: "{text}"\n')
    assert "ok" not in tasks.names()
