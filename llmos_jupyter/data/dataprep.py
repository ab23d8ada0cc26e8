"""Describing and preparing records in memory: columns, stats, cleaning and splitting.

Everything here takes a list of records (see `datareaders.Record`) and touches no file:
`compute_stats` is what the store shows for a dataset, `prep` cleans and splits one into
new datasets, and `resolve_text_field` decides which column holds the text for both
`prep` and the .txt export. Reading and writing files is `datafiles`.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from llmos_jupyter.data.datareaders import Record
from llmos_jupyter.errors import DataError

# ---------------------------------------------------------------------------- stats

def columns(records: Iterable[Record]) -> list[str]:
    """Every key of `records`, in order of first appearance."""
    seen: dict[str, None] = {}
    for r in records:
        seen.update(dict.fromkeys(r))
    return list(seen)


def describe(values: Sequence[float]) -> dict[str, float]:
    """min, p50, p90, p99, max, mean of `values` (numpy's linear-interpolation percentiles)."""
    import numpy as np  # ~0.1 s to import: only when stats are computed, not for `llmos list`

    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"min": float(a.min()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(a.max()), "mean": float(a.mean())}


def _type_name(types: set[str]) -> str:
    names = sorted(types)
    if not names:
        return "null"
    if names == ["float", "int"]:
        return "float"
    return names[0] if len(names) == 1 else "mixed(" + ",".join(names) + ")"


def compute_stats(records: Sequence[Record], tokenizer: Any = None,
                  batch_size: int = 1024) -> dict[str, Any]:
    """Describe `records`: {"rows": n, "columns": {name: {...}}}.

    Each column has "type" (python type name of its non-null values, "mixed(...)" when
    several) and "non_null". String columns also have "chars" (characters per row:
    min/p50/p90/p99/max/mean over non-null rows) and, given a tokenizer with
    `encode_batch(texts)`, "tokens" likewise.
    """
    builder = StatsBuilder()
    for r in records:
        builder.add(r)
    out = builder.result()
    if tokenizer is not None:
        for name, col in out["columns"].items():
            if "chars" not in col:
                continue
            values = [r[name] for r in records if r.get(name) is not None]
            counts: list[int] = []
            for i in range(0, len(values), batch_size):
                counts += [len(ids) for ids in tokenizer.encode_batch(values[i:i + batch_size])]
            col["tokens"] = describe(counts)
    return out


class StatsBuilder:
    """`compute_stats` one record at a time, for data streamed from a file.

    Keeps per column its value types, non-null count and, for strings, each row's
    length (8 bytes a row: the percentiles need them all), never the records.
    """

    def __init__(self) -> None:
        self.rows = 0
        self._cols: dict[str, tuple[set[str], list[int], array]] = {}

    def add(self, record: Record) -> None:
        """Count one record."""
        self.rows += 1
        for name, value in record.items():
            col = self._cols.get(name)
            if col is None:
                col = self._cols[name] = (set(), [0], array("q"))
            if value is None:
                continue
            col[0].add(type(value).__name__)
            col[1][0] += 1
            if isinstance(value, str):
                col[2].append(len(value))

    def columns(self) -> list[str]:
        """Every key seen, in order of first appearance."""
        return list(self._cols)

    def result(self) -> dict[str, Any]:
        """The stats of the records added so far (as `compute_stats` without a tokenizer)."""
        import numpy as np  # only when stats are computed, not for `llmos list`

        out: dict[str, Any] = {"rows": self.rows, "columns": {}}
        for name, (types, non_null, lengths) in self._cols.items():
            col: dict[str, Any] = {"type": _type_name(types), "non_null": non_null[0]}
            if non_null[0] and col["type"] == "str":
                col["chars"] = describe(np.frombuffer(lengths, dtype=np.int64))
            out["columns"][name] = col
        return out


# ---------------------------------------------------------------------------- prep

class PrepResult(dict):
    """{split name: records} as returned by `prep`, plus `.report` (what each step did)."""

    report: dict[str, Any]


def resolve_text_field(records: Sequence[Record], text_field: str | None = None) -> str:
    """The field holding the text: `text_field`, else "text", else the only string column."""
    cols = columns(records)
    if text_field is not None:
        if text_field not in cols:
            raise DataError(f"text_field {text_field!r} is not a column; columns: {cols}",
                            command_line=f"--text-field {text_field}: no such column; "
                                         f"columns: {cols}")
        return text_field
    if "text" in cols:
        return "text"
    strs = [c for c in cols if all(isinstance(r.get(c), str) for r in records if c in r)]
    if len(strs) == 1:
        return strs[0]
    what = f"cannot tell which column holds the text (string columns: {strs or 'none'}); pass"
    raise DataError(f"{what} text_field=", command_line=f"{what} --text-field COLUMN")


def _split_sizes(n: int, split: dict[str, float]) -> dict[str, int]:
    if not split:
        raise DataError("split must name at least one part, e.g. {'train': 0.9, 'val': 0.1}")
    for part, frac in split.items():
        if not isinstance(part, str) or isinstance(frac, bool) or \
                not isinstance(frac, (int, float)) or not 0 < frac <= 1:
            raise DataError(f"split {part!r}: fraction must be a number in (0, 1], got {frac!r}")
    total = sum(split.values())
    if "train" not in split and total < 1 - 1e-6:
        # `--split val=0.1` means "hold out 10%": the rest is the training part.
        split = {"train": 1 - total, **split}
    elif abs(total - 1) > 1e-6:
        raise DataError(f"split fractions must add up to 1, got {total:g}"
                        + ("" if "train" in split else " (or less, leaving the rest to 'train')"))
    # Largest-remainder rounding: sizes add up to n and each is within 1 of frac * n.
    exact = {k: f * n for k, f in split.items()}
    sizes = {k: math.floor(v) for k, v in exact.items()}
    by_remainder = sorted(split, key=lambda k: exact[k] - sizes[k], reverse=True)
    for k in by_remainder[: n - sum(sizes.values())]:
        sizes[k] += 1
    return sizes


def prep(records: Sequence[Record], *, dedupe: bool = False, min_chars: int | None = None,
         max_chars: int | None = None, strip: bool = False, text_field: str | None = None,
         split: dict[str, float] | None = None, seed: int = 0) -> PrepResult:
    """Clean and split records; returns {"all": rows} or {part: rows for each split part}.

    Steps, in order: strip (whitespace around the text), drop rows without text (missing
    or None), drop texts shorter than `min_chars` / longer than `max_chars`, drop exact
    duplicate texts keeping the first (`dedupe`), then shuffle with `seed` and cut by the
    `split` fractions (which add up to 1, or less when there is no "train" part: then
    "train" gets the rest; sizes use largest-remainder rounding).
    The input is not modified. `result.report` counts the rows each step dropped.
    Raises DataError for a non-string text (naming the row) or a bad split.
    """
    text_steps = dedupe or strip or min_chars is not None or max_chars is not None
    report: dict[str, Any] = {"input": len(records), "dropped": {}}
    rows = [dict(r) for r in records]
    if text_steps:
        field = resolve_text_field(rows, text_field)
        report["text_field"] = field
        for i, r in enumerate(rows, 1):
            if r.get(field) is not None and not isinstance(r[field], str):
                raise DataError(f"row {i}: {field!r} must be a string, got "
                                f"{type(r[field]).__name__}")
        if strip:
            report["stripped"] = sum(r[field] != r[field].strip() for r in rows
                                     if r.get(field) is not None)
            for r in rows:
                if r.get(field) is not None:
                    r[field] = r[field].strip()
        steps: list[tuple[str, Callable[[Record], bool]]] = [
            ("missing_text", lambda r: r.get(field) is not None)]
        if min_chars is not None:
            steps.append(("min_chars", lambda r: len(r[field]) >= min_chars))
        if max_chars is not None:
            steps.append(("max_chars", lambda r: len(r[field]) <= max_chars))
        for step, keep in steps:
            kept = [r for r in rows if keep(r)]
            report["dropped"][step], rows = len(rows) - len(kept), kept
        if dedupe:
            seen: set[str] = set()
            kept = [r for r in rows if not (r[field] in seen or seen.add(r[field]))]
            report["dropped"]["duplicates"], rows = len(rows) - len(kept), kept
    report["output"] = len(rows)
    result = PrepResult()
    if split is None:
        result["all"] = rows
    else:
        sizes = _split_sizes(len(rows), split)
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        start = 0
        for part, size in sizes.items():
            result[part] = [rows[i] for i in order[start:start + size]]
            start += size
    report["splits"] = {k: len(v) for k, v in result.items()}
    result.report = report
    return result
