"""Sizes as people read them, in decimal units (1 KB = 1000 bytes), as RFC 8493 suggests for a
bag's ``Bag-Size`` ("260 GB"): one rule for bag-info, the summary tables, the reports and the
progress lines, so that one film's size reads the same everywhere."""

from __future__ import annotations


def decimal(count: float, bytes_unit: str = "B") -> str:
    """``count`` bytes as e.g. ``"512 B"``, ``"1.2 MB"`` or ``"3.4 TB"``; ``bytes_unit`` names
    the unit below a kilobyte (bag-info writes ``"bytes"``)."""
    value = float(count)
    if value < 1000:
        return f"{value:.0f} {bytes_unit}"
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} TB"


def took(seconds: float) -> str:
    """How long a work took, as the summary table and the run report show it: ``"4.7 s"``;
    ``"<0.1 s"`` for what took less (a new version of a record takes hundredths of a second,
    and ``"0.0 s"`` would read as not done at all); ``"-"`` for nothing timed."""
    if not seconds:
        return "-"
    return "<0.1 s" if seconds < 0.05 else f"{seconds:.1f} s"
