"""Cell verbs: `%%llmos generate`, `%%llmos chat`, `%%llmos task NAME`, `%%llmos train`.

The cell body is the prompt (or the task's YAML). `{var}` in a prompt is filled from the
notebook's variables — names only, nothing else of Python — and `{{`/`}}` are braces.
Text streams into the cell output as it is generated; Ctrl-C / interrupt keeps the
partial text.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from IPython.core.error import UsageError

from llmos_jupyter import api
from llmos_jupyter.commands.output import Record
from llmos_jupyter.commands.table import CommandError, HelpShown, build_cell_parser, sampling_args

CELL_VERBS = ("generate", "chat", "task", "train")


def fill_variables(body: str, namespace: dict[str, Any]) -> str:
    """Replace `{name}` with str(namespace[name]); mistakes are UsageErrors with a hint."""
    try:
        return api.fill_prompt(body, namespace)
    except ValueError as e:
        raise UsageError(f"%%llmos: {e}\nUse {{{{ and }}}} for literal braces.") from None


def run_cell(magics: Any, argv: list[str], cell: str) -> Any:
    """Parse the cell line and run its verb."""
    try:
        args = build_cell_parser().parse_args(argv)
    except HelpShown as h:
        print(h.text)
        return None
    except CommandError as e:
        raise UsageError(_cell_hint(argv) or str(e)) from None
    if args.verb is None:
        raise UsageError("%%llmos needs a cell verb: generate, chat, task NAME or train")
    if args.verb == "task":
        return _task(args, cell)
    if args.verb == "train":
        return _train(magics, args, cell)
    return _generate(magics, args, cell)


def _cell_hint(argv: list[str]) -> str | None:
    """What to type instead, for a line verb written as a cell (a CLI habit)."""
    if argv[:2] == ["task", "add"] and len(argv) >= 3:
        return (f"%%llmos task {argv[2]} defines (or updates) the task from the cell's YAML; "
                f"`task add` is the line form, `%llmos task add {argv[2]} -f FILE`")
    if argv and argv[0] not in CELL_VERBS and not argv[0].startswith("-"):
        return (f"%%llmos has no cell verb {argv[0]!r}; cell verbs: "
                f"{', '.join(CELL_VERBS)}. For the line verb, use one %: "
                f"%llmos {' '.join(argv)}")
    return None


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return sampling_args(args)


def _generate(magics: Any, args: argparse.Namespace, cell: str) -> Any:
    ns = magics.shell.user_ns
    model = api.load(args.model) if args.model else api.current_model()
    text = fill_variables(cell.strip("\n"), ns)
    pieces: list[str] = []

    def on_piece(_row: int, piece: str) -> None:
        pieces.append(piece)
        if not args.no_stream:
            sys.stdout.write(piece)
            sys.stdout.flush()

    if args.verb == "chat":
        if args.reset:
            magics.conversation.clear()
        if args.system and not magics.conversation:
            magics.conversation.append({"role": "system", "content": args.system})
        messages = [*magics.conversation, {"role": "user", "content": text}]
        run = lambda: model.chat(messages, on_piece=on_piece, **_sampling(args))
    else:
        run = lambda: model.generate(text, on_piece=on_piece, **_sampling(args))
    try:
        result = run()
    except KeyboardInterrupt:
        result = model.interrupted("".join(pieces))
        sys.stdout.write("\n[interrupted: partial text kept]")
    if args.verb == "chat":
        magics.conversation[:] = [*messages, {"role": "assistant", "content": result.text}]
    if args.no_stream:
        sys.stdout.write(result.text)
    sys.stdout.write("\n")
    if args.out:
        ns[args.out] = result
    return None


def _task(args: argparse.Namespace, cell: str) -> Any:

    spec = api.tasks.add(args.name, cell)
    return Record(spec.to_dict(), title=f"task {args.name} (validated)", value=spec)


def _train(magics: Any, args: argparse.Namespace, cell: str) -> Any:
    """Start a training run from the cell's YAML, with a live loss plot under the cell."""
    import yaml


    try:
        cfg = yaml.safe_load(cell) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"%%llmos train: the cell is not valid YAML ({e})") from None
    if not isinstance(cfg, dict) or "model" not in cfg or "data" not in cfg:
        raise UsageError("%%llmos train: the cell is YAML with at least `model:` and `data:`,"
                         " e.g.\nmodel: smollm2-135m-instruct\ndata: pairs\nsteps: 60")
    model, data = cfg.pop("model"), cfg.pop("data")
    handle = api.train(model, data, cfg.pop("output", None), progress=True,
                       background=not args.wait, **cfg)
    if args.wait:
        handle.wait()
    if args.out:
        magics.shell.user_ns[args.out] = handle
    return handle
