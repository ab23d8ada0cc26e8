"""Task outputs: how to read a model's answer (OutputSpec) and the readers for each type.

An answer is plain text, a JSON object (`parse_json_output`, tolerant of code fences,
prose, trailing commas and Python-style literals that small models write) or one of a set
of labels (`normalize_choice`). An answer that does not fit is an OutputFormatError, which
the executor may retry.

Run-time label and key sets: `output: {type: choice, labels_from: labels}` takes the
choice set from the input `labels`, a comma-separated list (`OutputSpec.choice_labels`);
`output: {type: json, required_from: fields}` does the same for required JSON keys
(`OutputSpec.required_keys`).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmos_jupyter.errors import DataError, LLMOSError

OUTPUT_FIELDS = ("type", "required", "required_from", "retries", "labels", "labels_from")
OUTPUT_TYPES = ("text", "json", "choice")


def split_list(value: Any) -> list[str]:
    """Items of a comma- or newline-separated string (or a list), stripped, deduplicated."""
    items = value if isinstance(value, list) else re.split(r"[,\n]", str(value or ""))
    return list(dict.fromkeys(s for s in (str(v).strip() for v in items) if s))


@dataclass
class OutputSpec:
    """How to read a model's answer: plain text, a JSON object, or one of some labels."""

    type: str = "text"
    required: list[str] = field(default_factory=list)  # json: keys the object must have
    required_from: str | None = None  # json: input whose comma-separated value adds keys
    retries: int = 2  # json: new attempts after an answer that does not parse
    labels: list[str] = field(default_factory=list)  # choice: the fixed label set
    labels_from: str | None = None  # choice: input whose comma-separated value is the set

    def choice_labels(self, values: Mapping[str, Any]) -> list[str]:
        """The label set for one run: `labels`, or the split value of `labels_from`."""
        if self.labels_from is None:
            return list(self.labels)
        labels = split_list(values.get(self.labels_from))
        if not labels:
            raise DataError(f"input {self.labels_from!r} must list the labels, e.g. "
                            "'positive, negative'")
        return labels

    def required_keys(self, values: Mapping[str, Any]) -> list[str]:
        """Required JSON keys for one run: `required` plus the split `required_from` value."""
        extra = split_list(values.get(self.required_from)) if self.required_from else []
        return list(dict.fromkeys(self.required + extra))

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: only the fields that mean something for this type."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "json":
            if self.required:
                out["required"] = list(self.required)
            if self.required_from:
                out["required_from"] = self.required_from
            out["retries"] = self.retries
        if self.type == "choice":
            if self.labels:
                out["labels"] = list(self.labels)
            if self.labels_from:
                out["labels_from"] = self.labels_from
        return out


class OutputFormatError(LLMOSError, ValueError):
    """A model's answer does not have the declared output form; the executor may retry.

    `missing` lists required JSON keys the answer lacked (empty when no object was found).
    """

    def __init__(self, msg: str, missing: Iterable[str] = ()):
        super().__init__(msg)
        self.missing = list(missing)


def _json_candidates(text: str, limit: int = 64) -> Iterable[str]:
    """Balanced {...} spans of `text`, outermost first, skipping braces inside strings."""
    start = text.find("{")
    while start >= 0 and limit > 0:
        limit -= 1
        depth, quote, escaped = 0, None, False
        for i in range(start, len(text)):
            c = text[i]
            if quote:
                escaped, quote = (not escaped and c == "\\"), (None if c == quote and
                                                              not escaped else quote)
            elif c in "\"'":
                quote = c
            elif c in "{}":
                depth += 1 if c == "{" else -1
                if depth == 0:
                    yield text[start:i + 1]
                    break
        start = text.find("{", start + 1)


def _loads_lenient(candidate: str) -> Any:
    """json.loads, then with trailing commas dropped, then as a Python literal
    (small models write {'a': 1} and True); literal_eval evaluates no code."""
    attempts = (lambda: json.loads(candidate),
                lambda: json.loads(re.sub(r",\s*([}\]])", r"\1", candidate)),
                lambda: ast.literal_eval(candidate))
    for attempt in attempts:
        try:
            return attempt()
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            continue
    return None


def parse_json_output(text: str, required: Iterable[str] = ()) -> dict[str, Any]:
    """The first JSON object in a model's answer, tolerating code fences and prose around it.

    Prefers the first object that has every `required` key. Raises OutputFormatError when
    no object parses, or naming the required keys the first object lacks.
    """
    required = list(required)
    first = None
    for candidate in _json_candidates(text):
        obj = _loads_lenient(candidate)
        if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
            continue
        if all(k in obj for k in required):
            return obj
        first = first or obj
    if first is None:
        raise OutputFormatError("no JSON object found in the answer; expected {...}"
                                + (f" with keys {', '.join(required)}" if required else ""),
                                missing=())
    missing = [k for k in required if k not in first]
    raise OutputFormatError(f"JSON answer is missing required keys: {', '.join(missing)}",
                            missing=missing)


def normalize_choice(text: str, labels: Iterable[str]) -> str | None:
    """The label a model's answer picks, or None when it picks none (or is ambiguous).

    Case and surrounding quotes/punctuation are ignored; "Answer: Positive." picks
    "positive"; otherwise the label the answer starts with, else the only label named.
    """
    labels = list(labels)
    norm = lambda s: " ".join(s.strip().strip("\"'`*_.:;!,()[]{}<> \n").split()).casefold()
    by_norm = {norm(label): label for label in labels}
    answer = norm(text)
    answer = norm(re.sub(r"^(answer|label|category|class|output)\s*[:\-]", "", answer))
    if answer in by_norm:
        return by_norm[answer]
    first_line = norm(answer.split("\n")[0])
    if first_line in by_norm:
        return by_norm[first_line]
    word = lambda lab: re.compile(rf"(?<!\w){re.escape(lab)}(?!\w)")
    for lab in sorted(by_norm, key=len, reverse=True):
        if lab and word(lab).match(answer):
            return by_norm[lab]
    named = [lab for lab in by_norm if lab and word(lab).search(answer)]
    return by_norm[named[0]] if len(named) == 1 else None
