"""StopText: stop strings cut the text and never leak into what was shown."""

from __future__ import annotations

import pytest

from llmos_jupyter.engine.stops import StopText, held_back


def run(pieces: list[str], stops: list[str]) -> tuple[str, str, bool]:
    st = StopText(stops)
    shown = ""
    for p in pieces:
        shown += st.feed(p)
        if st.stopped:
            break
    shown += st.finish()
    return shown, st.text, st.stopped


def test_held_back_is_longest_suffix_that_starts_a_stop():
    assert held_back("hello wor", ["world"]) == 3
    assert held_back("hello", ["world"]) == 0
    assert held_back("ab#", ["##", "#x"]) == 1
    assert held_back("a##", ["###"]) == 2
    assert held_back("world", ["world"]) == 0  # a whole stop is found, not held


@pytest.mark.parametrize(
    "pieces, stops, text, stopped",
    [
        (["Hello", " wor", "ld", "!"], ["world"], "Hello ", True),
        (["Hel", "lo"], ["lo"], "Hel", True),
        (["a", "b", "c"], ["x"], "abc", False),
        (["ab<", "/s", "tart"], ["</s>"], "ab</start", False),  # prefix, then diverges
        (["one\n\n", "two"], ["\n\n"], "one", True),
        (["xyzSTOP"], ["STOP", "yz"], "x", True),  # earliest of several stops
        (["A", "B", "S", "T", "O", "P", "Z"], ["STOP"], "AB", True),
        (["end ##"], ["###"], "end ##", False),  # held back, released at the end
    ],
)
def test_cut_and_no_leak(pieces, stops, text, stopped):
    shown, final, was_stopped = run(pieces, stops)
    assert final == text and shown == text and was_stopped == stopped


def test_no_piece_ever_contains_part_of_the_stop():
    st = StopText(["STOP"])
    shown = [st.feed(c) for c in "abcSTOPdef"]
    assert "".join(shown) == "abc" and st.stopped
    assert all(not set(s) & set("STOP") for s in shown)
    assert st.feed("more") == "" and st.finish("tail") == ""
