"""llmos.datasets / tasks / run / runs against a real store and the real default model."""

from __future__ import annotations

import json

import pytest

import llmos
from llmos_jupyter.errors import ConfigError, DataError, NotFoundError, SpecError

pytestmark = pytest.mark.slow

DOCS = [
    {"id": 1, "body": "The cat sat on the mat all day and refused to move."},
    {"id": 2, "body": "Rain fell over the city; people hurried home with umbrellas."},
    {"id": 3, "body": "The team shipped the release after a week of testing."},
]


@pytest.fixture
def docs(store_home, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    name = f"docs-{tmp_path.name[-8:]}"
    return llmos.datasets.add(name, path)


def test_dataset_handle(docs):
    assert len(docs) == 3
    assert docs.head(2) == DOCS[:2]
    assert docs.rows() == DOCS
    assert list(docs.to_pandas().columns) == ["id", "body"]
    assert docs.stats()["rows"] == 3


def test_run_with_inputs_returns_output_and_run_id(store_home):
    llmos.load("smollm2-135m-instruct")
    r = llmos.run("summarize", text=DOCS[0]["body"])
    assert r.status == "succeeded", r.error
    assert isinstance(r.output, str) and r.output
    rec = llmos.runs.get(r.run_id).to_dict()
    assert rec["task"] == "summarize" and rec["status"] == "succeeded"


def test_custom_task_and_flow(store_home):
    llmos.tasks.add("shout", {"inputs": ["text"], "prompt": "Repeat in capitals: {text}",
                              "params": {"max_tokens": 12}})
    assert "shout" in [t["name"] for t in llmos.tasks.list()]
    llmos.tasks.add("brief-then-title", """
inputs: [text]
steps:
  - id: brief
    task: summarize
    inputs: {text: "{text}"}
  - id: title
    prompt: "Give a short title for: {brief}"
    params: {max_tokens: 12}
""")
    r = llmos.run("brief-then-title", text=DOCS[1]["body"])
    assert r.status == "succeeded", r.error
    assert r.output


def test_choice_output_is_one_of_the_labels(store_home):
    r = llmos.run("classify", text="I love this, it is wonderful!", labels="positive, negative")
    assert r.output in ("positive", "negative")
    assert r.output == "positive"


def test_dataset_run_in_background(docs):
    run = llmos.run("summarize", data=docs.name, map={"text": "body"})
    run.wait(timeout=300)
    assert run.status == "succeeded"
    assert run.progress == 1.0
    res = run.results()
    assert [it["idx"] for it in res] == [0, 1, 2]
    assert all(it["output"] for it in res)
    df = run.to_pandas()
    assert len(df) == 3


def test_run_errors_name_the_problem(docs):
    with pytest.raises(NotFoundError, match="summarize"):
        llmos.run("sumarize", text="x")
    with pytest.raises(ConfigError, match="missing"):
        llmos.run("translate", text="x")
    with pytest.raises(DataError, match="no column"):
        llmos.run("summarize", data=docs.name)
    with pytest.raises(SpecError, match="line"):
        llmos.tasks.add("bad", "inputs: [text]\nprompt: {text\n")
