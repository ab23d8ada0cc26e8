"""`llmos run MODEL [PROMPT]`: answer one prompt, or chat at a `>>> ` prompt like `ollama run`.

A model with a chat template (an instruct model) gets the prompt as a user turn of a
conversation; `--raw` (or a model without a template) continues the text as it is.
Pieces of the answer are written as they are generated. With no PROMPT, a terminal opens
an interactive chat (history kept between turns); piped stdin is read as the prompt.
"""

from __future__ import annotations

import argparse
from typing import Any

from llmos_jupyter import api
from llmos_jupyter.commands.output import Message, Output, Record
from llmos_jupyter.commands.table import CommandError, Context, sampling_args

SESSION_HELP = """Available commands:
  /clear   forget the conversation so far
  /bye     leave (Ctrl-D also leaves)
  /?       this help
Ctrl-C stops the answer being written."""


def run_model(args: argparse.Namespace, ctx: Context) -> Output:
    """Generate from `args.name`: one answer to PROMPT (or piped stdin), else a chat session."""
    if args.data or args.input or getattr(args, "with_", None):
        raise CommandError(
            f"{args.name!r} is a model; --input/--with/--data are for tasks: "
            "`llmos task run TASK --input key=value`"
        )
    prompt = args.prompt
    stdin = ctx.stdin
    interactive = prompt is None and stdin is not None and stdin.isatty()
    if prompt is None and stdin is not None and not interactive:
        # Piped: the whole input is the prompt, as in `ollama run` (less the final newline).
        prompt = stdin.read().rstrip("\n")
    if not interactive and not (prompt or "").strip():
        raise CommandError(f"give a prompt: `llmos run {args.name} \"Why is the sky blue?\"`")
    if interactive and args.json:
        raise CommandError("--json needs a PROMPT; the interactive chat writes plain text")
    model = api.load(args.name)
    params = sampling_args(args)
    as_chat = not args.raw and bool(model.tokenizer.spec.chat_template)
    verbose = getattr(args, "verbose", False)
    if interactive:
        return _session(model, params, ctx, as_chat, verbose)
    messages = [{"role": "user", "content": prompt}]
    if args.json:
        c = model.chat(messages, **params) if as_chat else model.generate(prompt, **params)
        return Record(_completion_dict(args.name, c), value=c)

    def write(_row: int, piece: str) -> None:
        ctx.write(piece)

    if as_chat:
        c = model.chat(messages, on_piece=write, **params)
    else:
        c = model.generate(prompt, on_piece=write, **params)
    ctx.write("\n")
    if verbose:
        ctx.write(stats(c))
    return Message("", value=c)


def stats(c: Any) -> str:
    """An answer's token counts and rates, as `ollama run --verbose` prints them."""
    u, t = c.usage, c.timings
    cached = u.get("cached_tokens", 0)
    from_cache = f" ({cached} from the cache)" if cached else ""
    prefilled = u["prompt_tokens"] - cached
    rate = prefilled / t["prefill_s"] if t.get("prefill_s") else 0.0
    return (f"prompt: {u['prompt_tokens']} tokens{from_cache}; {prefilled} prefilled in "
            f"{t.get('prefill_s', 0.0) * 1e3:.0f} ms ({rate:.1f} tok/s)\n"
            f"answer: {u['completion_tokens']} tokens in {t.get('decode_s', 0.0):.2f} s "
            f"({t.get('decode_tokens_per_s', 0.0):.1f} tok/s)\n")


def _session(model: Any, params: dict[str, Any], ctx: Context, as_chat: bool,
             verbose: bool = False) -> Output:
    """The `>>> ` loop: each line is a user turn; the conversation is kept until /clear."""
    import readline  # noqa: F401 - gives input() line editing and arrow-key recall

    history: list[dict[str, str]] = []
    pieces: list[str] = []  # the answer being written

    def write(_row: int, piece: str) -> None:
        pieces.append(piece)
        ctx.write(piece)

    mode = "chat" if as_chat else "plain completion (each line on its own)"
    ctx.write(f"{model.name}: {mode}. /bye or Ctrl-D to leave, /? for help.\n")
    while True:
        try:
            line = input(">>> ").strip()
        except EOFError:
            ctx.write("\n")
            break
        except KeyboardInterrupt:
            ctx.write("\nUse Ctrl-D or /bye to leave.\n")
            continue
        if not line:
            continue
        if line.startswith("/"):
            command = line.split()[0]
            if command in ("/bye", "/exit"):
                break
            if command == "/clear":
                history.clear()
                ctx.write("Cleared the conversation.\n")
            elif command in ("/?", "/help"):
                ctx.write(SESSION_HELP + "\n")
            else:
                ctx.write(f"Unknown command {command!r}; /? lists the commands.\n")
            continue
        pieces.clear()
        c = None
        try:
            if as_chat:
                history.append({"role": "user", "content": line})
                c = model.chat(history, on_piece=write, **params)
            else:
                c = model.generate(line, on_piece=write, **params)
        except KeyboardInterrupt:
            ctx.write(" [stopped]")
        if as_chat:  # what was shown is what the model said, a stopped answer too
            history.append({"role": "assistant", "content": "".join(pieces)})
        ctx.write("\n")
        if verbose and c is not None:
            ctx.write(stats(c))
        ctx.write("\n")
    return Message("")


def _completion_dict(model: str, c: Any) -> dict[str, Any]:
    return {"model": model, "text": c.text, "finish_reason": c.finish_reason,
            "usage": c.usage, "timings": c.timings}
