"""Runs and the task executor on a tiny random model imported into a temporary store.

A random model answers gibberish, which is exactly what the failure paths need: JSON
that never parses, flows whose items fail, cancellation mid-run.
"""

from __future__ import annotations

import time

import pytest

import llmos
from llmos_jupyter.errors import ConfigError, DataError, NotFoundError
from llmos_jupyter.runtime.services import services
from tests.checkpoint_factory import write_tiny_gguf


@pytest.fixture
def tiny(llmos_home, tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    llmos.import_model("tiny", path)
    yield llmos.load("tiny", device="cpu", dtype="float32")
    llmos.unload()


def test_invalid_json_fails_the_item_keeps_raw_text_and_run_goes_on(tiny):
    llmos.tasks.add("as-json", {
        "inputs": ["text"], "prompt": "JSON for {text}",
        "params": {"max_tokens": 6, "temperature": 0},
        "output": {"type": "json", "required": ["name"], "retries": 1},
    })
    llmos.datasets.add("words", [{"text": w} for w in ("a", "b", "c")])
    run = llmos.run("as-json", data="words", model="tiny", background=False)
    assert run.status == "failed"  # every item failed, but each one was tried
    items = run.results()
    assert [it["status"] for it in items] == ["failed"] * 3
    for it in items:
        assert "invalid JSON after 2 tries" in it["error"]
        assert it["raw_text"] is not None
        assert it["output"] is None


def test_text_task_records_tokens_and_usage(tiny):
    r = llmos.run("summarize", text="hello world", model="tiny", params={"max_tokens": 5})
    assert r.status == "succeeded"
    rec = llmos.runs.get(r.run_id).to_dict()
    assert rec["completion_tokens"] == r.usage["completion_tokens"] > 0
    assert rec["prompt_tokens"] == r.usage["prompt_tokens"] > 0


def test_choice_is_always_one_of_the_labels(tiny):
    for text in ("x", "yy", "zzz"):
        r = llmos.run("classify", text=text, labels="red, green, blue", model="tiny")
        assert r.output in ("red", "green", "blue")


def test_flow_runs_steps_in_order_and_calls_tasks(tiny):
    llmos.tasks.add("two-step", """
inputs: [text]
steps:
  - id: first
    prompt: "A {text}"
    params: {max_tokens: 3}
  - id: second
    task: summarize
    inputs: {text: "{first} and {text}"}
    params: {max_tokens: 3}
""")
    r = llmos.run("two-step", text="hi", model="tiny")
    assert r.status == "succeeded", r.error
    assert isinstance(r.output, str)


def test_batched_items_equal_single_items(tiny):
    llmos.tasks.add("echo", {"inputs": ["text"], "prompt": "{text}", "chat": False,
                             "params": {"max_tokens": 6, "temperature": 0}})
    texts = ["one", "two three", "four five six seven"]
    llmos.datasets.add("echo-data", [{"text": t} for t in texts])
    run = llmos.run("echo", data="echo-data", model="tiny", background=False)
    batched = [it["output"] for it in run.results()]
    single = [llmos.run("echo", text=t, model="tiny").output for t in texts]
    assert batched == single


def test_cancel_stops_a_background_run(tiny):
    llmos.tasks.add("long", {"inputs": ["text"], "prompt": "{text}", "chat": False,
                             "params": {"max_tokens": 200, "temperature": 0}})
    # Many batches of work, so the run cannot finish before the cancel lands.
    llmos.datasets.add("many", [{"text": f"item {i}"} for i in range(320)])
    run = llmos.run("long", data="many", model="tiny")
    while run.status == "queued":
        time.sleep(0.05)
    run.cancel().wait(timeout=60)
    assert run.status == "cancelled"
    assert run.record().done < 320


def test_errors_name_the_problem(tiny):
    with pytest.raises(NotFoundError, match="did you mean 'summarize'"):
        llmos.run("summarise", text="x", model="tiny")
    with pytest.raises(ConfigError, match="missing"):
        llmos.run("qa", context="x", model="tiny")
    llmos.datasets.add("cols", [{"body": "x"}])
    with pytest.raises(DataError, match=r"map=\{'text': 'body'\}") as err:
        llmos.run("summarize", data="cols", model="tiny")
    assert "--map text=body" in err.value.command_line  # what `llmos task run` prints
    with pytest.raises(DataError, match="no column 'nosuchcol'"):
        llmos.run("summarize", data="cols", map={"text": "nosuchcol"}, model="tiny")
    with pytest.raises(ConfigError, match="no input 'nope'"):
        llmos.run("summarize", data="cols", map={"text": "body", "nope": "body"}, model="tiny")


def test_dataset_run_reports_progress(tiny, capsys):
    llmos.tasks.add("short", {"inputs": ["text"], "prompt": "{text}", "chat": False,
                              "params": {"max_tokens": 2, "temperature": 0}})
    llmos.datasets.add("twenty", [{"text": f"row {i}"} for i in range(20)])
    seen: list[tuple[int, int]] = []
    llmos.run("short", data="twenty", model="tiny", background=False,
              progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 20) and seen[-1] == (20, 20)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # progress=True draws a real tqdm bar (text outside a notebook), finished at 20/20.
    llmos.run("short", data="twenty", model="tiny", background=False, progress=True)
    assert "20/20" in capsys.readouterr().err


def test_tokenize_reports_progress(tiny):
    llmos.datasets.add("docs", [{"text": f"document number {i}"} for i in range(5)])
    seen: list[tuple[int, int]] = []
    info = llmos.datasets.tokenize("docs", model="tiny",
                                   progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (5, 5)
    assert info["n_documents"] == 5


def test_limit_reads_only_the_rows_it_needs(tiny):
    # `task run --limit 1` on 872k rows used to load all of them (13 s, 2.76 GB). Here the
    # snapshot is broken after its second row: only a run that reads every row sees it.
    llmos.tasks.add("short", {"inputs": ["text"], "prompt": "{text}", "chat": False,
                              "params": {"max_tokens": 2, "temperature": 0}})
    llmos.datasets.add("rows", [{"text": f"row {i}"} for i in range(50)])
    snapshot = services().datasets.snapshot_path("rows")
    lines = snapshot.read_text().splitlines(keepends=True)
    snapshot.write_text("".join(lines[:2]) + "{not json\n" + "".join(lines[3:]))
    run = llmos.run("short", data="rows", model="tiny", limit=2, background=False)
    assert run.status == "succeeded" and run.record().total == 2
    # The full run reads row 3 while recording its items: a clear error, and no run left.
    before = len(llmos.runs.list())
    with pytest.raises(DataError, match=r"data\.jsonl line 3: invalid JSON"):
        llmos.run("short", data="rows", model="tiny", background=False)
    assert len(llmos.runs.list()) == before
    with pytest.raises(DataError, match="limit 0: a run over dataset 'rows' needs at least"):
        llmos.run("short", data="rows", model="tiny", limit=0)


def test_cancel_during_a_long_prefill_stops_before_the_next_layer(tiny):
    # `runs cancel` used to wait for the batch's whole prefill (~20 s for 32 long prompts
    # on the default model), then a decode step. The cancel is requested from inside the
    # prefill (a pre-hook on the first layer, standing in for another process); the
    # prefill polls before each layer, so at most one more layer starts.
    llmos.tasks.add("long-prefill", {"inputs": ["text"], "prompt": "{text}", "chat": False,
                                     "params": {"max_tokens": 50, "temperature": 0}})
    llmos.datasets.add("long-rows", [{"text": f"row {i} " + "lorem ipsum dolor " * 12}
                                     for i in range(32)])
    store = services().runs
    events: list[str] = []

    def on_layer(module, args, i):
        events.append(f"layer {i}")
        if events.count("cancel") == 0:
            (running,) = store.list(status="running")
            store.cancel(running.id)
            events.append("cancel")

    hooks = [layer.register_forward_pre_hook(lambda m, a, i=i: on_layer(m, a, i))
             for i, layer in enumerate(tiny.model.layers)]
    try:
        run = llmos.run("long-prefill", data="long-rows", model=tiny, background=False)
    finally:
        for h in hooks:
            h.remove()
    assert events == ["layer 0", "cancel"], run.results()[0]  # no layer ran after the cancel
    rec = run.record()
    assert rec.status == "cancelled" and rec.done == 0 and rec.total == 32
    assert len(services().runs.pending_items(rec.id)) == 32  # a resume would redo them all
