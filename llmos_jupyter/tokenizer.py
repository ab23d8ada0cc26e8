"""Tokenizers: tiktoken Encodings built from a model's own byte-level BPE.

A checkpoint describes its tokenizer as a `TokenizerSpec` (tokens, merges, pre-tokenizer
family, special tokens). `Tokenizer.from_spec` turns that into a `tiktoken.Encoding`
whose output ids are exactly the original tokenizer's (Hugging Face `tokenizers`,
llama.cpp). Nothing is ever downloaded: the ranks come from the spec.

Why tiktoken can reproduce a merge-list BPE, and where it cannot:
- tiktoken merges the adjacent pair whose *concatenation* has the lowest rank; HF merges
  the adjacent *pair* with the lowest merge index. Ranking each token by the index of the
  merge that creates it makes the two agree when every token has one merge and no other
  way to be glued from two tokens. Usually token id order == merge order, so ranks are the
  ids; when not, ranks follow merge order and are mapped back to ids after encoding.
- tiktoken returns a whole pre-token piece that is itself a token without running BPE;
  HF does that only with `ignore_merges` (llama3). `bpe_conflicts` audits a vocabulary
  for tokens where this matters (SmolLM2: none; tests check it).
- Some vocabularies lack a few byte tokens (SmolLM2 has no token for bytes such as 0x04);
  HF silently drops such bytes *before* merging, so a text containing them takes a slow
  path: pieces split by the same regex in Python, the bytes removed, merges by rank.
"""

from __future__ import annotations

import codecs
import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import tiktoken

from llmos_jupyter.chat_template import encode_chat, render_chat_template
from llmos_jupyter.core.tokenizer_spec import IGNORE_MERGES_PRE, TokenizerSpec, split_pattern
from llmos_jupyter.errors import CheckpointError

log = logging.getLogger(__name__)

# GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
SPECIAL_TOKEN_TYPES = frozenset({3, 4})
# Tokens that end a turn or a document: generation stops on any of them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>",
                      "<|eom_id|>", "<|end|>", "<end_of_turn>")


# ---- GPT-2's byte <-> printable character alphabet ----------------------------------------
@functools.cache
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's map of each byte to a printable character (token strings are spelled in it)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):  # the rest (controls, space, ...) go to 256 upwards, in order
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


@functools.cache
def unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_to_unicode().items()}


def token_to_bytes(token: str) -> bytes:
    """Bytes of a byte-level token string ("Ġthe" -> b" the"); KeyError if not in the alphabet."""
    table = unicode_to_byte()
    return bytes(table[c] for c in token)


# ---- from a spec to tiktoken ranks --------------------------------------------------------
@dataclass(frozen=True)
class BpeTables:
    """What `Tokenizer` needs from a spec, computed once.

    `ranks` feeds tiktoken. `rank_to_id` is None when ranks are the model's ids, else a
    list mapping a tiktoken rank (or special id) back to the id. `merge_ranks` (pair of
    byte strings -> merge index) drives the slow path and `bpe_conflicts`.
    """

    ranks: dict[bytes, int]
    rank_to_id: list[int] | None
    id_bytes: list[bytes]
    specials: dict[str, int]
    merge_ranks: dict[tuple[bytes, bytes], int]
    missing_bytes: bytes  # byte values without a token: dropped, as HF does


def build_tables(spec: TokenizerSpec) -> BpeTables:
    """Turn a spec's tokens and merges into tiktoken ranks. Raises CheckpointError."""
    n = len(spec.tokens)
    types = spec.token_types or [1] * n
    if len(types) != n:
        raise CheckpointError(f"tokenizer has {n} tokens but {len(types)} token types")
    id_bytes: list[bytes] = []
    specials: dict[str, int] = {}
    normal: dict[bytes, int] = {}  # bytes -> lowest id of a normal token with them
    for i, (tok, kind) in enumerate(zip(spec.tokens, types, strict=True)):
        if kind in SPECIAL_TOKEN_TYPES:
            id_bytes.append(tok.encode("utf-8"))
            if tok:
                specials.setdefault(tok, i)
            continue
        try:
            raw = token_to_bytes(tok)
        except KeyError:  # e.g. "[PAD7]" fillers: decodable as text, never produced by BPE
            id_bytes.append(tok.encode("utf-8"))
            continue
        id_bytes.append(raw)
        normal.setdefault(raw, i)

    merge_ranks: dict[tuple[bytes, bytes], int] = {}
    first_merge: dict[int, int] = {}  # token id -> index of the first merge producing it
    for k, merge in enumerate(spec.merges):
        parts = merge.split(" ")
        try:
            left, right = (token_to_bytes(p) for p in parts)
        except (KeyError, ValueError):
            raise CheckpointError(f"merge {k} {merge!r} is not two byte-level tokens") from None
        if left not in normal or right not in normal or left + right not in normal:
            raise CheckpointError(f"merge {k} {merge!r} uses or makes a token not in the vocab")
        merge_ranks.setdefault((left, right), k)
        first_merge.setdefault(normal[left + right], k)

    # Only bytes and merge products can come out of BPE; other normal tokens stay out of
    # tiktoken's table, or its whole-piece shortcut would produce them.
    singles = {raw: i for raw, i in normal.items() if len(raw) == 1}
    products = sorted(first_merge, key=first_merge.__getitem__)  # ids in merge order
    in_order = all(a < b for a, b in itertools.pairwise(products))
    if in_order:
        ranks = {**{raw: i for raw, i in singles.items()}, **{id_bytes[i]: i for i in products}}
        rank_to_id = None
    else:
        # Ranks past every id, so they never collide with special ids: bytes first, then
        # merge products in merge order.
        log.info("token ids are not in merge order: ranking by merges and mapping back")
        ranks = {raw: n + raw[0] for raw in singles}
        ranks.update({id_bytes[i]: n + 256 + r for r, i in enumerate(products)})
        rank_to_id = list(range(n)) + [-1] * (256 + len(products))
        for raw, i in singles.items():
            rank_to_id[n + raw[0]] = i
        for r, i in enumerate(products):
            rank_to_id[n + 256 + r] = i
    missing = bytes(b for b in range(256) if bytes([b]) not in singles)
    return BpeTables(ranks, rank_to_id, id_bytes, specials, merge_ranks, missing)


def _bpe(piece: bytes, rank_of: Callable[[bytes, bytes], int | None]) -> list[bytes]:
    """Repeatedly join the adjacent pair with the lowest rank (leftmost on ties)."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            rank = rank_of(parts[i], parts[i + 1])
            if rank is not None and (best is None or rank < best):
                best, at = rank, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return parts


def bpe_by_merge_rank(piece: bytes, merge_ranks: dict[tuple[bytes, bytes], int]) -> list[bytes]:
    """Merge-list BPE as HF/llama.cpp run it: the pair with the lowest merge index joins
    first. Slow pure Python: reference and rare paths."""
    return _bpe(piece, lambda a, b: merge_ranks.get((a, b)))


def bpe_by_token_rank(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """tiktoken's rule in Python, without its whole-piece shortcut: the pair whose
    concatenation has the lowest token rank joins first."""
    return _bpe(piece, lambda a, b: ranks.get(a + b))


def bpe_conflicts(tables: BpeTables, whole_piece_shortcut: bool = False) -> list[bytes]:
    """Tokens whose own bytes, as one pre-token piece, tiktoken would encode differently
    from the merge list (sorted; empty means no such token).

    Without the shortcut in the original tokenizer, tiktoken returns such a piece as the
    token while the merges may never reach it. With it (llama3), both return the token,
    so this compares the merge paths instead (a proxy for longer pieces). Pure Python,
    a few seconds for a 50k vocabulary: an audit for tests and tools, not for loading.
    """
    bad = []
    for raw in tables.ranks:
        if len(raw) < 2:
            continue
        merged = bpe_by_merge_rank(raw, tables.merge_ranks)
        if whole_piece_shortcut:
            if merged != bpe_by_token_rank(raw, tables.ranks):
                bad.append(raw)
        elif merged != [raw]:
            bad.append(raw)
    return sorted(bad)


# ---- the tokenizer -----------------------------------------------------------------------
class Tokenizer:
    """A model's tokenizer: encode/decode with the original ids, chat templates, stop ids.

    Build with `Tokenizer.from_spec(spec)`. Encoding runs in tiktoken (Rust, threaded in
    batches); decoding joins per-token bytes.
    """

    def __init__(self, spec: TokenizerSpec, tables: BpeTables, pattern: str):
        self.spec = spec
        self._tables = tables
        self._pattern = pattern
        self._encoding = tiktoken.Encoding(
            f"llmos-{spec.pre}-{len(spec.tokens)}",
            pat_str=pattern,
            mergeable_ranks=tables.ranks,
            special_tokens=tables.specials,
        )
        self._all_special = frozenset(tables.specials)
        self._whole_piece_shortcut = spec.pre.lower() in IGNORE_MERGES_PRE

    @classmethod
    def from_spec(cls, spec: TokenizerSpec) -> Tokenizer:
        """Build the tokenizer a checkpoint describes. Raises CheckpointError on a bad spec."""
        return cls(spec, build_tables(spec), split_pattern(spec.pre))

    # -- encoding --------------------------------------------------------------------------
    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Token ids of `text` (no BOS added; see `add_bos`).

        Special-token text such as "<|im_start|>" is encoded as ordinary text unless
        `allow_special`, so user data cannot inject control tokens.
        """
        if self._needs_slow_path(text):
            return self._encode_slow(text, allow_special)
        ranks = self._encoding.encode(
            text, allowed_special=self._allowed(allow_special), disallowed_special=())
        return self._to_ids(ranks)

    def encode_batch(self, texts: Iterable[str], allow_special: bool = False) -> list[list[int]]:
        """`encode` of each text, the common case in tiktoken's thread pool."""
        texts = list(texts)
        slow = [self._needs_slow_path(t) for t in texts]
        fast = [t for t, s in zip(texts, slow, strict=True) if not s]
        out = iter(self._encoding.encode_batch(
            fast, allowed_special=self._allowed(allow_special), disallowed_special=()))
        return [self._encode_slow(t, allow_special) if s else self._to_ids(next(out))
                for t, s in zip(texts, slow, strict=True)]

    def _allowed(self, allow_special: bool) -> frozenset[str]:
        return self._all_special if allow_special else frozenset()

    def _to_ids(self, ranks: list[int]) -> list[int]:
        table = self._tables.rank_to_id
        return ranks if table is None else [table[r] for r in ranks]

    def _needs_slow_path(self, text: str) -> bool:
        # Only texts with a byte the vocabulary lacks (rare control characters) go slow.
        missing = self._tables.missing_bytes
        if not missing:
            return False
        raw = text.encode("utf-8", "replace")
        return len(raw.translate(None, missing)) != len(raw)

    def _encode_slow(self, text: str, allow_special: bool) -> list[int]:
        """Split and merge in Python, dropping bytes that have no token (as HF does)."""
        import regex  # tiktoken's own dependency; same dialect for these patterns

        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        pieces = self._compiled_pattern
        chunks: list[str] = [text]
        if allow_special and self._all_special:
            alternatives = sorted(self._all_special, key=len, reverse=True)
            chunks = regex.split("(" + "|".join(map(regex.escape, alternatives)) + ")", text)
        ids: list[int] = []
        ranks, missing = self._tables.ranks, self._tables.missing_bytes
        for n, chunk in enumerate(chunks):
            if n % 2 == 1:  # a captured special token
                ids.append(self._tables.specials[chunk])
                continue
            for match in pieces.finditer(chunk):
                raw = match.group().encode("utf-8").translate(None, missing)
                if not raw:
                    continue
                if self._whole_piece_shortcut and raw in ranks:
                    parts = [raw]
                else:
                    parts = bpe_by_merge_rank(raw, self._tables.merge_ranks)
                ids.extend(self._to_ids([ranks[p] for p in parts]))
        return ids

    @functools.cached_property
    def _compiled_pattern(self) -> Any:
        import regex

        return regex.compile(self._pattern)

    # -- decoding --------------------------------------------------------------------------
    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Concatenated bytes of `ids` (may end inside a UTF-8 character). ValueError on a
        bad id."""
        if hasattr(ids, "tolist"):  # numpy arrays and torch tensors
            ids = ids.tolist()
        table = self._tables.id_bytes
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or not 0 <= i < len(table))
            raise ValueError(f"token id {bad!r} is not in this vocabulary of {len(table)}") \
                from None

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (a special token's text as UTF-8)."""
        return self.decode_bytes([token_id])

    # -- vocabulary facts ------------------------------------------------------------------
    @property
    def encoding(self) -> tiktoken.Encoding:
        """The tiktoken Encoding. Its ids are the model's ids unless the vocabulary's ids
        are not in merge order (then use `encode`, which maps them back)."""
        return self._encoding

    @property
    def vocab_size(self) -> int:
        return len(self.spec.tokens)

    @property
    def bos_id(self) -> int | None:
        return self.spec.bos_id

    @property
    def eos_id(self) -> int | None:
        return self.spec.eos_id

    @property
    def pad_id(self) -> int | None:
        """The padding id; EOS when the model names none (the usual convention)."""
        return self.spec.pad_id if self.spec.pad_id is not None else self.spec.eos_id

    @property
    def add_bos(self) -> bool:
        """Whether a prompt should start with BOS (the caller prepends `bos_id`)."""
        return self.spec.add_bos

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._tables.specials)

    @functools.cached_property
    def stop_ids(self) -> frozenset[int]:
        """EOS plus every end-of-turn/end-of-text token this vocabulary has."""
        ids = {self._tables.specials[t] for t in END_OF_TURN_TOKENS if t in self._tables.specials}
        if self.eos_id is not None:
            ids.add(self.eos_id)
        return frozenset(ids)

    def _token_text(self, token_id: int | None) -> str:
        return "" if token_id is None else self.decode([token_id])

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            **extra: Any) -> str:
        """Render a conversation with the model's chat template (ChatML if it has none).

        Raises PromptError (a ValueError) naming the index of a malformed message.
        """
        return render_chat_template(
            self.spec.chat_template, messages, add_generation_prompt=add_generation_prompt,
            bos_token=self._token_text(self.bos_id), eos_token=self._token_text(self.eos_id),
            **extra)

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """Ids of a conversation rendered with the chat template (ChatML if none).

        Only the template's own text becomes control tokens; every string from the
        messages is encoded with special tokens disallowed, whatever the template does
        (see `chat_template.encode_chat`). Raises PromptError for a malformed conversation
        or a template that builds control tokens out of message text.
        """
        return encode_chat(
            self.spec.chat_template, messages, self._tables.specials,
            lambda text: self.encode(text, allow_special=False),
            add_generation_prompt=add_generation_prompt,
            bos_token=self._token_text(self.bos_id), eos_token=self._token_text(self.eos_id))


class StreamDecoder:
    """Incremental detokenizer: text as tokens arrive, never half a UTF-8 character.

    A character split across tokens (CJK, emoji) is held back until its last byte arrives;
    invalid bytes become U+FFFD as soon as they are known to be invalid.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Feed one token; return the text it completed (possibly "")."""
        return self._utf8.decode(self._tokenizer.token_bytes(token_id), final=False)

    def flush(self) -> str:
        """End of stream: return whatever is held back (incomplete bytes as U+FFFD)."""
        return self._utf8.decode(b"", final=True)
