"""Training examples from dataset rows: the three data kinds, masking, order, batches.

Kinds (chosen by the columns, overridable by naming fields):
  instruction  `prompt` / `response` fields: the model's chat template renders the pair
               as a user turn and an assistant turn; loss only on the answer's tokens.
  chat         a `messages` field (list of {"role", "content"}): loss on every assistant
               turn's tokens.
  text         a single text column (or `text_field`): documents joined with EOS and cut
               into packed chunks of seq_len tokens; loss on every token.

An example is (ids, targets) of equal length, targets[t] the token after ids[t] or
IGNORE_INDEX where no loss is taken. Every check (fields, empty data, lengths) happens
here, before a step runs.

The order of examples is a function of (seed, epoch) only, and `DataOrder` keeps the
position (epoch, cursor) that a checkpoint stores, so a resumed run sees the same
batches as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmos_jupyter.engine.loss import IGNORE_INDEX
from llmos_jupyter.errors import DataError

KINDS = ("instruction", "chat", "text")
Example = tuple[list[int], list[int]]
EncodeChat = Callable[[list[dict[str, Any]], bool], list[int]]


@dataclass(frozen=True)
class DataFields:
    """Which kind the data is and which fields hold it."""

    kind: str
    text: str | None = None
    prompt: str | None = None
    response: str | None = None
    messages: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


def detect_fields(
    name: str, columns: Sequence[str], text_field: str | None = None,
    prompt_field: str | None = None, response_field: str | None = None,
) -> DataFields:
    """The data kind of a dataset with `columns`; named fields override the defaults.

    Raises DataError naming the dataset, the missing field(s) and the columns it has.
    """
    cols = list(columns)

    def need(*fields: str) -> None:
        missing = [f for f in fields if f not in cols]
        if missing:
            raise DataError(
                f"dataset {name!r} has no field(s) {missing}; its columns are {cols}. Name "
                "the fields with --text-field, or --prompt-field and --response-field"
            )

    if text_field:
        need(text_field)
        return DataFields("text", text=text_field)
    if prompt_field or response_field:
        p, r = prompt_field or "prompt", response_field or "response"
        need(p, r)
        return DataFields("instruction", prompt=p, response=r)
    if "prompt" in cols and "response" in cols:
        return DataFields("instruction", prompt="prompt", response="response")
    if "messages" in cols:
        return DataFields("chat", messages="messages")
    if len(cols) == 1:
        return DataFields("text", text=cols[0])
    if "text" in cols:
        return DataFields("text", text="text")
    raise DataError(
        f"dataset {name!r} (columns {cols}) is not instruction (prompt/response), chat "
        "(messages) or single-column text data; name the fields with --text-field, or "
        "--prompt-field and --response-field"
    )


def _shifted(ids: list[int], counted_from: list[bool]) -> Example:
    """(ids[:-1], ids[1:]) with targets masked where counted_from[t + 1] is False."""
    targets = [tok if counted_from[t + 1] else IGNORE_INDEX for t, tok in enumerate(ids[1:])]
    return ids[:-1], targets


def _prefix_len(prefix: list[int], full: list[int], name: str, row: int) -> int:
    if full[:len(prefix)] != prefix:
        raise DataError(
            f"dataset {name!r} row {row}: the chat template renders the answer so that the "
            "prompt's tokens change; this template cannot mask the prompt (use text data)"
        )
    return len(prefix)


def build_examples(
    name: str, rows: list[dict[str, Any]], fields: DataFields, encode_text: Callable[[str],
    list[int]], encode_chat: EncodeChat, eos_id: int | None, seq_len: int,
) -> list[Example]:
    """Examples of every row (see the module docstring for the kinds).

    encode_text(text) -> ids without special tokens; encode_chat(messages,
    add_generation_prompt) -> ids rendered with the model's chat template.
    Raises DataError for empty data, a row without the fields or with a wrong type, an
    example longer than seq_len, or data without a single token to learn from.
    """
    if not rows:
        raise DataError(f"dataset {name!r} is empty; add rows before training on it")
    examples: list[Example] = []
    if fields.kind == "text":
        stream: list[int] = []
        for i, row in enumerate(rows):
            text = row.get(fields.text)
            if not isinstance(text, str):
                raise DataError(f"dataset {name!r} row {i}: field {fields.text!r} is "
                                f"{type(text).__name__}, not text")
            if text.strip():  # blank documents teach nothing but EOS
                stream += encode_text(text) + ([eos_id] if eos_id is not None else [])
        if len(stream) < 2:
            raise DataError(f"dataset {name!r} has no text to learn from: its "
                            f"{fields.text!r} fields are empty or blank")
        # Packed chunks of seq_len inputs; chunk k's last target is chunk k+1's first input.
        for start in range(0, max(len(stream) - 1, 0), seq_len):
            window = stream[start:start + seq_len + 1]
            if len(window) >= 2:
                examples.append((window[:-1], window[1:]))
    else:
        for i, row in enumerate(rows):
            ex = _chat_example(name, i, row, fields, encode_chat)
            if len(ex[0]) > seq_len:
                raise DataError(
                    f"dataset {name!r} row {i} is {len(ex[0]) + 1} tokens long, more than "
                    f"seq_len={seq_len}; raise seq_len (up to the model's context) or "
                    "shorten the row"
                )
            examples.append(ex)
    if not any(t != IGNORE_INDEX for _, targets in examples for t in targets):
        raise DataError(f"dataset {name!r} gives no tokens to learn from (empty texts or answers)")
    return examples


def _chat_example(name: str, i: int, row: dict[str, Any], fields: DataFields,
                  encode_chat: EncodeChat) -> Example:
    if fields.kind == "instruction":
        prompt, response = row.get(fields.prompt), row.get(fields.response)
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise DataError(f"dataset {name!r} row {i}: fields {fields.prompt!r} and "
                            f"{fields.response!r} must both be text")
        messages = [{"role": "user", "content": prompt},
                    {"role": "assistant", "content": response}]
    else:
        messages = row.get(fields.messages)
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise DataError(f"dataset {name!r} row {i}: field {fields.messages!r} must be a "
                            "list of {'role', 'content'} messages")
        if not any(m.get("role") == "assistant" for m in messages):
            raise DataError(f"dataset {name!r} row {i}: no assistant message to learn from")
    try:
        full = encode_chat(messages, False)
        counted = [False] * len(full)
        for k, m in enumerate(messages):
            if m.get("role") != "assistant":
                continue
            start = _prefix_len(encode_chat(messages[:k], True), full, name, i) if k else 0
            end = _prefix_len(encode_chat(messages[:k + 1], False), full, name, i)
            counted[start:end] = [True] * (end - start)
    except ValueError as e:  # PromptError from the template: a malformed message
        if isinstance(e, DataError):
            raise
        raise DataError(f"dataset {name!r} row {i}: {e}") from None
    return _shifted(full, counted)


class DataOrder:
    """Example indices in a seeded order that depends only on (seed, epoch).

    `take(n)` returns the next n indices, moving into the next epoch's order as needed;
    `state_dict()` / `load_state_dict()` save and restore the position exactly.
    """

    def __init__(self, n_examples: int, seed: int) -> None:
        self.n, self.seed = n_examples, seed
        self.epoch, self.cursor = 0, 0
        self._perm = self._order(0)

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            if self.cursor >= self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._perm = self._order(self.epoch)
            k = min(count - len(out), self.n - self.cursor)
            out += self._perm[self.cursor:self.cursor + k]
            self.cursor += k
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "n": self.n, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["n"] != self.n or state["seed"] != self.seed:
            raise DataError("the checkpoint was written for other data (example count or "
                            "seed differ); resume with the run's own dataset")
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._perm = self._order(self.epoch)


def collate(examples: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad examples to one length: ids [B, L] (pad_id), targets [B, L] (IGNORE_INDEX)."""
    L = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), L), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), L), IGNORE_INDEX, dtype=torch.long)
    for b, (x, y) in enumerate(examples):
        ids[b, :len(x)] = torch.tensor(x, dtype=torch.long)
        targets[b, :len(y)] = torch.tensor(y, dtype=torch.long)
    return ids, targets
