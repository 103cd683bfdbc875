"""The run's summary: a table for people, a JSON document for programs."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Sequence

from cifa_ingest import sizes
from cifa_ingest.preserve import Outcome, WorkReport

_OUTCOME_TEXT = {
    Outcome.PRESERVED: "preserved",
    Outcome.PRESERVED_DEGRADED: "preserved (degraded)",
    Outcome.ALREADY_PRESERVED: "already preserved",
    Outcome.NEW_VERSION: "new version",
    Outcome.FAILED: "FAILED",
    Outcome.NOT_PERMITTED: "not permitted",
    Outcome.AWAITING_SOURCE: "awaiting source address",
    Outcome.DEFERRED: "deferred",
}


def _width(text: str) -> int:
    """Columns on a terminal: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fit(text: str, columns: int) -> str:
    out, used = "", 0
    for ch in text:
        w = _width(ch)
        if used + w > columns - (1 if _width(text) > columns else 0):
            return out + "…" + " " * (columns - used - 1)
        out, used = out + ch, used + w
    return out + " " * (columns - used)


def human_bytes(count: int | None) -> str:
    """A size in the tables, "-" where there is none."""
    return sizes.decimal(count) if count else "-"


def table(reports: Sequence[WorkReport]) -> str:
    """The summary table: film, outcome, bag path, sizes, time; then counts and errors."""
    columns = [
        ("film", 44),
        ("outcome", 24),
        ("bag", 26),
        ("original", 10),
        ("master", 10),
        ("access", 10),
        ("factor", 6),
        ("time", 7),
    ]
    lines = ["  ".join(_fit(name, width) for name, width in columns).rstrip()]
    lines.append("  ".join("-" * width for _name, width in columns))
    for report in reports:
        cells = [
            f"{report.id} {report.title}",
            _OUTCOME_TEXT[report.outcome],
            report.bag or "-",
            human_bytes(report.bytes.get("original")),
            human_bytes(report.bytes.get("master")),
            human_bytes(report.bytes.get("access")),
            f"{report.storage_factor:.1f}x" if report.storage_factor else "-",
            sizes.took(report.seconds),
        ]
        lines.append(
            "  ".join(_fit(c, w) for c, (_n, w) in zip(cells, columns, strict=True)).rstrip()
        )
    lines.append("")
    lines.append(summary_line(reports))
    if storage := storage_line(reports):
        lines.append(storage)
    for report in reports:
        if report.outcome in (Outcome.FAILED, Outcome.PRESERVED_DEGRADED):
            lines.append(f"  {report.id}: {report.error}")
    lines += [f"  {line}" for line in block_lines(reports)]
    return "\n".join(lines)


def block_lines(reports: Sequence[WorkReport]) -> list[str]:
    """Once per host that blocked the run: ``host youtube.com blocked us (bot wall) at 02:14
    UTC; 3 works deferred to the next run`` (the deferred works' reports carry the first
    half)."""
    deferred = Counter(
        report.error for report in reports if report.outcome is Outcome.DEFERRED and report.error
    )
    return [
        f"{sentence}; {n} work{'s' if n != 1 else ''} deferred to the next run"
        for sentence, n in deferred.items()
    ]


def summary_line(reports: Sequence[WorkReport]) -> str:
    """``N works: 3 preserved, …``; degraded captures are counted as preserved, and said:
    ``3 preserved (1 degraded)``; ``1 new version``, ``0 new versions``."""
    counts = Counter(report.outcome for report in reports)
    degraded = counts.get(Outcome.PRESERVED_DEGRADED, 0)
    counts[Outcome.PRESERVED] += degraded
    parts = [
        f"{counts.get(outcome, 0)} {_OUTCOME_TEXT[outcome].lower()}"
        + ("s" if outcome is Outcome.NEW_VERSION and counts.get(outcome, 0) != 1 else "")
        + (f" ({degraded} degraded)" if outcome is Outcome.PRESERVED and degraded else "")
        for outcome in Outcome
        if outcome is not Outcome.PRESERVED_DEGRADED
    ]
    return f"{len(reports)} works: " + ", ".join(parts)


def storage_line(reports: Sequence[WorkReport]) -> str | None:
    """The storage factor over every bag in the report: master bytes / original bytes."""
    original = sum(r.bytes.get("original", 0) for r in reports if r.storage_factor)
    master = sum(r.bytes.get("master", 0) for r in reports if r.storage_factor)
    if not original:
        return None
    return (
        f"Storage: {human_bytes(master)} of masters for {human_bytes(original)} of originals"
        f" (storage factor {master / original:.1f}x)"
    )


def as_json(archive: str, reports: Sequence[WorkReport]) -> str:
    counts = Counter(str(report.outcome) for report in reports)
    document = {
        "archive": archive,
        "works": [report.as_dict() for report in reports],
        "counts": dict(sorted(counts.items())),
        "storage": {
            "original_bytes": sum(r.bytes.get("original", 0) for r in reports if r.storage_factor),
            "master_bytes": sum(r.bytes.get("master", 0) for r in reports if r.storage_factor),
        },
        "ok": not any(report.outcome is Outcome.FAILED for report in reports),
    }
    return json.dumps(document, indent=2, ensure_ascii=False)
