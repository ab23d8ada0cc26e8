"""Handlers of `train`, `eval` and `task eval`: fine-tune a model, measure its loss, score
a task against labelled data. torch loads inside the handlers only, so other verbs stay
light."""

from __future__ import annotations

import argparse
from typing import Any

from llmos_jupyter import api
from llmos_jupyter.commands.output import Output, Record, Table
from llmos_jupyter.commands.table import Context

# TrainConfig options the CLI exposes, by argparse dest (same names as api.train's).
TRAIN_OPTIONS = ("warmup_steps", "min_lr_ratio", "weight_decay", "max_grad_norm",
                 "grad_accum", "seed", "lora_rank", "lora_alpha", "lora_targets",
                 "checkpoint_every", "eval_every", "gradient_checkpointing")


def _summary(handle: Any) -> dict[str, Any]:
    rec = handle.record()
    metrics = handle.metrics
    last = metrics[-1] if metrics else {}
    vals = [m["val_loss"] for m in metrics if m.get("val_loss") is not None]
    return {"run_id": rec.id, "status": rec.status, "model": rec.spec.get("output"),
            "base": rec.model, "data": rec.dataset, "steps": f"{rec.done}/{rec.total}",
            "loss": last.get("loss"), "val_loss": vals[-1] if vals else None,
            "tokens_per_s": last.get("tokens_per_s"), "error": rec.error}


def train(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos train MODEL --data D`: trains in the foreground in a terminal (Ctrl-C
    stops it with a checkpoint), in the background with a live plot in a notebook."""

    options = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    handle = api.train(
        args.model, args.data, args.output, method=args.method, steps=args.steps,
        batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, val_data=args.val_data,
        text_field=args.text_field, prompt_field=args.prompt_field,
        response_field=args.response_field, device=args.device,
        background=ctx.background, progress=ctx.progress and not args.json, **options)
    return Record(_summary(handle), title=f"training run {handle.id}", value=handle)


def eval_model(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos eval MODEL --data D`: loss and perplexity."""

    out = api.eval_model(args.model, data=args.data, text_field=args.text_field,
                         prompt_field=args.prompt_field, response_field=args.response_field,
                         seq_len=args.seq_len, batch_size=args.batch_size)
    return Record(out, title=f"{args.model} on {args.data}", value=out)


def task_eval(args: argparse.Namespace, ctx: Context) -> Output:
    """`llmos task eval TASK --data D --label FIELD [--model M]`: accuracy, per label,
    failures."""

    r = api.evaluate(args.name, data=args.data, label=args.label, model=args.model,
                     map=dict(args.map) or None, limit=args.limit,
                     progress=ctx.progress and not args.json)
    if args.json:
        return Record(r.to_dict(), value=r)
    lines = [f"{r.task} on {r.data} with {r.model}: accuracy {r.accuracy:.1%} "
             f"({r.correct}/{r.n}), run {r.run_id}", "",
             Table(r.per_label, ["label", "n", "correct", "accuracy"]).text()]
    if r.failures:
        lines += ["", f"failures (first {len(r.failures)}):",
                  Table(r.failures, ["idx", "expected", "got", "error"]).text()]
    return _Text("\n".join(lines), r)


class _Text(Record):
    """A pre-formatted report whose JSON is the evaluation result."""

    def __init__(self, text: str, value: Any):
        super().__init__(value.to_dict(), value=value)
        self._text = text

    def text(self) -> str:
        return self._text

    __repr__ = text

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self._text)}</pre>"
