"""Dashboard: each tab driven through its widgets against a real store with the tiny model."""

from __future__ import annotations

import importlib.util
import threading

import pytest

from llmos_jupyter import api
from llmos_jupyter.widgets import Dashboard
from tests.widgets.conftest import TINY, TOY_ROWS, eventually


@pytest.fixture
def dash(tiny_store):
    d = Dashboard(poll_interval=0.2)
    d.wait(30)
    yield d
    d.close()
    d.wait(30)
    api.unload()


def test_tabs_and_refresh(dash):
    assert [dash.get_title(i) for i in range(4)] == ["Models", "Data", "Tasks", "Runs"]
    dash.refresh()
    assert dash.wait(30)
    assert TINY in dash.models.table.value


def test_models_tab_load_details_unload(dash):
    m = dash.models
    assert list(m.name.options) == [TINY] and m.name.value == TINY
    assert "llama" in m.details.value  # api.show's architecture
    m.load_button.click()
    assert m.wait(60)
    assert m.status.startswith(f"loaded {TINY}"), m.status
    assert [r["name"] for r in api.ps()] == [TINY]
    assert "●" in m.table.value
    m.unload_button.click()
    assert m.wait(30)
    assert api.ps() == [] and "●" not in m.table.value


def test_pull_button_feeds_the_progress_bar(dash, monkeypatch):
    seen: list[tuple[float, str]] = []
    main = threading.current_thread()

    def fake_pull(name, progress):
        assert threading.current_thread() is not main  # pulled off the main thread
        for done, stage in ((0, "download"), (50, "download"), (100, "verify")):
            progress(done, 100, stage)
            seen.append((dash.models.progress.value, dash.models.progress.description))
        return {"name": name}

    monkeypatch.setattr(api, "pull", fake_pull)
    dash.models.pull_name.value = "some-model"
    dash.models.pull_button.click()
    assert dash.models.wait(30)
    assert seen == [(0.0, "download"), (0.5, "download"), (1.0, "verify")]
    assert dash.models.progress.value == 1.0 and dash.models.progress.bar_style == "success"
    assert dash.models.status == "pulled some-model"


def test_pull_errors_show_in_the_tab(dash):
    dash.models.pull("not-a-pullable-model")
    assert dash.models.wait(30)
    assert "not-a-pullable-model" in dash.models.status
    assert dash.models.progress.bar_style == "danger" and not dash.models.busy


def test_data_tab_preview_stats_histogram(dash):
    d = dash.data
    assert d.dataset.value == "toy" and d.column.value == "text"
    assert "hello world" in d.preview.value and "greeting" in d.preview.value
    assert "text" in d.stats.value and "str" in d.stats.value
    # An SVG from matplotlib when installed (it is not a declared dependency), else div bars.
    drawn = "<svg" if importlib.util.find_spec("matplotlib") else "rows'"
    assert drawn in d.histogram.value
    assert d.unit == "chars" and d.lengths == [len(r["text"]) for r in TOY_ROWS]

    model = api.load(TINY)  # with a model loaded, lengths are in its tokens
    d.refresh()
    assert d.wait(30)
    assert d.unit == "tokens"
    assert d.lengths == [len(model.tokenizer.encode(r["text"])) for r in TOY_ROWS]
    assert f"{TINY} tokenizer" in d.histogram.value

    d.column.value = "label"
    assert d.wait(30)
    assert d.lengths == [len(model.tokenizer.encode(r["label"])) for r in TOY_ROWS]


def test_tasks_tab_form_and_inline_run(dash):
    tk = dash.tasks
    tk.task.value = "translate"
    assert set(tk.inputs) == {"text", "target_language"}
    assert "target_language" in tk.spec.value  # the YAML
    tk.inputs["text"].value = "hello world"
    tk.inputs["target_language"].value = "French"
    tk.model.value = TINY
    tk.max_tokens.value = 8
    tk.run_button.click()
    assert tk.wait(60)
    assert tk.status.startswith(f"run {tk.last_run_id} succeeded"), tk.status
    run = api.runs.get(tk.last_run_id)
    assert run.status == "succeeded"
    assert tk.result.value == run.results()[0]["output"]
    assert eventually(lambda: dash.runs.selected == tk.last_run_id)


def test_dataset_run_shows_live_in_the_runs_tab(dash):
    tk, runs = dash.tasks, dash.runs
    tk.task.value = "summarize"
    tk.source.value = "dataset"
    tk.dataset.value = "toy"
    tk.model.value = TINY
    tk.max_tokens.value = 4
    tk.run_button.click()
    assert tk.wait(60)
    run_id = tk.last_run_id
    assert run_id and "started" in tk.status
    api.runs.get(run_id).wait(60)
    # The poller (not a manual refresh) brings the finished state into the widgets. A poll
    # that began before the run ended can still show it running with every item done, so
    # the final state is waited for as a whole.
    assert eventually(lambda: runs.progress.value == 1.0 and run_id in runs.table.value
                      and "succeeded" in runs.table.value and runs.cancel_button.disabled)
    assert runs.selected == run_id == runs.run.value
    assert eventually(lambda: runs.results.value.count("<tr>") == len(TOY_ROWS) + 1)


def test_cancel_button_requests_cancellation(dash):
    many = [{"text": f"row {i}: the cat sat on the mat"} for i in range(48)]
    api.datasets.add("many", many)
    handle = api.run("summarize", model=TINY, data="many", params={"max_tokens": 64},
                     background=True)
    dash.runs.selected = handle.id
    assert eventually(lambda: dash.runs.run.value == handle.id)
    dash.runs.cancel_button.click()
    assert dash.runs.wait(30)
    handle.wait(60)
    assert handle.record().cancel_requested
    assert handle.status in ("cancelled", "succeeded")  # a fast machine may finish first
    assert eventually(lambda: handle.status in dash.runs.table.value)


def test_close_stops_the_poller(tiny_store):
    d = Dashboard(poll_interval=0.1)
    assert d.runs.poller is not None and d.runs.poller.alive
    d.close()
    assert not d.runs.poller.alive


@pytest.mark.slow
def test_pull_button_pulls_the_default_model(llmos_home):
    name = "smollm2-135m-instruct"
    d = Dashboard(poll=False)
    stages: list[str] = []
    d.models.progress.observe(lambda c: stages.append(c["new"]), names="description")
    try:
        d.models.pull_name.value = name
        d.models.pull_button.click()
        assert d.models.wait(600)
        assert d.models.status == f"pulled {name}", d.models.status
        assert d.models.progress.value == 1.0
        assert {"download", "convert"} <= set(stages)
        assert d.models.name.value == name and "Q4_1" in d.models.details.value
    finally:
        d.close()
