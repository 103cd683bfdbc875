"""The report of an ingest run, for people: ``ARCHIVE/reports/ingest-<UTC time>.html``, ``.json``.

One row per work, problems first (failed), then what this run preserved, then the rest (already
preserved, not permitted, awaiting a source address): poster frame, title, id, outcome, the film's
duration, its sizes (original, master, access, storage factor), the time the run spent on it, and
for a failure its error and error kind. Counts come first. The same rows feed the Prefect artifacts
of the ``nightly-ingest`` flow (:func:`table_rows`, :func:`markdown_summary`), so the UI and the
file never disagree.

Choices, and why:

- **Self-contained HTML.** Inline CSS, no JavaScript, nothing fetched: a Content-Security-Policy
  meta tag (``default-src 'none'``) forbids scripts and requests even if escaping ever failed. The
  poster is embedded as a small JPEG thumbnail in a ``data:`` URI (made by ffmpeg from the bag's
  poster, 320 pixels wide, a few kB), not linked: a report mailed, copied to a web server or
  opened from a backup still shows every poster, and it never points into a bag (a relative link
  would break when the report moves, and serving bags/ to a browser is not the report's call).
- **Everything escaped.** Titles and error messages come from catalogues, remote sources and
  programs' output; every value passes :func:`html.escape`, and control characters, line breaks
  (in titles) and bidirectional controls (U+202E, which would make a title read backwards and
  disguise what follows) are shown as ``[U+202E]``, never interpreted.
- **No permission details.** The report is made from :class:`~cifa_ingest.preserve.WorkReport` and
  the bag's technical metadata only: it never reads ``permission.json``, so the grantor, the
  basis and the notes (filmmakers' personal details) stay in the bag.
- **Atomic files.** Each file is written under a temporary name in the same folder, flushed, then
  renamed: a reader never sees half a report. ``ingest-latest.html`` is a copy of the newest
  report, replaced the same way, so that one address (a bookmark, a link on the archive's intranet
  page) always shows the last night's run; a copy rather than a symbolic link because the HTML is
  self-contained, so the copy survives rsync, backups and web servers that refuse symlinks.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cifa_ingest.archive.layout import Archive, write_atomically
from cifa_ingest.errors import FFmpegError
from cifa_ingest.preserve import Outcome, WorkReport
from cifa_ingest.reports.summary import block_lines, human_bytes
from cifa_ingest.sizes import took
from cifa_ingest.tools import runner

log = logging.getLogger(__name__)

#: The order of the report: problems first, then what this run did, then what it had not to do.
ORDER = (
    Outcome.FAILED,
    Outcome.DEFERRED,
    Outcome.PRESERVED_DEGRADED,
    Outcome.PRESERVED,
    Outcome.NEW_VERSION,
    Outcome.ALREADY_PRESERVED,
    Outcome.NOT_PERMITTED,
    Outcome.AWAITING_SOURCE,
)
OUTCOME_TEXT = {
    Outcome.FAILED: "failed",
    Outcome.PRESERVED: "preserved",
    Outcome.PRESERVED_DEGRADED: "preserved (degraded)",
    Outcome.ALREADY_PRESERVED: "already preserved",
    Outcome.NEW_VERSION: "new version",
    Outcome.NOT_PERMITTED: "not permitted",
    Outcome.AWAITING_SOURCE: "awaiting source address",
    Outcome.DEFERRED: "deferred",
}
LATEST = "ingest-latest.html"
#: Width of the embedded poster thumbnail, in pixels.
THUMBNAIL_WIDTH = 320
#: An error longer than this is cut in the HTML (ffmpeg's stderr can be long); the JSON has it all.
HTML_ERROR_CHARS = 2000

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:80em;color:#222}"
    "table{border-collapse:collapse;width:100%}table.counts{width:auto;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    "td.num{text-align:right;white-space:nowrap}"
    ".failed{background:#fde8e8}.failed .outcome{color:#a00;font-weight:bold}"
    ".preserved .outcome{color:#070}.preserved-degraded .outcome{color:#a60}"
    ".none{color:#888}"
    ".counts td{border:none;padding:.1em 1.5em .1em .3em}"
    "img{width:160px;display:block}.noposter{width:160px;height:90px;background:#eee}"
    "pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0 0;font-size:.85em}"
    ".id{font-family:monospace;color:#555}.version{font-family:monospace;color:#070}"
    ".new-version .outcome{color:#070}.change,.withheld{margin:.3em 0 0;font-size:.9em}"
    ".withheld{color:#a00}"
)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class WorkRow:
    """One work as the report shows it: the run's :class:`WorkReport` and what its bag says."""

    report: WorkReport
    #: The film's duration in seconds (every master's, summed over parts), from technical.json.
    duration: float | None
    #: The poster thumbnail as JPEG bytes, or None (no bag, no poster, or ffmpeg failed).
    thumbnail: bytes | None
    #: The bag's size in bytes (every file of it), when the run left one.
    bag_bytes: int | None = None
    #: What the proof of each master said (normalisation.json), e.g. ``passed (framemd5)``.
    proof: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            **self.report.as_dict(),
            "duration_seconds": round(self.duration, 3) if self.duration is not None else None,
            "poster": self.thumbnail is not None,
            "bag_bytes": self.bag_bytes,
            "proof": self.proof,
        }


@dataclass(frozen=True)
class RunReport:
    """A run's report, ordered problems first."""

    archive: str
    started: str | None
    finished: str
    run_name: str | None
    rows: list[WorkRow]

    @property
    def counts(self) -> dict[Outcome, int]:
        counted = Counter(row.report.outcome for row in self.rows)
        return {outcome: counted.get(outcome, 0) for outcome in ORDER}

    @property
    def ok(self) -> bool:
        return not self.counts[Outcome.FAILED]

    def as_dict(self) -> dict[str, object]:
        return {
            "archive": self.archive,
            "started": self.started,
            "finished": self.finished,
            "run": self.run_name,
            "counts": {str(outcome): n for outcome, n in self.counts.items()},
            "ok": self.ok,
            "works": [row.as_dict() for row in self.rows],
        }


@dataclass(frozen=True)
class WrittenReport:
    html: Path
    json: Path
    latest: Path


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(
    reports: Sequence[WorkReport],
    archive: Archive,
    *,
    started: dt.datetime | None = None,
    finished: dt.datetime | None = None,
    run_name: str | None = None,
) -> RunReport:
    """The run's report: each work with its bag's duration and poster, problems first."""
    rank = {outcome: index for index, outcome in enumerate(ORDER)}
    ordered = sorted(reports, key=lambda report: rank[report.outcome])  # stable: run order kept
    rows = []
    for report in ordered:
        bag = _bag_of(report, archive)
        rows.append(
            WorkRow(
                report,
                _duration(bag) if bag else None,
                poster_thumbnail(bag) if bag else None,
                _bag_bytes(bag) if bag else None,
                _proof(bag) if bag else None,
            )
        )
    return RunReport(
        archive=str(archive.root),
        started=_utc(started) if started else None,
        finished=_utc(finished or dt.datetime.now(dt.UTC)),
        run_name=run_name,
        rows=rows,
    )


def _bag_of(report: WorkReport, archive: Archive) -> Path | None:
    """The work's bag in the archive, if the run left one; never a path outside ``bags/``."""
    if report.outcome not in (
        Outcome.PRESERVED,
        Outcome.PRESERVED_DEGRADED,
        Outcome.ALREADY_PRESERVED,
        Outcome.NEW_VERSION,
    ):
        return None
    bag = archive.bag_path(report.id)
    try:
        inside = bag.resolve().is_relative_to(archive.bags_dir.resolve())
    except OSError:
        return None
    return bag if inside and bag.is_dir() else None


def _bag_bytes(bag: Path) -> int | None:
    """Every file of the bag, its tag files included: what it takes on each copy's disk."""
    try:
        return sum(path.stat().st_size for path in bag.rglob("*") if path.is_file())
    except OSError:
        return None


def _proof(bag: Path) -> str | None:
    """What the bag's normalisation record says of each master's proof: ``passed (framemd5)``,
    or, for a master kept as received, its action; None when there is no record."""
    try:
        record = json.loads((bag / "metadata" / "normalisation.json").read_text("utf-8"))
        groups = record["groups"]
        said = []
        for group in groups:
            proof = group.get("proof")
            if proof:
                verdict = "passed" if proof.get("passed") else "FAILED"
                said.append(f"{verdict} ({proof.get('method')})")
            else:
                said.append(f"none ({group.get('action')})")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return "; ".join(said) or None


def _duration(bag: Path) -> float | None:
    """The film's duration from the bag's ffprobe record: the masters' durations summed (a work
    in parts has one master per part); failing that, the originals'."""
    try:
        technical = json.loads((bag / "metadata" / "technical.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(technical, dict):
        return None
    for role in ("master", "original"):
        found = []
        for key, probe in sorted(technical.items()):
            parts = key.removeprefix("data/").split("/")
            if parts[0] != role or not isinstance(probe, dict):
                continue
            try:
                found.append(float(probe.get("format", {}).get("duration")))
            except (TypeError, ValueError):
                continue
        if found:
            return sum(found)
    return None


def poster_thumbnail(bag: Path) -> bytes | None:
    """A small JPEG of the work's poster frame (``data/access/*.poster.jpg``, the first part's
    for a work in parts), made with ffmpeg; None when there is none or ffmpeg cannot read it."""
    access = bag / "data" / "access"
    posters = sorted(access.glob("*.poster.jpg")) + sorted(access.glob("*.poster.png"))
    if not posters:
        return None
    args = [
        runner.executable("ffmpeg"),
        *runner.GLOBAL_ARGS,
        "-i", str(posters[0]),
        "-vf", f"scale={THUMBNAIL_WIDTH}:-1",
        "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "5", "-f", "image2pipe", "pipe:1",
    ]  # fmt: skip
    try:
        data = runner.run(args, timeout=60).stdout
    except FFmpegError as exc:
        log.warning("no poster thumbnail for %s: %s", bag.name, exc)
        return None
    return data if data.startswith(b"\xff\xd8") else None


# ---------------------------------------------------------------------------------------------
# Text from outside, made harmless


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character, line break (unless ``keep_newlines``), lone
    surrogate and bidirectional control written out as ``[U+XXXX]``: shown, never obeyed.

    Not escaping: HTML still needs :func:`html.escape` after this."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if keep_newlines and ch in "\n\t":
            out.append(ch)
        elif category in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            out.append(f"[U+{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def _e(text: object, *, keep_newlines: bool = False) -> str:
    return html.escape(visible(str(text), keep_newlines=keep_newlines), quote=True)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _factor(report: WorkReport) -> str:
    return f"{report.storage_factor:.2f}x" if report.storage_factor else "-"


# ---------------------------------------------------------------------------------------------
# HTML


def render_html(run: RunReport) -> str:
    """The report as one self-contained HTML page (no script, no request), every value escaped."""
    counts = run.counts
    verdict = "every work done" if run.ok else f"{counts[Outcome.FAILED]} failed"
    when = f"{run.started} to {run.finished}" if run.started else f"finished {run.finished}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>CIFA ingest {_e(run.finished)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Ingest run: <span class='{Outcome.PRESERVED if run.ok else Outcome.FAILED}'>"
        f"{_e(verdict)}</span></h1>",
        f"<p>Archive <code>{_e(run.archive)}</code>, {_e(when)}"
        + (f", Prefect flow run <code>{_e(run.run_name)}</code>" if run.run_name else "")
        + ".</p>",
        "<table class='counts' id='counts'>",
    ]
    parts += [
        f"<tr class='{outcome.value if count else 'none'}'><td class='outcome'>"
        f"{_e(OUTCOME_TEXT[outcome])}</td><td class='num'>{count}</td></tr>"
        for outcome, count in counts.items()
    ]
    parts.append(f"<tr><td>works</td><td class='num'>{len(run.rows)}</td></tr></table>")
    parts += [
        f"<p class='blocked'>{_e(line)}.</p>"
        for line in block_lines([row.report for row in run.rows])
    ]
    if storage := _storage_sentence(run):
        parts.append(f"<p>{_e(storage)}</p>")
    parts.append(
        "<h2>Works</h2><table id='works'><tr><th>poster</th><th>work</th><th>outcome</th>"
        "<th>duration</th><th>original</th><th>master</th><th>access</th><th>factor</th>"
        "<th>time</th></tr>"
    )
    for row in run.rows:
        parts.append(_row_html(row))
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _row_html(row: WorkRow) -> str:
    report = row.report
    if row.thumbnail:
        encoded = base64.b64encode(row.thumbnail).decode("ascii")
        poster = f"<img alt='poster of {_e(report.id)}' src='data:image/jpeg;base64,{encoded}'>"
    else:
        poster = "<div class='noposter'></div>"
    problem = ""
    if report.error:
        error = report.error
        if len(error) > HTML_ERROR_CHARS:
            error = error[:HTML_ERROR_CHARS] + f"… ({len(report.error)} characters, see the JSON)"
        kind = f"{report.error_kind}: " if report.error_kind else ""
        problem = f"<pre class='error'>{_e(kind)}{_e(error, keep_newlines=True)}</pre>"
    problem += _version_notes(report)
    sizes = "".join(
        f"<td class='num'>{_e(human_bytes(report.bytes.get(role)))}</td>"
        for role in ("original", "master", "access")
    )
    version = (
        f" <span class='version' title='its newest version'>v{report.version}</span>"
        if report.version
        else ""
    )
    return (
        f"<tr class='{report.outcome.value}' id='work-{_e(report.id)}'>"
        f"<td>{poster}</td>"
        f"<td><bdi class='title'>{_e(report.title)}</bdi><br><span class='id'>{_e(report.id)}"
        f"</span>{version}</td>"
        f"<td><span class='outcome'>{_e(OUTCOME_TEXT[report.outcome])}</span>{problem}</td>"
        f"<td class='num'>{_clock(row.duration)}</td>{sizes}"
        f"<td class='num'>{_e(_factor(report))}</td><td class='num'>{_e(took(report.seconds))}</td>"
        "</tr>"
    )


def _version_notes(report: WorkReport) -> str:
    """What a new version records, and access copies withheld: said on a work's row where this
    run made a version, or where its permission was withdrawn or refused (a work preserved for
    preservation only is not flagged on every night's report)."""
    notes = ""
    if report.change:
        notes += f"<p class='change'>v{report.version}: {_e(report.change)}</p>"
    withheld = report.access_withheld
    if withheld and (report.change or not withheld.startswith("permission does not cover")):
        notes += f"<p class='withheld'>access copies withheld: {_e(withheld)}</p>"
    return notes


def _storage_sentence(run: RunReport) -> str | None:
    counted = [row.report for row in run.rows if row.report.storage_factor]
    original = sum(r.bytes.get("original", 0) for r in counted)
    master = sum(r.bytes.get("master", 0) for r in counted)
    if not original:
        return None
    return (
        f"Storage: {human_bytes(master)} of masters for {human_bytes(original)} of originals"
        f" (storage factor {master / original:.2f}x)."
    )


# ---------------------------------------------------------------------------------------------
# Files


def write(run: RunReport, archive: Archive) -> WrittenReport:
    """Write ``reports/ingest-<time>.html`` and ``.json`` and replace ``ingest-latest.html``,
    each atomically (temporary file, flush, rename). A name already taken (two runs in one
    second) gets a counter rather than replacing an earlier run's report."""
    folder = archive.root / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "ingest-" + run.finished.replace(":", "")  # named like the audit's reports
    candidate, n = stem, 1
    while (folder / f"{candidate}.html").exists() or (folder / f"{candidate}.json").exists():
        n += 1
        candidate = f"{stem}-{n}"
    page = render_html(run).encode("utf-8")
    document = json.dumps(run.as_dict(), indent=2, ensure_ascii=False)
    try:
        data = document.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in a remote title: JSON's \u escapes hold it
        data = json.dumps(run.as_dict(), indent=2, ensure_ascii=True).encode("ascii")
    json_path = write_atomically(folder / f"{candidate}.json", data)
    html_path = write_atomically(folder / f"{candidate}.html", page)
    latest = write_atomically(folder / LATEST, page)
    return WrittenReport(html=html_path, json=json_path, latest=latest)


def write_run_report(
    reports: Sequence[WorkReport],
    archive: Archive,
    *,
    started: dt.datetime | None = None,
    run_name: str | None = None,
) -> tuple[RunReport, WrittenReport]:
    """Build the run's report and write it into ``ARCHIVE/reports/``."""
    run = build(reports, archive, started=started, run_name=run_name)
    return run, write(run, archive)


def report_of(archive_root: Path, reports: Sequence[WorkReport]) -> Path | None:
    """The HTML report of the run that produced ``reports``: the newest report of the archive
    whose works and outcomes are these. The CLI prints it; matching by content rather than taking
    the newest file means a run whose report could not be written names no older run's report."""
    folder = Path(archive_root) / "reports"
    wanted = [(r.id, str(r.outcome)) for r in reports]
    candidates = sorted(
        folder.glob("ingest-*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True
    )
    for path in candidates[:5]:
        try:
            works = json.loads(path.read_text("utf-8"))["works"]
            found = [(w["id"], w["outcome"]) for w in works]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        page = path.with_suffix(".html")
        if sorted(found) == sorted(wanted) and page.is_file():
            return page
    return None


# ---------------------------------------------------------------------------------------------
# Prefect artifacts (built here, without Prefect; published by pipelines/flows.py)


def table_rows(run: RunReport) -> list[dict[str, object]]:
    """One row per work for the table artifact, in the report's order. Plain text (the UI shows
    cells as text), with control and bidirectional characters made visible."""
    return [
        {
            "id": row.report.id,
            "title": visible(row.report.title),
            "outcome": OUTCOME_TEXT[row.report.outcome],
            "bag": f"bags/{row.report.id}" if row.bag_bytes is not None else "",
            "version": f"v{row.report.version}" if row.report.version else "",
            "bag size": human_bytes(row.bag_bytes),
            "proof": row.proof or "",
            "duration": _clock(row.duration),
            "original": human_bytes(row.report.bytes.get("original")),
            "master": human_bytes(row.report.bytes.get("master")),
            "access": human_bytes(row.report.bytes.get("access")),
            "factor": _factor(row.report),
            "time": took(row.report.seconds),
            "error": visible(row.report.error_kind or row.report.error or "")[:300],
        }
        for row in run.rows
    ]


_MARKDOWN_SPECIALS = str.maketrans({ch: f"\\{ch}" for ch in "\\`*_[]|~"})


def markdown_text(text: str) -> str:
    """``text`` safe inside a markdown line or table cell: controls made visible, HTML escaped,
    markdown's own characters backslash-escaped (no link, image or raw HTML from a title)."""
    return html.escape(visible(text), quote=False).translate(_MARKDOWN_SPECIALS)


def summary_line(run: RunReport) -> str:
    """``5 works: 1 failed, 3 preserved, …``: the counts in one line."""
    counts = ", ".join(f"{n} {OUTCOME_TEXT[outcome]}" for outcome, n in run.counts.items())
    return f"{len(run.rows)} works: {counts}"


def markdown_summary(run: RunReport, html_path: Path | None) -> str:
    """The markdown artifact: counts, each problem named with its error, the report's path."""
    verdict = "every work done" if run.ok else f"{run.counts[Outcome.FAILED]} failed"
    lines = [f"# Ingest run: {verdict}", "", summary_line(run)]
    problems = [row.report for row in run.rows if row.report.outcome is Outcome.FAILED]
    if blocks := block_lines([row.report for row in run.rows]):
        lines += ["", *(markdown_text(line) for line in blocks)]
    if problems:
        lines += ["", "## Problems", "", "| work | title | error |", "| --- | --- | --- |"]
        for report in problems:
            error = (report.error_kind + ": " if report.error_kind else "") + (report.error or "")
            lines.append(
                f"| {markdown_text(report.id)} | {markdown_text(report.title)}"
                f" | {markdown_text(error[:300])} |"
            )
    if html_path is not None:
        lines += ["", f"Report: `{visible(str(html_path)).replace('`', '')}`"]
    return "\n".join(lines)
