"""Notebook-only line verbs: load, unload, dashboard, playground, help, chat --reset."""

from __future__ import annotations

import argparse
from typing import Any

from llmos_jupyter import api
from llmos_jupyter.commands.output import Message, Output, Record
from llmos_jupyter.commands.table import Context, HelpShown, build_parser
from llmos_jupyter.errors import LLMOSError


def nb_load(args: argparse.Namespace, ctx: Context) -> Output:
    m = api.load(args.name, device=args.device, dtype=args.dtype)
    info = {"model": m.name, "arch": m.config.arch, "mode": m.mode, "device": str(m.device),
            "load_seconds": round(m.info.get("load_seconds", 0.0), 2)}
    return Record(info, title=f"{m.name} is the current model", value=m)


def nb_unload(args: argparse.Namespace, ctx: Context) -> Output:
    names = api.unload(args.name)
    return Message(f"unloaded {', '.join(names)}" if names else "nothing was loaded")


def nb_dashboard(args: argparse.Namespace, ctx: Context) -> Output:
    """`%llmos dashboard`: the models, data, tasks and runs tabs."""
    return _Shown(_widget(args, "Dashboard"))


def nb_playground(args: argparse.Namespace, ctx: Context) -> Output:
    """`%llmos playground`: a prompt box with sampling controls."""
    return _Shown(_widget(args, "Playground"))


def _widget(args: argparse.Namespace, name: str) -> Any:
    show_widget = args._magics.show_widget
    if show_widget is None:
        raise LLMOSError(f"no widgets in these magics: load them with `%load_ext llmos` "
                         f"to show the {name.lower()}")
    return show_widget(name)


class _Shown(Message):
    """A widget returned as the cell's result so Jupyter displays it."""

    def __init__(self, widget):
        super().__init__("", value=widget)

    def text(self) -> str:
        return "widget"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.value)


def nb_help(args: argparse.Namespace, ctx: Context) -> Output:
    parser = build_parser("%llmos", notebook=True)
    try:
        parser.parse_args([*args.topic, "--help"])
    except HelpShown as h:
        text = h.text
        if not args.topic:
            text += ("\ncell verbs:\n  %%llmos generate [--max-tokens N] [--temperature T] [-o VAR]"
                     "\n  %%llmos chat [--reset] [-o VAR]\n  %%llmos task NAME   (YAML spec body)"
                     "\n  %%llmos train [--wait] [-o VAR]   (YAML body: model, data, steps, ...)")
        return Message(text)
    return Message(parser.format_help())


def nb_chat_line(args: argparse.Namespace, ctx: Context) -> Output:
    magics = args._magics
    if args.reset:
        magics.conversation.clear()
        return Message("conversation cleared")
    turns = len([m for m in magics.conversation if m["role"] == "user"])
    return Message(f"{turns} turn(s) in this notebook's conversation; "
                   "`%llmos chat --reset` clears it")


NOTEBOOK_HANDLERS = {
    "load": nb_load,
    "unload": nb_unload,
    "nb_dashboard": nb_dashboard,
    "nb_playground": nb_playground,
    "nb_help": nb_help,
    "nb_chat_line": nb_chat_line,
}
