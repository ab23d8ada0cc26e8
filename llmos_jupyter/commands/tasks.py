"""Handlers of `task` and `runs` verbs, and of `run` (a model with a prompt, or a task)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from llmos_jupyter import api
from llmos_jupyter.commands.output import Message, Output, Record, Table, TitledTable
from llmos_jupyter.commands.run_model import run_model
from llmos_jupyter.commands.table import CommandError, Context, sampling_args
from llmos_jupyter.errors import LLMOSError, NotFoundError, suggest

RUN_COLUMNS = ["id", "task", "model", "status", "progress", "dataset", "created_at"]


def list_tasks(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos task list`: built-in tasks, then yours."""
    return Table(api.tasks.list(), ["name", "inputs", "output", "builtin", "description"],
                 title="tasks")


def show(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos task show NAME`: a task's YAML spec."""
    spec = api.tasks.get(args.name)
    if args.json:
        return Record(spec.to_dict(), value=spec)
    return Message(spec.to_yaml().rstrip(), value=spec)


def add(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos task add NAME -f FILE`: define or update a task from a YAML spec."""
    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"task add: no file {args.file!r}; give a YAML file with -f")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:  # over REST the file is the request body: no path to name
        raise CommandError(f"task add: the YAML is not UTF-8 text (byte {e.start}); save it "
                           "as UTF-8") from None
    spec = api.tasks.add(args.name, text)
    return Record(spec.to_dict(), title=f"task {args.name} saved", value=spec)


def rm(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos task rm NAME`: remove one of your tasks."""
    api.tasks.rm(args.name)
    return Message(f"removed task {args.name}")


def _inputs(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """--input key=text, and in a notebook --with key=EXPR evaluated in its namespace."""
    inputs: dict[str, Any] = dict(args.input)
    for key, expr in getattr(args, "with_", []) or []:
        try:
            inputs[key] = eval(expr, ctx.namespace or {})  # the user's own notebook code
        except Exception as e:
            raise CommandError(f"--with {key}={expr}: {type(e).__name__}: {e}") from None
    return inputs


def task_run(args: argparse.Namespace, ctx: Context) -> Output:
    """Run a task on inputs (waits) or over a dataset (progress bar; waits in the CLI)."""
    if getattr(args, "verbose", False):
        raise CommandError(f"{args.name!r} is a task; --verbose is for a model's answers "
                           "(llmos run MODEL PROMPT --verbose)")
    params = sampling_args(args) or None
    inputs = _inputs(args, ctx)
    mapping = dict(args.map) or None
    if not args.data:
        r = api.run(args.name, model=args.model, params=params, **inputs)
        data = {"run_id": r.run_id, "status": r.status, "output": r.output}
        if r.error:
            data.update(error=r.error, raw_text=r.raw_text)
        if args.json or ctx.notebook:
            return Record(data, title=f"task {args.name}", value=r)
        if r.error:
            raise LLMOSError(f"task {args.name} failed (run {r.run_id}): {r.error}"
                             + (f"; the model wrote: {r.raw_text!r}" if r.raw_text else ""))
        return Message(_plain(r.output), value=r)
    handle = api.run(args.name, model=args.model, data=args.data, map=mapping, limit=args.limit,
                     params=params, background=ctx.background,
                     progress=ctx.progress and not args.json, **inputs)
    if ctx.background:
        return Record(handle.to_dict(), title=f"run {handle.id}", value=handle)
    handle.wait()
    return _run_outputs(handle, api.tasks.get(args.name).inputs, args.json)


def _plain(output: Any) -> str:
    """A task's output as a terminal shows it: text as is, structured values as JSON."""
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def _run_outputs(handle: Any, inputs: list[str], as_json: bool) -> Output:
    """Each item's inputs -> output (and error), with the run's id and status as the title."""
    rec = handle.to_dict()
    items = handle.results()
    if as_json:
        return Record({**rec, "items": items}, value=handle)
    rows = [{**{k: it["inputs"].get(k) for k in inputs}, "output": it.get("output"),
             "error": it.get("error")} for it in items]
    columns = [*inputs, "output"] + (["error"] if any(r["error"] for r in rows) else [])
    done = rec["progress"]
    title = (f"run {handle.id}: {rec['status']}, {done['done']}/{done['total']} items"
             f" (`llmos runs show {handle.id}` for details)")
    return TitledTable(rows, columns, title=title, empty="(no items)")


def run(args: argparse.Namespace, ctx: Context) -> Output:
    """`run NAME [PROMPT]`: a model with a prompt (or a chat without one), else a task."""
    if args.prompt is not None:
        return run_model(args, ctx)
    if _is_task(args.name):
        return task_run(args, ctx)
    models = [m["name"] for m in api.list_models()] + [m["name"] for m in api.pullable()]
    if args.name in models:
        return run_model(args, ctx)  # a chat; it refuses task options with a hint
    if args.data or args.input or getattr(args, "with_", None):
        return task_run(args, ctx)  # its "unknown task" error suggests task names
    tasks = [t["name"] for t in api.tasks.list()]
    raise CommandError(
        f"{args.name!r} is neither a model nor a task{suggest(args.name, models + tasks)}; "
        "see `llmos list` and `llmos task list`"
    )


def _is_task(name: str) -> bool:
    try:
        api.tasks.get(name)
    except NotFoundError:
        return False
    return True


def runs_list(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos runs list`: the latest runs, newest first."""
    rows = api.runs.list(limit=args.limit, status=args.status)
    if not args.json:
        rows = [{**r, "progress": "{done}/{total}".format(**r["progress"])} for r in rows]
    return Table(rows, RUN_COLUMNS, title="runs", empty="no runs yet")


def runs_show(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos runs show ID`: a run's status and its items."""
    handle = api.runs.get(args.id)
    info = handle.to_dict()
    info["items"] = [
        {k: it[k] for k in ("idx", "status", "output", "error")}
        for it in handle.results(offset=args.offset, limit=args.items)
    ]
    return Record(info, title=f"run {handle.id}", value=handle)


def runs_cancel(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos runs cancel ID`: ask a run to stop."""
    handle = api.runs.cancel(args.id)
    return Message(f"cancel requested for run {handle.id} ({handle.status})")


def runs_resume(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos runs resume ID`: finish an interrupted run."""
    handle = api.runs.resume(args.id, background=ctx.background,
                             progress=ctx.progress and not args.json)
    if not ctx.background:
        handle.wait()
    return Record(handle.to_dict(), title=f"run {handle.id}", value=handle)


def runs_export(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos runs export ID PATH`: a run's items as .jsonl or .csv."""
    return Message(f"wrote {api.runs.export(args.id, args.path)}")
