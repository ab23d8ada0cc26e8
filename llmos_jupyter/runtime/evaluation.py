"""Evaluation: a task's accuracy against labelled data, and a model's loss on a dataset.

`evaluate_task` runs the task over the dataset as an ordinary recorded run, then compares
each item's output with the row's label: exact match after normalizing case, spaces and
surrounding punctuation/quotes (a choice task's output is already one of its labels).
`evaluate_loss` gives the mean next-token loss and perplexity with the training data
kinds' masking (instruction data: answer tokens only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmos_jupyter.core.config import check_count
from llmos_jupyter.errors import DataError
from llmos_jupyter.runtime.task_runs import start_run

_STRIP = " \t\n.!?,;:\"'`"


def normalize(value: Any) -> str:
    """The form two answers are compared in: one line, casefolded, outer punctuation off."""
    return " ".join(str(value).split()).casefold().strip(_STRIP)


@dataclass
class EvalResult:
    """Accuracy of a task on labelled data: `.accuracy`, `.per_label`, `.failures`."""

    task: str
    model: str
    data: str
    label: str
    run_id: str
    n: int
    correct: int
    per_label: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "model": self.model, "data": self.data, "label": self.label,
                "run_id": self.run_id, "n": self.n, "correct": self.correct,
                "accuracy": round(self.accuracy, 4), "per_label": self.per_label,
                "failures": self.failures}

    def __repr__(self) -> str:
        return (f"<EvalResult {self.task} on {self.data} with {self.model}: "
                f"accuracy {self.accuracy:.1%} ({self.correct}/{self.n})>")


def score(task: str, model: str, data: str, label: str, run_id: str,
          rows: list[dict[str, Any]], items: list[dict[str, Any]],
          max_failures: int = 20) -> EvalResult:
    """Compare each item's output (items[i] from rows[i]) with rows[i][label]."""
    per: dict[str, list[int]] = {}
    failures: list[dict[str, Any]] = []
    correct = 0
    for row, item in zip(rows, items, strict=True):
        expected = row.get(label)
        got = item.get("output_json")
        if got is None or isinstance(got, (dict, list)):
            got = item.get("output")
        ok = item.get("status") == "succeeded" and got is not None and \
            normalize(got) == normalize(expected)
        counts = per.setdefault(str(expected), [0, 0])
        counts[0] += 1
        counts[1] += int(ok)
        correct += int(ok)
        if not ok and len(failures) < max_failures:
            failures.append({"idx": item.get("idx"), "inputs": item.get("inputs"),
                             "expected": expected, "got": got, "error": item.get("error")})
    per_label = [{"label": k, "n": n, "correct": c, "accuracy": round(c / n, 4)}
                 for k, (n, c) in sorted(per.items())]
    return EvalResult(task, model, data, label, run_id, len(items), correct, per_label, failures)


def evaluate_task(
    services: Any, task: str, data: str, label: str, *, model: Any,
    resolve_model: Callable[[Any], Any], mapping: dict[str, str] | None = None,
    limit: int | None = None, params: dict[str, Any] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Run `task` over dataset `data` with `model` and score it against column `label`.

    Raises DataError when the dataset has no column `label`, or the errors of running a
    task over a dataset (unknown task/model/dataset, unmapped inputs).
    """
    rec = services.datasets.get(data)
    if label not in rec.columns:
        raise DataError(f"dataset {data!r} has no label column {label!r}; its columns are "
                        f"{rec.columns}. Name the column holding the right answers with --label")
    handle = start_run(services, task, model=model, resolve_model=resolve_model, data=data,
                       mapping=mapping, limit=limit, params=params, background=False,
                       on_progress=on_progress)
    rows = services.datasets.rows(data)
    if limit is not None:
        rows = rows[:limit]
    record = handle.record()
    return score(task, record.model, data, label, handle.id, rows, handle.results())


def evaluate_loss(loaded: Any, data: str, services: Any, *, text_field: str | None = None,
                  prompt_field: str | None = None, response_field: str | None = None,
                  seq_len: int | None = None, batch_size: int = 4) -> dict[str, Any]:
    """Mean next-token loss and perplexity of `loaded` on dataset `data`."""
    import torch.nn.functional as F

    # torch: imported on first use, not with this module
    from llmos_jupyter.engine.loss import IGNORE_INDEX
    from llmos_jupyter.engine.train_data import build_examples, collate, detect_fields

    check_count("batch_size", batch_size)
    if seq_len is not None:
        check_count("seq_len", seq_len, 2)  # an input and a target
    seq_len = seq_len or loaded.config.max_seq_len
    rec = services.datasets.get(data)
    fields = detect_fields(data, rec.columns, text_field, prompt_field, response_field)
    tok = loaded.tokenizer
    examples = build_examples(data, services.datasets.rows(data), fields,
                              lambda t: tok.encode(t, allow_special=False), loaded.encode_chat,
                              tok.eos_id, min(seq_len, loaded.config.max_seq_len))
    pad = tok.pad_id if tok.pad_id is not None else (tok.eos_id or 0)
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        ids, targets = collate(examples[start:start + batch_size], pad)
        logits = loaded.logits(ids)  # (B, T, V) float32
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten().to(logits.device),
                               ignore_index=IGNORE_INDEX, reduction="sum")
        total += float(loss)
        count += int((targets != IGNORE_INDEX).sum())
        del logits
    mean = total / count if count else float("nan")
    ppl = math.exp(mean) if count and mean < 700 else float("inf")
    return {"model": loaded.name, "data": data, "kind": fields.kind, "examples": len(examples),
            "tokens": count, "loss": round(mean, 6), "perplexity": round(ppl, 4)}
