"""Handlers of `data` verbs: add, list, show, stats, rm, export, prep, tokenize."""

from __future__ import annotations

import argparse

from llmos_jupyter import api
from llmos_jupyter.commands.output import Message, Output, Record, Table, TitledTable
from llmos_jupyter.commands.table import CommandError, Context

DATA_COLUMNS = ["name", "rows", "columns", "format", "sha256", "created_at"]


def _row(d: dict) -> dict:
    return {**d, "sha256": (d.get("sha256") or "")[:12]}


def add(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos data add NAME FILE`: snapshot a file as a dataset."""
    # Over REST the path is the server's temporary copy of the body: not worth recording.
    ds = api.datasets.add(args.name, args.path, format=args.format, replace=args.replace,
                          described_as="an upload over the REST API" if ctx.rest else None)
    return Record(ds.record.to_dict(), title=f"added dataset {args.name}", value=ds)


def list_datasets(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos data list`: every dataset with its rows and columns."""
    rows = api.datasets.list()
    if args.json:
        return Table(rows, DATA_COLUMNS)
    return Table([_row(d) for d in rows], DATA_COLUMNS, title="datasets",
                 empty="no datasets yet; try `llmos data add NAME FILE`")


def show(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos data show NAME`: a dataset's record and its first rows."""
    ds = api.datasets.get(args.name)
    info = ds.record.to_dict()
    if args.head:
        info["head"] = ds.head(args.head)
    if args.json or not ctx.notebook:
        return Record(info, title=args.name, value=ds)
    head = info.pop("head", [])
    cols = list(head[0]) if head else []
    return _Both(Record(info, title=args.name, value=ds), Table(head, cols, title="first rows"))


class _Both(Record):
    """A record followed by a table (dataset details, then its first rows)."""

    def __init__(self, record: Record, table: Table):
        super().__init__(record.data, record.title, record.value)
        self.table = table

    def text(self) -> str:
        return super().text() + "\n\n" + self.table.text()

    __repr__ = text

    def _repr_html_(self) -> str:
        return super()._repr_html_() + self.table._repr_html_()


def stats(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos data stats NAME`: per-column statistics (tokens too, with a model)."""
    info = api.datasets.get(args.name).stats(model=args.model)
    if args.json:
        return Record(info, title=f"{args.name} stats")
    rows = []
    for column, c in info["columns"].items():
        row = {"column": column, "type": c["type"], "non_null": c["non_null"]}
        for kind in ("chars", "tokens"):
            d = c.get(kind)
            if d:
                row[kind] = f"{d['min']:.0f} / {d['p50']:.0f} / {d['p90']:.0f} / {d['max']:.0f}"
                row[f"{kind}_total"] = round(d["mean"] * c["non_null"])
        rows.append(row)
    columns = ["column", "type", "non_null", "chars", "chars_total"]
    title = f"{args.name}: {info['rows']} rows; per row min / p50 / p90 / max"
    if args.model:
        columns += ["tokens", "tokens_total"]
        title += f"; tokens of {args.model}'s tokenizer"
    else:
        title += "; token counts with --model MODEL"
    return TitledTable(rows, columns, title=title)


def rm(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos data rm NAME`: remove a dataset."""
    api.datasets.rm(args.name)
    return Message(f"removed dataset {args.name}")


def export(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos data export NAME PATH`: write a dataset out (format from the extension)."""
    path = api.datasets.export(args.name, args.path, format=args.format)
    return Message(f"wrote {path}")


def prep(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos data prep SRC DST`: clean and split a dataset into new ones."""
    split = {}
    for k, v in args.split:
        try:
            split[k] = float(v)
        except ValueError:
            raise CommandError(f"--split {k}={v}: the fraction must be a number like 0.1") from None
    made = api.datasets.prep(
        args.src, args.dst, dedupe=args.dedupe, min_chars=args.min_chars,
        max_chars=args.max_chars, strip=args.strip, text_field=args.text_field,
        split=split or None, seed=args.seed, replace=args.replace,
    )
    rows = [{"name": d["name"], "rows": d["rows"], "parent": d["parent"],
             "dropped": d["stats"].get("prep", {}).get("dropped")} for d in made]
    return Table(rows, ["name", "rows", "parent", "dropped"], title=f"prepared {args.src}")


def tokenize(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos data tokenize NAME --model M`: token shards with a model's tokenizer."""
    info = api.datasets.tokenize(args.name, args.model, text_field=args.text_field,
                                 progress=ctx.progress and not args.json)
    return Record(info, title=f"tokenized {args.name}")
