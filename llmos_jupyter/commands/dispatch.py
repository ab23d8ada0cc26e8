"""Run a parsed command: look its handler up by name and call it."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from llmos_jupyter.commands import data, models, tasks, train
from llmos_jupyter.commands.output import Output
from llmos_jupyter.commands.table import CommandError, Context

Handler = Callable[[argparse.Namespace, Context], Output]

HANDLERS: dict[str, Handler] = {
    "pull": models.pull,
    "list_models": models.list_models,
    "show": models.show,
    "rm": models.rm,
    "cp": models.cp,
    "import_model": models.import_model,
    "create": models.create,
    "ps": models.ps,
    "run": tasks.run,
    "data_add": data.add,
    "data_list": data.list_datasets,
    "data_show": data.show,
    "data_stats": data.stats,
    "data_rm": data.rm,
    "data_export": data.export,
    "data_prep": data.prep,
    "data_tokenize": data.tokenize,
    "task_list": tasks.list_tasks,
    "task_show": tasks.show,
    "task_add": tasks.add,
    "task_rm": tasks.rm,
    "task_run": tasks.task_run,
    "task_eval": train.task_eval,
    "train": train.train,
    "eval_model": train.eval_model,
    "runs_list": tasks.runs_list,
    "runs_show": tasks.runs_show,
    "runs_cancel": tasks.runs_cancel,
    "runs_resume": tasks.runs_resume,
    "runs_export": tasks.runs_export,
}


def dispatch(
    args: argparse.Namespace, ctx: Context, extra: dict[str, Handler] | None = None
) -> Output:
    """Call the handler `args.handler` names; `extra` adds an interface's own verbs."""
    name = args.handler
    table = {**HANDLERS, **(extra or {})}
    if name not in table:
        raise CommandError(f"`{args.verb}` is only available in a notebook (%llmos {args.verb})")
    return table[name](args, ctx)
