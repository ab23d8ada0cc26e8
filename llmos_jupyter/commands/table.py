"""The ONE definition of LLMOS's verbs and their parameters.

`llmos VERB ...` (CLI), `%llmos VERB ...` and `%%llmos VERB` (magics) parse with parsers
built from `VERBS` / `CELL_VERBS`, and the server builds its `/api/...` routes and its
OpenAPI document from the same list, so the interfaces cannot drift apart. A verb or
parameter missing from an interface says so in its `on` set: `serve` exists only on the
command line (in a notebook it would hold the kernel), `load` only where a process keeps
models (a notebook, the server), `--with EXPR` only where there are notebook variables.
"""

from __future__ import annotations

import argparse
import sys

from llmos_jupyter.commands.spec import (
    CELL,
    CLI,
    NOTEBOOK,
    REST,
    CommandError,
    Context,
    HelpShown,
    Param,
    Parser,
    Verb,
    add_verbs,
    sampling,
    sampling_args,
)

__all__ = ["CELL_VERBS", "GROUPS", "VERBS", "CommandError", "Context", "HelpShown",
           "build_cell_parser", "build_parser", "parse", "parse_command_line", "sampling_args"]

FORMATS = ("jsonl", "json", "csv", "tsv", "txt", "parquet")
CLI_NB = frozenset({CLI, NOTEBOOK})
NB_REST = frozenset({NOTEBOOK, REST})
ONLY_NB = frozenset({NOTEBOOK})
ONLY_CLI = frozenset({CLI})


def P(name: str, **kw) -> Param:  # noqa: N802 - reads as a table
    """A parameter (shorthand for the table below)."""
    return Param(name, **kw)


def Pos(name: str, **kw) -> Param:  # noqa: N802
    """A positional parameter (a path segment over REST when the route names it)."""
    return Param(name, positional=True, **kw)


MODEL_OPT = P("model", aliases=("-m",),
              help="model to use (default: the task's, or the current)")
MAP = P("map", kind="map", metavar="INPUT=COLUMN", help="feed a task input from a column")
LIMIT = P("limit", kind="int", minimum=1, help="only the first N rows")
TEXT_FIELDS = (P("text_field", help="the text column (plain text data)"),
               P("prompt_field", help="the prompt column (instruction data)"),
               P("response_field", help="the answer column (instruction data)"))

# A task over inputs or over a dataset: the options of `task run` and of `run TASK`.
TASK_RUN = (
    P("input", kind="map", aliases=("-i",), metavar="KEY=VALUE",
      help="a task input given as text"),
    P("with_", kind="map", flag="--with", aliases=("-w",), metavar="KEY=EXPR", on=ONLY_NB,
      help="a task input: a Python expression in the notebook"),
    P("out", flag="--out", aliases=("-o",), metavar="VAR", on=ONLY_NB,
      help="store the result in VAR"),
    MODEL_OPT,
    P("data", help="run over every row of this dataset"),
    MAP, LIMIT, *sampling(),
)

TRAIN = (
    Pos("model", help="the base model (a catalog name)"),
    P("data", required=True, help="training dataset"),
    P("output", aliases=("-O",), help="name of the new model (default MODEL-tuned)"),
    P("method", choices=("lora", "full"), default="lora", help="LoRA adapters or all weights"),
    P("steps", kind="int", default=100, minimum=1, help="optimizer steps"),
    P("batch_size", kind="int", default=4, minimum=1, help="examples per step"),
    P("seq_len", kind="int", default=512, minimum=2, help="longest example in tokens"),
    P("lr", kind="float", default=1e-4, help="peak learning rate"),
    P("val_data", help="dataset for the validation loss"),
    *TEXT_FIELDS,
    P("device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train"),
    P("warmup_steps", kind="int", minimum=0, help="linear warmup steps"),
    P("min_lr_ratio", kind="float", help="the cosine schedule's floor, as a share of lr"),
    P("weight_decay", kind="float", help="AdamW weight decay"),
    P("max_grad_norm", kind="float", help="clip gradients to this norm"),
    P("grad_accum", kind="int", minimum=1, help="micro-batches per optimizer step"),
    P("seed", kind="int", help="random seed (data order, initial adapters)"),
    P("lora_rank", kind="int", minimum=1, help="LoRA rank"),
    P("lora_alpha", kind="float", help="LoRA alpha (scale = alpha / rank)"),
    P("lora_targets", help="q_proj,v_proj (default) ... or all-linear"),
    P("checkpoint_every", kind="int", minimum=0,
      help="steps between checkpoints (0: only when stopping)"),
    P("eval_every", kind="int", minimum=0,
      help="steps between validation losses (0: only at the end)"),
    P("gradient_checkpointing", kind="bool",
      help="recompute activations in the backward: less memory, slower steps"),
)

GROUPS = {
    "data": "datasets: add, list, show, rm, export, stats, prep, tokenize",
    "task": "tasks: list, show, add, rm, run, eval",
    "runs": "run history: list, show, cancel, resume, export",
}

VERBS: tuple[Verb, ...] = (
    # models
    Verb(("pull",), "pull", "download a model into the store",
         (Pos("name"), P("stream", kind="bool", on=frozenset({REST}),
                         help="report progress as server-sent events, then the record")),
         http="POST api/models/pull"),
    Verb(("list",), "list_models", "list models and presets", http="GET api/models"),
    Verb(("show",), "show", "show a model's details", (Pos("name"),),
         http="GET api/models/{name}"),
    Verb(("rm",), "rm", "remove a model or preset",
         (Pos("name"), P("cascade", kind="bool",
                         help="also remove the presets based on this model")),
         http="DELETE api/models/{name}", json=False),
    Verb(("cp",), "cp", "copy a model or preset", (Pos("src"), Pos("dst")),
         http="POST api/models/cp", json=False),
    Verb(("import",), "import_model", "import a local GGUF file or HF/native directory",
         (Pos("name"), Pos("path", help="a file or directory on the machine running LLMOS")),
         http="POST api/models/import"),
    Verb(("create",), "create", "create a preset: a model with a system prompt and defaults",
         (Pos("name"), P("base", flag="--from", required=True, help="the base model"),
          P("system", help="system prompt"),
          P("param", kind="map", help="a default sampling setting")),
         http="POST api/models/create"),
    Verb(("ps",), "ps", "models loaded in memory (this process)", http="GET api/ps"),
    Verb(("load",), "load", "load a model (the notebook's current model; warm in a server)",
         (Pos("name", optional=True),
          # A server serves each model one way, chosen for its machine.
          P("device", default="auto", help="auto, cpu or cuda", on=ONLY_NB),
          P("dtype", default="auto", help="auto, float32, bfloat16, ...", on=ONLY_NB)),
         http="POST api/models/{name}/load", on=NB_REST, json=False),
    Verb(("unload",), "unload", "free a loaded model (default: all)",
         (Pos("name", optional=True),), http="POST api/models/{name}/unload", on=NB_REST,
         json=False),
    # run: a model with a prompt, or a task with inputs / over a dataset
    Verb(("run",), "run", "run MODEL \"PROMPT\", or run TASK with inputs or --data",
         (Pos("name", help="a model (with PROMPT) or a task"),
          Pos("prompt", optional=True,
              help="prompt text (for a model); without it, a chat at a >>> prompt "
                   "(or the prompt read from piped stdin)"),
          P("raw", kind="bool",
            help="continue the prompt as plain text, without the model's chat template"),
          P("verbose", kind="bool", on=ONLY_CLI,
            help="after each answer, its token counts and rates: the prompt (and how much "
                 "of it came from the cache of the last turn) and the answer"),
          *TASK_RUN),
         http="POST api/run"),
    # data
    Verb(("data", "add"), "data_add", "add a dataset from a file",
         (Pos("name"), Pos("path", kind="file_in", help="the file (over HTTP: the body)"),
          P("format", choices=FORMATS, help="the file format, when the extension does not "
                                            "say (over HTTP: always)"),
          P("replace", kind="bool", help="replace a dataset of that name")),
         http="POST api/datasets/{name}"),
    Verb(("data", "list"), "data_list", "list datasets", http="GET api/datasets"),
    Verb(("data", "show"), "data_show", "show a dataset (and its first rows)",
         (Pos("name"), P("head", kind="int", default=5, minimum=0, help="how many rows to show")),
         http="GET api/datasets/{name}"),
    Verb(("data", "stats"), "data_stats",
         "rows, columns and characters per row; tokens per row with --model",
         (Pos("name"), P("model", help="count tokens with this model's tokenizer (loads only "
                                       "the tokenizer, not the weights)")),
         http="GET api/datasets/{name}/stats"),
    Verb(("data", "rm"), "data_rm", "remove a dataset", (Pos("name"),),
         http="DELETE api/datasets/{name}", json=False),
    Verb(("data", "export"), "data_export", "write a dataset to a file (format by extension)",
         (Pos("name"), Pos("path", kind="file_out", help="the file (over HTTP: the response)"),
          P("format", choices=FORMATS, help="the file format, when the extension does not "
                                            "say (over HTTP: default jsonl)")),
         http="GET api/datasets/{name}/export", json=False),
    Verb(("data", "prep"), "data_prep", "clean and split a dataset into a new one",
         (Pos("src"), Pos("dst"),
          P("dedupe", kind="bool", help="drop repeated rows"),
          P("min_chars", kind="int", minimum=0, help="drop rows shorter than this"),
          P("max_chars", kind="int", minimum=0, help="drop rows longer than this"),
          P("strip", kind="bool", help="strip surrounding whitespace"),
          P("text_field", help="the column the filters read"),
          P("split", kind="map", metavar="NAME=FRACTION", help="split into named parts"),
          P("seed", kind="int", default=0, help="seed of the split's shuffle"),
          P("replace", kind="bool", help="replace datasets of those names")),
         http="POST api/datasets/{src}/prep"),
    Verb(("data", "tokenize"), "data_tokenize", "write token shards for training",
         (Pos("name"), P("model", required=True, help="whose tokenizer"),
          P("text_field", help="the text column")),
         http="POST api/datasets/{name}/tokenize"),
    # tasks
    Verb(("task", "list"), "task_list", "list tasks (built-in and yours)", http="GET api/tasks"),
    Verb(("task", "show"), "task_show", "show a task's spec", (Pos("name"),),
         http="GET api/tasks/{name}"),
    Verb(("task", "add"), "task_add", "add or update a task from a YAML file",
         (Pos("name"), P("file", kind="file_in", required=True, aliases=("-f",),
                         help="the task's YAML (over HTTP: the body)")),
         http="PUT api/tasks/{name}"),
    Verb(("task", "rm"), "task_rm", "remove a task", (Pos("name"),),
         http="DELETE api/tasks/{name}", json=False),
    Verb(("task", "run"), "task_run", "run a task with inputs or over a dataset",
         (Pos("name"), *TASK_RUN), http="POST api/tasks/{name}/run"),
    Verb(("task", "eval"), "task_eval",
         "score a task against labelled data: accuracy, per label, failures",
         (Pos("name"), P("data", required=True, help="dataset with the task's inputs and labels"),
          P("label", required=True, help="the column holding the right answers"),
          MODEL_OPT, MAP, LIMIT),
         http="POST api/tasks/{name}/eval"),
    # training and evaluation
    Verb(("train",), "train", "fine-tune a model (LoRA or full) on a dataset", TRAIN,
         http="POST api/train"),
    Verb(("eval",), "eval_model", "a model's loss and perplexity on a dataset",
         (Pos("model"), P("data", required=True, help="the dataset"), *TEXT_FIELDS,
          P("seq_len", kind="int", minimum=2, help="longest example (default: the context)"),
          P("batch_size", kind="int", default=4, minimum=1,
            help="examples per forward pass")),
         http="POST api/models/{model}/eval"),
    # runs
    Verb(("runs", "list"), "runs_list", "recent runs",
         (P("limit", kind="int", default=20, minimum=1, help="how many"),
          P("status", help="only runs with this status")),
         http="GET api/runs"),
    Verb(("runs", "show"), "runs_show", "a run with its items",
         (Pos("id"), P("items", kind="int", default=10, minimum=0,
                         help="how many item results to show"),
          P("offset", kind="int", default=0, minimum=0, help="the first item to show")),
         http="GET api/runs/{id}"),
    Verb(("runs", "cancel"), "runs_cancel", "cancel a run", (Pos("id"),),
         http="POST api/runs/{id}/cancel", json=False),
    Verb(("runs", "resume"), "runs_resume",
         "finish an interrupted run (only items without a result)", (Pos("id"),),
         http="POST api/runs/{id}/resume"),
    Verb(("runs", "export"), "runs_export", "write a run's results (jsonl or csv by extension)",
         (Pos("id"), Pos("path", kind="file_out", help="the file (over HTTP: the response)"),
          P("format", choices=("jsonl", "csv"),
            help="the file format, when the extension does not say (over HTTP: default jsonl)")),
         http="GET api/runs/{id}/export", json=False),
    # command line only: `serve` would hold a notebook's kernel
    Verb(("serve",), "serve", "serve the store's models over HTTP (OpenAI-compatible)",
         (P("host", default="127.0.0.1",
            help="address to listen on (default 127.0.0.1; any other needs a key)"),
          P("port", kind="int", default=8765, minimum=0, maximum=65535,
            help="port (default 8765; 0: a free one)"),
          P("api_key", help="bearer key required on every route but /health "
                            "(default: $LLMOS_API_KEY)"),
          P("max_batch", kind="int", default=32, minimum=1,
            help="requests decoding together per model (default 32)"),
          P("max_queue", kind="int", default=64, minimum=0,
            help="requests waiting per model before 429 (default 64)")),
         on=ONLY_CLI, json=False),
    # notebook only: widgets and the notebook's conversation
    Verb(("dashboard",), "nb_dashboard", "open the dashboard widget", on=ONLY_NB, json=False),
    Verb(("playground",), "nb_playground", "open the playground widget", on=ONLY_NB,
         json=False),
    Verb(("help",), "nb_help", "help on a verb", (Pos("topic", kind="list"),), on=ONLY_NB,
         json=False),
    Verb(("chat",), "nb_chat_line", "chat options: --reset forgets the conversation",
         (P("reset", kind="bool", help="forget the conversation"),), on=ONLY_NB, json=False),
)

_GENERATE_CELL = (
    P("model", aliases=("-m",), help="model (default: the notebook's current model)"),
    P("out", flag="--out", aliases=("-o",), metavar="VAR", help="store the result in VAR"),
    P("no_stream", kind="bool", help="print the text at the end"),
    *sampling(),
)
ONLY_CELL = frozenset({CELL})

# `%%llmos VERB`: the cell body is the prompt, the task's YAML, or the training config.
CELL_VERBS: tuple[Verb, ...] = (
    Verb(("generate",), "cell_generate", "generate with the cell body as the prompt",
         _GENERATE_CELL, on=ONLY_CELL, json=False),
    Verb(("chat",), "cell_chat", "chat with the cell body as the prompt",
         (*_GENERATE_CELL, P("reset", kind="bool", help="start a new conversation"),
          P("system", help="system prompt for a new conversation")), on=ONLY_CELL, json=False),
    Verb(("task",), "cell_task", "define or update task NAME from the cell's YAML",
         (Pos("name"),), on=ONLY_CELL, json=False),
    Verb(("train",), "cell_train", "fine-tune a model; the cell is YAML with llmos.train's "
         "keywords (model, data, output, steps, lr, ...)",
         (P("out", flag="--out", aliases=("-o",), metavar="VAR", help="store the run in VAR"),
          P("wait", kind="bool", help="block the cell until it ends")),
         on=ONLY_CELL, json=False),
)


def verbs_on(interface: str) -> list[Verb]:
    """The verbs an interface offers."""
    return [v for v in (*VERBS, *CELL_VERBS) if interface in v.on]


def build_parser(prog: str = "llmos", notebook: bool = False) -> argparse.ArgumentParser:
    """The parser of every verb of the CLI (or, notebook=True, of `%llmos`). Each leaf
    sets `handler`, a name in dispatch.HANDLERS or an interface's own handlers."""
    root = Parser(prog=prog, description="LLMOS: models, data and tasks for LLM apps.")
    add_verbs(root, VERBS, GROUPS, NOTEBOOK if notebook else CLI)
    return root


def build_cell_parser() -> argparse.ArgumentParser:
    """The parser of `%%llmos` cell verbs."""
    root = Parser(prog="%%llmos", description="cell verbs: generate, chat, task NAME, train")
    add_verbs(root, CELL_VERBS, GROUPS, CELL)
    return root


def parse(argv: list[str], prog: str = "llmos", notebook: bool = False) -> argparse.Namespace:
    """Parse argv; raises CommandError (bad usage) or HelpShown (help requested)."""
    here = NOTEBOOK if notebook else CLI
    elsewhere = _elsewhere(here)
    if argv and argv[0] in elsewhere:
        verb = argv[0]
        where = (f"a notebook: %llmos {verb}" if NOTEBOOK in elsewhere[verb]
                 else f"the command line: llmos {verb}")
        raise CommandError(f"{verb!r} is only available in {where}")
    parser = build_parser(prog, notebook)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        raise HelpShown(parser.format_help())
    if handler.startswith("help_"):  # a group without its sub-verb (`llmos data`): its help
        parser.parse_args([args.verb, "--help"])
    return args


def parse_command_line(argv: list[str]) -> argparse.Namespace | int:
    """`parse` for a command line: the parsed arguments, or the exit status after printing
    the help (0, to stdout) or the usage error (2, to stderr)."""
    try:
        return parse(argv)
    except HelpShown as h:
        print(h.text.rstrip())
        return 0
    except CommandError as e:
        print(str(e), file=sys.stderr)
        return 2


def _elsewhere(interface: str) -> dict[str, frozenset[str]]:
    """Single-word verbs missing from `interface` but offered on another, by name."""
    here = {v.words[0] for v in VERBS if interface in v.on}
    return {v.words[0]: v.on for v in VERBS
            if interface not in v.on and v.words[0] not in here and v.on & CLI_NB}

