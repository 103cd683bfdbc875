"""Audit reports written to ``ARCHIVE/reports/``: JSON for machines, HTML for people.

The HTML puts the summary first and the problems before everything else; each bag shows its check
history from the audit log, and a damaged work shows its poster frame, so that a conservator sees
at once which film is hurt. Every value is escaped: titles and paths come from outside.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from cifa_ingest.archive import Archive, write_atomically
from cifa_ingest.audit import AuditReport
from cifa_ingest.audit_log import AuditLog

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
    ".bad{color:#a00}.ok{color:#070}img{max-height:8em}"
)


def write_reports(report: AuditReport, archive: Archive) -> tuple[Path, Path]:
    """Write ``reports/audit-<time>.json`` and ``.html``; returns their paths."""
    folder = archive.root / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "audit-" + report.started.replace(":", "").replace("+0000", "Z")
    json_path, html_path = folder / f"{stem}.json", folder / f"{stem}.html"
    document = json.dumps(report.as_dict(), indent=2, ensure_ascii=False)
    write_atomically(json_path, document.encode("utf-8"))
    write_atomically(html_path, render_html(report, archive).encode("utf-8"))
    return json_path, html_path


def render_html(report: AuditReport, archive: Archive) -> str:
    e = html.escape
    summary = report.as_dict()
    state = "ok" if report.ok else "bad"
    verdict = "every bag intact" if report.ok else f"{len(report.problems)} problems"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>CIFA fixity audit {e(report.started)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Fixity audit: <span class='{state}'>{e(verdict)}</span></h1>",
        f"<p>{e(summary['mode'])} audit of {e(report.archive)}, {e(report.started)} to"
        f" {e(report.finished)}: {summary['checked']} bags checked, {summary['intact']} intact,"
        f" {summary['bytes_read']} bytes read in {summary['seconds']} s.</p>",
    ]
    if report.problems:
        parts.append("<h2>Problems</h2><table><tr><th>bag</th><th>kind</th><th>path</th>"
                     "<th>damaged frames</th><th>poster</th></tr>")  # fmt: skip
        for problem in report.problems:
            poster = (
                archive.bags_dir / problem.bag / "data" / "access" / f"{problem.bag}.poster.jpg"
            )
            image = (
                f"<img alt='poster' src='{e(poster.relative_to(archive.root).as_posix())}'>"
                if poster.is_file()
                else ""
            )
            frames = ", ".join(map(str, problem.damaged_frames or [])) or "-"
            parts.append(
                f"<tr class='bad'><td>{e(problem.bag)}</td><td>{e(problem.kind)}</td>"
                f"<td>{e(problem.path or '-')}</td><td>{e(frames)}</td>"
                f"<td>{image.replace('src=', 'src=../') if image else ''}</td></tr>"
            )
        parts.append("</table>")
    if report.not_reached:
        parts.append(f"<p>Not reached within the budget: {e(', '.join(report.not_reached))}</p>")
    log = AuditLog(archive.ledger_path)
    parts.append("<h2>Bags and their history</h2>")
    for bag in report.bags:
        history = log.history(bag.bag)
        rows = "".join(
            f"<tr><td>{e(c.checked_at)}</td><td>{e(c.outcome)}</td><td>{c.bytes_read}</td>"
            f"<td>{e(c.software)}</td></tr>"
            for c in reversed(history[-20:])
        )
        parts.append(
            f"<h3 class='{'ok' if bag.intact else 'bad'}'>{e(bag.bag)}</h3>"
            f"<table><tr><th>checked</th><th>outcome</th><th>bytes</th><th>software</th></tr>"
            f"{rows}</table>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
