"""Prints the fuzzer's outcome counts at the end of the pytest run (no -s needed)."""

from __future__ import annotations

from tests.fuzz.harness import SUMMARY


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 (pytest's hook)
    if not SUMMARY:
        return
    tr = terminalreporter
    tr.section("GGUF fuzzer outcomes")
    total: dict[str, int] = {}
    for kind, counts in SUMMARY.items():
        tr.write_line(f"{kind:14s} {sum(counts.values()):4d} cases: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    tr.write_line(f"{'all':14s} {sum(total.values()):4d} cases: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
