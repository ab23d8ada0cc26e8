"""Constrained decoding to JSON: every sampled token keeps the text a valid JSON prefix.

`JsonState` is a byte-level pushdown recognizer of JSON (RFC 8259) whose top value must
be an object, as OpenAI's `response_format: {"type": "json_object"}` asks. A sequence
carries one; before a token is accepted its bytes are fed to a copy of the state, and a
token that would break the JSON is masked and the next choice drawn (rejection sampling:
exactly the model's distribution restricted to the tokens that keep the JSON valid).
When the object closes, the sequence ends. Special tokens (end of turn included) are never
valid inside the JSON.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

WHITESPACE = frozenset(b" \t\n\r")
MAX_WHITESPACE_RUN = 16  # more blank bytes in a row are refused, so a model cannot stall
DIGITS = frozenset(b"0123456789")
LITERALS = {ord("t"): b"rue", ord("f"): b"alse", ord("n"): b"ull"}
HEX = frozenset(b"0123456789abcdefABCDEF")
ESCAPES = frozenset(b'"\\/bfnrtu')

# Modes: what the recognizer expects next.
VALUE, KEY_OR_END, KEY, COLON, AFTER_VALUE, VALUE_OR_END = range(6)
IN_STRING, IN_ESCAPE, IN_UNICODE, IN_NUMBER, IN_LITERAL, DONE = range(6, 12)
# Number sub-states (accepting: ZERO, INT, FRAC, EXP_DIGITS).
N_SIGN, N_ZERO, N_INT, N_DOT, N_FRAC, N_EXP, N_EXP_SIGN, N_EXP_DIGITS = range(8)
NUMBER_ENDS = frozenset({N_ZERO, N_INT, N_FRAC, N_EXP_DIGITS})


@dataclass
class JsonState:
    """Where a JSON text stands after the bytes fed so far (copy with `copy`)."""

    mode: int = VALUE
    stack: list[int] = field(default_factory=list)  # ord("{") / ord("[") of open containers
    string_is_key: bool = False
    pending: bytes = b""  # the rest of a literal, or hex digits left in a \\u escape
    number: int = N_SIGN
    blanks: int = 0
    top_object: bool = True  # the first value must be an object

    def copy(self) -> JsonState:
        """An independent copy (the stack is the only mutable part)."""
        return JsonState(self.mode, list(self.stack), self.string_is_key, self.pending,
                         self.number, self.blanks, self.top_object)

    @property
    def done(self) -> bool:
        """True once the top value is complete."""
        return self.mode == DONE

    def feed(self, data: bytes) -> bool:
        """Advance over `data`; False (state then undefined) when it breaks the JSON."""
        return all(self._byte(b) for b in data)

    # --- one byte -----------------------------------------------------------------------

    def _byte(self, b: int) -> bool:
        mode = self.mode
        if mode == IN_STRING:
            if b == 0x22:  # closing quote
                self.mode = COLON if self.string_is_key else AFTER_VALUE
                return True
            if b == 0x5C:
                self.mode = IN_ESCAPE
                return True
            return b >= 0x20  # control characters must be escaped
        if mode == IN_ESCAPE:
            if b not in ESCAPES:
                return False
            self.mode, self.pending = (IN_UNICODE, b"0000") if b == ord("u") else (IN_STRING, b"")
            return True
        if mode == IN_UNICODE:
            if b not in HEX:
                return False
            self.pending = self.pending[1:]
            if not self.pending:
                self.mode = IN_STRING
            return True
        if mode == IN_LITERAL:
            if not self.pending or b != self.pending[0]:
                return False
            self.pending = self.pending[1:]
            if not self.pending:
                self._end_value()
            return True
        if mode == IN_NUMBER:
            if self._number_byte(b):
                return True
            if self.number not in NUMBER_ENDS:
                return False
            self._end_value()  # the number ended; this byte belongs to what follows
            return self._byte(b)
        if b in WHITESPACE:
            if mode == DONE or self.blanks >= MAX_WHITESPACE_RUN:
                return False
            self.blanks += 1
            return True
        self.blanks = 0
        if mode == DONE:
            return False
        if mode in (VALUE, VALUE_OR_END):
            if mode == VALUE_OR_END and b == ord("]"):
                return self._close(ord("["))
            return self._start_value(b)
        if mode in (KEY_OR_END, KEY):
            if mode == KEY_OR_END and b == ord("}"):
                return self._close(ord("{"))
            if b != 0x22:
                return False
            self.mode, self.string_is_key = IN_STRING, True
            return True
        if mode == COLON:
            if b != ord(":"):
                return False
            self.mode = VALUE
            return True
        # AFTER_VALUE: a comma or the container's end
        top = self.stack[-1]
        if b == ord(","):
            self.mode = KEY if top == ord("{") else VALUE
            return True
        if b == (ord("}") if top == ord("{") else ord("]")):
            return self._close(top)
        return False

    def _start_value(self, b: int) -> bool:
        if self.top_object:
            if b != ord("{"):
                return False
            self.top_object = False
        if b in (ord("{"), ord("[")):
            self.stack.append(b)
            self.mode = KEY_OR_END if b == ord("{") else VALUE_OR_END
            return True
        if b == 0x22:
            self.mode, self.string_is_key = IN_STRING, False
            return True
        if b in LITERALS:
            self.mode, self.pending = IN_LITERAL, LITERALS[b]
            return True
        if b == ord("-") or b in DIGITS:
            self.mode = IN_NUMBER
            self.number = N_SIGN if b == ord("-") else (N_ZERO if b == ord("0") else N_INT)
            return True
        return False

    def _number_byte(self, b: int) -> bool:
        n = self.number
        nxt = None
        if b in DIGITS:
            nxt = {N_SIGN: N_ZERO if b == ord("0") else N_INT, N_INT: N_INT, N_DOT: N_FRAC,
                   N_FRAC: N_FRAC, N_EXP: N_EXP_DIGITS, N_EXP_SIGN: N_EXP_DIGITS,
                   N_EXP_DIGITS: N_EXP_DIGITS}.get(n)
        elif b == ord("."):
            nxt = N_DOT if n in (N_ZERO, N_INT) else None
        elif b in (ord("e"), ord("E")):
            nxt = N_EXP if n in (N_ZERO, N_INT, N_FRAC) else None
        elif b in (ord("+"), ord("-")):
            nxt = N_EXP_SIGN if n == N_EXP else None
        if nxt is None:
            return False
        self.number = nxt
        return True

    def _close(self, opener: int) -> bool:
        if not self.stack or self.stack[-1] != opener:
            return False
        self.stack.pop()
        self._end_value()
        return True

    def _end_value(self) -> None:
        self.mode = AFTER_VALUE if self.stack else DONE


class JsonConstraint:
    """The JSON constraint of one sequence: `allows(token)` checks a candidate, `take`
    advances over the chosen one."""

    def __init__(self, token_bytes: list[bytes | None]) -> None:
        self.token_bytes = token_bytes  # None for special tokens: never allowed
        self.state = JsonState()

    @property
    def done(self) -> bool:
        """True once the JSON object is complete."""
        return self.state.done

    def allows(self, token: int) -> bool:
        """Whether `token` keeps the text a valid JSON prefix."""
        data = self.token_bytes[token] if 0 <= token < len(self.token_bytes) else None
        return bool(data) and self.state.copy().feed(data)

    def take(self, token: int) -> None:
        """Advance over an allowed token."""
        self.state.feed(self.token_bytes[token] or b"")


_VOCAB_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def vocabulary_bytes(tokenizer) -> list[bytes | None]:  # noqa: ANN001 - our Tokenizer
    """Each id's bytes, None for special tokens (computed once per tokenizer)."""
    cached = _VOCAB_BYTES.get(tokenizer)
    if cached is not None:
        return cached
    special = set(tokenizer.special_tokens.values()) | set(tokenizer.stop_ids)
    out: list[bytes | None] = []
    for i in range(tokenizer.vocab_size):
        if i in special:
            out.append(None)
            continue
        try:
            out.append(tokenizer.token_bytes(i))
        except (KeyError, ValueError):
            out.append(None)
    _VOCAB_BYTES[tokenizer] = out
    return out
