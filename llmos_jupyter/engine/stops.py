"""Stop strings over streamed text: cut before the stop, never leak a part of it.

Text arrives in pieces (one per token, from the tokenizer's StreamDecoder). A stop string
can span several pieces, so text that might be the start of a stop string is held back
until the next piece shows whether it is one. When the row ends for another reason the
held-back text is released: it was not a stop string after all.
"""

from __future__ import annotations


def held_back(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        # Only suffixes shorter than the stop can be its proper prefix.
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class StopText:
    """The text of one row as it streams: accumulates pieces and watches for stop strings.

    `feed(piece)` returns the text that is now safe to show (possibly ""), and sets
    `stopped` once a stop string appears; after that, `text` is cut just before the
    earliest stop string and nothing more is accepted. `finish(tail)` adds the decoder's
    final bytes and returns everything not shown yet.
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.max_stop = max((len(s) for s in self.stops), default=0)
        self.text = ""
        self.shown = 0  # characters of `text` already returned to the caller
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add a decoded piece; return the part of the text that can be shown now."""
        if self.stopped or not piece:
            return ""
        # A new stop can only end inside the new piece, so search from just before it.
        start = max(0, len(self.text) - self.max_stop + 1)
        self.text += piece
        if self.stops:
            cut = self._find_stop(start)
            if cut >= 0:
                self.text = self.text[:cut]
                self.stopped = True
                return self._show(len(self.text))
            return self._show(len(self.text) - held_back(self.text, self.stops))
        return self._show(len(self.text))

    def finish(self, tail: str = "") -> str:
        """Add the decoder's flushed tail; return all text not shown yet (stop-cut)."""
        out = self.feed(tail)
        if self.stopped:
            return out
        return out + self._show(len(self.text))

    def _find_stop(self, start: int) -> int:
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        return min(hits) if hits else -1

    def _show(self, end: int) -> str:
        if end <= self.shown:
            return ""
        out = self.text[self.shown : end]
        self.shown = end
        return out
