"""The ONE definition of LLMOS's verbs and their arguments.

`llmos VERB ...` (CLI) and `%llmos VERB ...` (magics) both parse with `build_parser` and
run the handler it names, so the two cannot drift apart. Notebook-only verbs (load,
dashboard, playground, ...) and options (`--with`, `-o`) are added when notebook=True.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from llmos_jupyter.errors import LLMOSError


class CommandError(LLMOSError):
    """Bad command-line usage; the message says what to type instead."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises CommandError instead of exiting the process."""

    def error(self, message: str):  # type: ignore[override]
        raise CommandError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        if message:
            raise CommandError(message.strip())
        raise _HelpShown(self.format_help())

    def print_help(self, file=None):  # type: ignore[override]
        # argparse's -h prints the help and then exits; carry the text to the interface
        # instead, which prints it once (the CLI to stdout, a notebook as the cell's output).
        raise _HelpShown(self.format_help())


class _HelpShown(Exception):
    """`-h` was given: carry the help text to the interface instead of exiting."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


@dataclass
class Context:
    """What a handler may use from the interface that called it."""

    notebook: bool = False
    namespace: dict[str, Any] | None = None  # notebook variables, for --with EXPR
    write: Callable[[str], None] = field(
        default=lambda s: (sys.stdout.write(s), sys.stdout.flush())
    )
    progress: bool = True
    # Where `llmos run MODEL` reads a prompt when none is given: a terminal opens a chat,
    # a pipe is the prompt. None in a notebook, which has no stdin to read.
    stdin: TextIO | None = None


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", type=int, help="most tokens to generate")
    p.add_argument("--temperature", type=float, help="0 = greedy")
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--min-p", type=float)
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    p.add_argument("--seed", type=int)


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")


def _sub(subs, name: str, handler: str, help: str) -> argparse.ArgumentParser:  # noqa: A002
    p = subs.add_parser(name, help=help, description=help)
    p.set_defaults(handler=handler)
    return p


def build_parser(prog: str = "llmos", notebook: bool = False) -> argparse.ArgumentParser:
    """The parser of every verb. Each leaf sets `handler`, a name in handlers.HANDLERS."""
    root = _Parser(prog=prog, description="LLMOS: models, data and tasks for LLM apps.")
    subs = root.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    # models
    p = _sub(subs, "pull", "pull", "download a model into the store")
    p.add_argument("name")
    _add_json(p)
    p = _sub(subs, "list", "list_models", "list models and presets")
    _add_json(p)
    p = _sub(subs, "show", "show", "show a model's details")
    p.add_argument("name")
    _add_json(p)
    p = _sub(subs, "rm", "rm", "remove a model or preset")
    p.add_argument("name")
    p.add_argument("--cascade", action="store_true",
                   help="also remove the presets based on this model")
    p = _sub(subs, "cp", "cp", "copy a model or preset")
    p.add_argument("src")
    p.add_argument("dst")
    p = _sub(subs, "import", "import_model", "import a local GGUF file or HF/native directory")
    p.add_argument("name")
    p.add_argument("path")
    _add_json(p)
    p = _sub(subs, "create", "create", "create a preset: a model with a system prompt and defaults")
    p.add_argument("name")
    p.add_argument("--from", dest="base", required=True, help="the base model")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--param", action="append", type=_kv, default=[], metavar="KEY=VALUE")
    _add_json(p)
    p = _sub(subs, "ps", "ps", "models loaded in memory (this process)")
    _add_json(p)

    # run: a model with a prompt, or a task with inputs / over a dataset
    p = _sub(subs, "run", "run", "run MODEL \"PROMPT\", or run TASK with inputs or --data")
    p.add_argument("name", help="a model (with PROMPT) or a task")
    p.add_argument("prompt", nargs="?",
                   help="prompt text (for a model); without it, a chat at a >>> prompt "
                        "(or the prompt read from piped stdin)")
    p.add_argument("--raw", action="store_true",
                   help="continue the prompt as plain text, without the model's chat template")
    _add_task_run_args(p, notebook)

    # data
    data = _sub(subs, "data", "help_data",
                "datasets: add, list, show, rm, export, stats, prep, tokenize")
    dsubs = data.add_subparsers(dest="data_verb", metavar="DATA_VERB", parser_class=_Parser)
    p = _sub(dsubs, "add", "data_add", "add a dataset from a file")
    p.add_argument("name")
    p.add_argument("path")
    p.add_argument("--format", choices=["jsonl", "json", "csv", "tsv", "txt", "parquet"])
    p.add_argument("--replace", action="store_true", help="replace a dataset of that name")
    _add_json(p)
    p = _sub(dsubs, "list", "data_list", "list datasets")
    _add_json(p)
    p = _sub(dsubs, "show", "data_show", "show a dataset (and its first rows)")
    p.add_argument("name")
    p.add_argument("--head", type=int, default=5)
    _add_json(p)
    p = _sub(dsubs, "stats", "data_stats",
             "rows, columns and characters per row; tokens per row with --model")
    p.add_argument("name")
    p.add_argument("--model", help="count tokens with this model's tokenizer (loads only the "
                                   "tokenizer, not the weights)")
    _add_json(p)
    p = _sub(dsubs, "rm", "data_rm", "remove a dataset")
    p.add_argument("name")
    p = _sub(dsubs, "export", "data_export", "write a dataset to a file (format by extension)")
    p.add_argument("name")
    p.add_argument("path")
    p.add_argument("--format", choices=["jsonl", "json", "csv", "tsv", "txt", "parquet"],
                   help="the file format, when the extension does not say")
    p = _sub(dsubs, "prep", "data_prep", "clean and split a dataset into a new one")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--dedupe", action="store_true")
    p.add_argument("--min-chars", type=int)
    p.add_argument("--max-chars", type=int)
    p.add_argument("--strip", action="store_true")
    p.add_argument("--text-field")
    p.add_argument("--split", action="append", type=_kv, default=[], metavar="NAME=FRACTION")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replace", action="store_true", help="replace datasets of those names")
    _add_json(p)
    p = _sub(dsubs, "tokenize", "data_tokenize", "write token shards for training")
    p.add_argument("name")
    p.add_argument("--model", required=True)
    p.add_argument("--text-field")
    _add_json(p)

    # tasks
    task = _sub(subs, "task", "help_task", "tasks: list, show, add, rm, run")
    tsubs = task.add_subparsers(dest="task_verb", metavar="TASK_VERB", parser_class=_Parser)
    p = _sub(tsubs, "list", "task_list", "list tasks (built-in and yours)")
    _add_json(p)
    p = _sub(tsubs, "show", "task_show", "show a task's spec")
    p.add_argument("name")
    _add_json(p)
    p = _sub(tsubs, "add", "task_add", "add or update a task from a YAML file")
    p.add_argument("name")
    p.add_argument("-f", "--file", required=True)
    _add_json(p)
    p = _sub(tsubs, "rm", "task_rm", "remove a task")
    p.add_argument("name")
    p = _sub(tsubs, "run", "task_run", "run a task with inputs or over a dataset")
    p.add_argument("name")
    _add_task_run_args(p, notebook)

    p = _sub(tsubs, "eval", "task_eval",
             "score a task against labelled data: accuracy, per label, failures")
    p.add_argument("name")
    p.add_argument("--data", required=True, help="dataset with the task's inputs and labels")
    p.add_argument("--label", required=True, help="the column holding the right answers")
    p.add_argument("--model", "-m", help="model to use (default: the task's, or the current)")
    p.add_argument("--map", action="append", type=_kv, default=[], metavar="INPUT=COLUMN")
    p.add_argument("--limit", type=int, help="only the first N rows")
    _add_json(p)

    # training and evaluation (handlers: commands/train.py)
    from llmos_jupyter.commands.train import add_train_args

    add_train_args(_sub(subs, "train", "train", "fine-tune a model (LoRA or full) on a dataset"))
    p = _sub(subs, "eval", "eval_model", "a model's loss and perplexity on a dataset")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--text-field")
    p.add_argument("--prompt-field")
    p.add_argument("--response-field")
    p.add_argument("--seq-len", type=int, help="longest example (default: the context)")
    p.add_argument("--batch-size", type=int, default=4)
    _add_json(p)

    # runs
    runs = _sub(subs, "runs", "help_runs", "run history: list, show, cancel, resume, export")
    rsubs = runs.add_subparsers(dest="runs_verb", metavar="RUNS_VERB", parser_class=_Parser)
    p = _sub(rsubs, "list", "runs_list", "recent runs")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--status")
    _add_json(p)
    p = _sub(rsubs, "show", "runs_show", "a run with its items")
    p.add_argument("id")
    p.add_argument("--items", type=int, default=10, help="how many item results to show")
    _add_json(p)
    p = _sub(rsubs, "cancel", "runs_cancel", "cancel a run")
    p.add_argument("id")
    p = _sub(rsubs, "resume", "runs_resume",
             "finish an interrupted run (only items without a result)")
    p.add_argument("id")
    _add_json(p)
    p = _sub(rsubs, "export", "runs_export", "write a run's results (jsonl or csv by extension)")
    p.add_argument("id")
    p.add_argument("path")

    if notebook:
        _add_notebook_verbs(subs)
    else:
        _add_serve(subs)
    return root


def _add_serve(subs) -> None:
    """`llmos serve`: command line only (in a notebook it would hold the kernel)."""
    p = _sub(subs, "serve", "serve", "serve the store's models over HTTP (OpenAI-compatible)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs a key)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: a free one)")
    p.add_argument("--api-key", help="bearer key required on every route but /health "
                   "(default: $LLMOS_API_KEY)")
    p.add_argument("--max-batch", type=int, default=32,
                   help="requests decoding together per model (default 32)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting per model before 429 (default 64)")


def _add_task_run_args(p: argparse.ArgumentParser, notebook: bool) -> None:
    p.add_argument("--input", "-i", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="a task input given as text")
    if notebook:
        p.add_argument("--with", "-w", dest="with_", action="append", type=_kv, default=[],
                       metavar="KEY=EXPR", help="a task input: a Python expression in the notebook")
        p.add_argument("-o", "--out", dest="out", metavar="VAR", help="store the result in VAR")
    p.add_argument("--model", "-m", help="model to use (default: the task's, or the current)")
    p.add_argument("--data", help="run over every row of this dataset")
    p.add_argument("--map", action="append", type=_kv, default=[], metavar="INPUT=COLUMN")
    p.add_argument("--limit", type=int, help="only the first N rows")
    _add_sampling(p)
    _add_json(p)


def _add_notebook_verbs(subs) -> None:
    p = _sub(subs, "load", "nb_load", "load a model and make it the notebook's current model")
    p.add_argument("name", nargs="?")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p = _sub(subs, "unload", "nb_unload", "free a loaded model (default: all)")
    p.add_argument("name", nargs="?")
    _sub(subs, "dashboard", "nb_dashboard", "open the dashboard widget")
    _sub(subs, "playground", "nb_playground", "open the playground widget")
    p = _sub(subs, "help", "nb_help", "help on a verb")
    p.add_argument("topic", nargs="*")
    p = _sub(subs, "chat", "nb_chat_line", "chat options: --reset forgets the conversation")
    p.add_argument("--reset", action="store_true")


def parse(argv: list[str], prog: str = "llmos", notebook: bool = False) -> argparse.Namespace:
    """Parse argv; raises CommandError (bad usage) or _HelpShown (help requested)."""
    parser = build_parser(prog, notebook)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        raise _HelpShown(parser.format_help())
    if handler.startswith("help_"):  # a group without its sub-verb (`llmos data`): its help
        parser.parse_args([args.verb, "--help"])
    return args
