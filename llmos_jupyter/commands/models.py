"""Handlers of the model verbs: pull, list, show, rm, cp, import, create, ps."""

from __future__ import annotations

import argparse
import json

from llmos_jupyter import api
from llmos_jupyter.commands.output import Message, Output, Record, Table
from llmos_jupyter.commands.table import Context
from llmos_jupyter.humanize import human_bytes, human_count

MODEL_COLUMNS = ["name", "kind", "arch", "params", "quantization", "size", "created_at"]


def _model_row(d: dict) -> dict:
    return {**d, "size": human_bytes(d.get("size_bytes"))}


def _readable(d: dict) -> dict:
    """A model's record as a person reads it: 135M parameters, 93.4 MB (JSON keeps numbers)."""
    out = dict(d)
    if out.get("params") is not None:
        out["params"] = human_count(out["params"])
    for key in ("size_bytes", "size_on_disk"):
        if out.get(key) is not None:
            out[key] = human_bytes(out[key])
    return out


# What `pull` and `import` print (`show` has everything).
SUMMARY_KEYS = ("name", "arch", "params", "quantization", "context_length", "size", "source")


def _summary(rec: dict) -> dict:
    row = _model_row(rec)
    return {k: row.get(k) for k in SUMMARY_KEYS}


def pull(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos pull NAME`: fetch a model into the store."""
    rec = api.pull(args.name, progress=ctx.on_progress or (ctx.progress and not args.json))
    return Record(rec if args.json else _readable(_summary(rec)), title=f"pulled {args.name}")


def list_models(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos list`: the models in the store."""
    rows = [_model_row(d) for d in api.list_models()]
    if not args.json:
        rows = [_readable(r) for r in rows]
    return Table(rows, MODEL_COLUMNS, title="models",
                 empty="no models yet; try `llmos pull smollm2-135m-instruct`")


def show(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos show NAME`: a model's record (config, size, parameters, template)."""
    info = api.show(args.name)
    return Record(info if args.json else _readable(info), title=args.name)


def rm(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos rm NAME`: remove a model (and, with --cascade, the presets built on it)."""
    removed = api.rm(args.name, cascade=args.cascade)
    return Message(f"removed {', '.join(removed)}")


def cp(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos cp SRC DST`: copy a model under a new name."""
    api.cp(args.src, args.dst)
    return Message(f"copied {args.src} to {args.dst}")


def import_model(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos import NAME PATH`: a GGUF file or model directory into the store."""
    rec = api.import_model(args.name, args.path)
    return Record(rec if args.json else _readable(_summary(rec)), title=f"imported {args.name}")


def _param_value(text: str):
    """Preset parameter values are JSON when they parse as JSON (numbers, lists), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def create(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos create NAME --from BASE`: a preset (system prompt, sampling) on a model."""
    params = {k: _param_value(v) for k, v in args.param}
    rec = api.create(args.name, args.base, system=args.system, params=params or None)
    return Record(rec, title=f"created {args.name}")


def ps(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos ps`: the models loaded in this process."""
    rows = [{**r, "size": human_bytes(r["size_bytes"])} for r in api.ps()]
    return Table(rows, ["name", "mode", "device", "size", "load_seconds"], title="loaded",
                 empty="no model loaded in this process")
