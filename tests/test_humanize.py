"""Numbers as people read them."""

from __future__ import annotations

import pytest

from llmos_jupyter.humanize import human_bytes, human_count


@pytest.mark.parametrize(("n", "text"), [
    (None, ""), (0, "0"), (950, "950"), (999, "999"), (1000, "1.0K"), (12_345, "12K"),
    (134_515_008, "135M"), (999_999, "1.0M"), (1_700_000_000, "1.7B"), (7_240_000_000, "7.2B"),
    (70_550_000_000, "71B"),
])
def test_human_count(n, text):
    assert human_count(n) == text


def test_human_bytes():
    assert human_bytes(97_936_434) == "93.4 MB"
    assert human_bytes(None) == ""
