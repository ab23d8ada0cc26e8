"""Numbers as people read them, shared by every interface (CLI tables, widgets)."""

from __future__ import annotations


def human_bytes(n: int | float | None) -> str:
    """1536 -> '1.5 KB'; None or 0 -> ''."""
    if not n:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def human_count(n: int | float | None) -> str:
    """A parameter count as people say it: 134515008 -> '135M', 1.7e9 -> '1.7B', 950 -> '950';
    None -> ''."""
    if n is None:
        return ""
    value = float(n)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale * 0.9995:  # 999_999 reads '1.0M', not '1000K'
            scaled = value / scale
            return f"{scaled:.1f}{unit}" if abs(scaled) < 9.95 else f"{scaled:.0f}{unit}"
    return f"{value:.0f}"
