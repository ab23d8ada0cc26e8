"""TaskExecutor guards that need no model: task calls that never end fail clearly."""

from __future__ import annotations

from llmos_jupyter.runtime.task_exec import MAX_TASK_DEPTH, TaskExecutor
from llmos_jupyter.tasks.taskspec import StepSpec, TaskSpec


def caller(name: str, callee: str) -> TaskSpec:
    return TaskSpec(name=name, inputs=["text"],
                    steps=[StepSpec(id="call", task=callee, inputs={"text": "{text}"})])


def test_call_cycle_fails_each_item_naming_the_chain():
    # Specs stored before `task add` checked cycles (or built by hand) reach the executor;
    # it used to recurse until RecursionError, generating at every level.
    specs = {"a": caller("a", "b"), "b": caller("b", "a")}
    executor = TaskExecutor(None, specs.__getitem__)  # never generates: no model needed
    outcomes = executor.run_batch(specs["a"], [{"text": "x"}, {"text": "y"}])
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert outcomes[0].error == ("step call (task b): step call (task a): tasks call each "
                                 "other in a cycle: a -> b -> a; change the task steps so the "
                                 "calls end")
    assert executor._calls == []  # the chain unwinds: the executor can run again


def test_call_depth_is_capped():
    specs = {f"t{i}": caller(f"t{i}", f"t{i + 1}") for i in range(MAX_TASK_DEPTH + 5)}
    outcomes = TaskExecutor(None, specs.__getitem__).run_batch(specs["t0"], [{"text": "x"}])
    assert outcomes[0].status == "failed"
    assert f"task calls nest deeper than {MAX_TASK_DEPTH}: t0 -> t1 -> " in outcomes[0].error
