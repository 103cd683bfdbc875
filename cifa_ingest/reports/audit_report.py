"""Audit reports written to ``ARCHIVE/reports/``: JSON for machines, HTML for people.

Every audit writes them, ``cifa audit`` and the ``fixity-audit`` flow alike, through
:func:`write`: ``audit-<UTC time>.json`` and ``.html``, and ``audit-latest.html``, a copy of the
newest HTML replaced atomically, so that one address (a bookmark, the intranet page) always shows
the last audit.

The HTML is for auditors and conservators. The verdict and counts come first; then each damaged
work, so that one sees at once which film is hurt: its poster, title and id, when it was ingested,
last verified and last found intact, its payload size, and every problem with its evidence (what
was compared, the value expected and the value found, an FFV1 master's damaged frames); then every
bag checked, damaged first, with the same dates and its check history from the audit log.

As the ingest run report (:mod:`cifa_ingest.reports.ingest_report`), the page is self-contained:
inline CSS,
the poster embedded as a small JPEG ``data:`` URI, no script, and a Content-Security-Policy meta
that forbids scripts and requests even if escaping ever failed; so ``audit-latest.html``, a mailed
copy or a backup shows the same page, and it never points into a bag. Titles, paths and bag names
come from outside (catalogues, remote sources, whatever lies under ``bags/``): every value is made
visible (:func:`~cifa_ingest.reports.ingest_report.visible`) and escaped.
"""

from __future__ import annotations

import base64
import html
import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cifa_ingest import sizes
from cifa_ingest.archive.audit_log import AuditLog, Check
from cifa_ingest.archive.layout import Archive, write_atomically
from cifa_ingest.archive.ledger import BagRecord, CheckOutcome, Ledger
from cifa_ingest.audit.fixity_audit import AuditReport, BagAudit, Problem, ProblemKind
from cifa_ingest.reports.ingest_report import CSP, poster_thumbnail, visible
from cifa_ingest.storage.locations import PRIMARY
from cifa_ingest.versions.export import DEACCESSION_RECORD

LATEST = "audit-latest.html"
#: Checks of a bag shown in its history (newest first); the audit log holds them all.
HISTORY_ROWS = 20
#: A title longer than this is cut in the HTML (a catalogue's titles are far shorter).
TITLE_CHARS = 300

#: Each kind of problem explained, in the page's words (a test checks that every kind has one).
KIND_TEXT = {
    ProblemKind.CHECKSUM_MISMATCH: "content differs from its manifest",
    ProblemKind.MISSING_FILE: "listed in the manifests, gone from disk",
    ProblemKind.UNEXPECTED_FILE: "in the payload, listed in no manifest",
    ProblemKind.TAG_CHECKSUM_MISMATCH: "tag file differs from its tag manifest",
    ProblemKind.OXUM_MISMATCH: "Payload-Oxum disagrees with the payload",
    ProblemKind.INVALID_STRUCTURE: "not a valid bag",
    ProblemKind.LEDGER_MISMATCH: "differs from what was ingested",
    ProblemKind.MISSING_BAG: "registered in the ledger, gone from disk",
    ProblemKind.UNREGISTERED_BAG: "under bags/, unknown to the ledger",
    ProblemKind.UNREGISTERED_OBJECT: "versions under objects/ of a work unknown to the ledger",
    ProblemKind.COPY_MISSING: "the location's copy lacks this file",
    ProblemKind.COPY_DAMAGED: "the location's copy of this file differs from the ledger",
    ProblemKind.LOCATION_UNREACHABLE: "the location did not answer: nothing said of its copies",
    ProblemKind.COPY_UNLOCKED: "held under no Object Lock retention, though the settings ask",
    ProblemKind.VERSION_CHECKSUM_MISMATCH: "a stored file of the versions differs from its"
    " inventory: every version named is damaged",
    ProblemKind.VERSION_MISSING_FILE: "a stored file of the versions is gone",
    ProblemKind.VERSION_UNEXPECTED_FILE: "in the versions' object, listed in no inventory",
    ProblemKind.VERSION_INVENTORY_INVALID: "an inventory of the versions is missing, damaged or"
    " disagrees with the others",
    ProblemKind.HEAD_MISMATCH: "the bag is not the work's newest version",
}

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:80em;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
    "text-align:left;vertical-align:top}td.num{text-align:right;white-space:nowrap}"
    ".bad{color:#a00}.ok{color:#070}.id{font-family:monospace;color:#555}"
    "tr.damaged{background:#fdf3f3}tr.damaged .outcome{color:#a00;font-weight:bold}"
    "tr.intact .outcome{color:#070}"
    "section.damaged{border:2px solid #a00;background:#fdf3f3;padding:1em;margin:1em 0}"
    ".head{display:flex;gap:1.5em;align-items:flex-start;margin-bottom:.8em}"
    ".head h3{margin:0 0 .3em}img.poster{width:240px;display:block}"
    ".noposter{width:240px;height:135px;background:#eee;color:#888;display:flex;"
    "align-items:center;justify-content:center;font-size:.85em}"
    "table.facts td,table.facts th{border:none;padding:.1em 1em .1em 0}"
    "table.problems{width:100%;background:#fff}"
    "code.digest{word-break:break-all;font-size:.8em}.detail{color:#555;font-size:.85em}"
    "details summary{cursor:pointer}"
)


@dataclass(frozen=True)
class BagFacts:
    """What the report shows of one bag besides its problems: from the bag's own description, the
    ledger and the audit log."""

    bag: str
    #: The title in the bag's ``metadata/descriptive.json`` (English / Chinese), or None.
    title: str | None
    #: When the bag was placed in the archive (the ledger), None for a bag the ledger does not know.
    ingested: str | None
    payload_bytes: int | None
    payload_files: int | None
    #: The newest check in the audit log (this audit's, for a bag it checked), and the newest
    #: that found the bag intact: for a damaged bag, the last time it was known to be good.
    last_verified: str | None
    last_intact: str | None
    history: tuple[Check, ...]
    #: A JPEG of the poster frame, for a damaged work only (posters of every bag of a large
    #: archive would make a page of hundreds of megabytes).
    thumbnail: bytes | None
    #: When the work was deaccessioned (its bag the tombstone, :mod:`cifa_ingest.deaccession`),
    #: else None: a reader must not take its small payload for a loss.
    deaccessioned: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "bag": self.bag,
            "title": self.title,
            "ingested": self.ingested,
            "payload_bytes": self.payload_bytes,
            "payload_files": self.payload_files,
            "last_verified": self.last_verified,
            "last_intact": self.last_intact,
            "deaccessioned": self.deaccessioned,
        }


@dataclass(frozen=True)
class AuditView:
    """An audit and what its report shows of each bag, by bag id."""

    report: AuditReport
    facts: dict[str, BagFacts]

    def damaged(self) -> list[tuple[str, list[Problem]]]:
        """Each bag with problems and its problems, in the audit's order, unregistered last."""
        grouped: dict[str, list[Problem]] = {}
        for problem in self.report.problems:
            grouped.setdefault(problem.bag, []).append(problem)
        return list(grouped.items())

    def as_dict(self) -> dict[str, object]:
        checked = {bag.bag: bag for bag in self.report.bags}
        return {
            **self.report.as_dict(),
            "bags": [
                {
                    **facts.as_dict(),
                    "outcome": (
                        _outcome(checked[bag].intact)
                        if bag in checked
                        else CheckOutcome.UNREGISTERED
                    ),
                    "bytes_read": checked[bag].bytes_read if bag in checked else 0,
                    "poster": facts.thumbnail is not None,
                    "versions": _versions(checked.get(bag)),
                }
                for bag, facts in self.facts.items()
            ],
        }


@dataclass(frozen=True)
class WrittenAuditReport:
    json: Path
    html: Path
    latest: Path


# ---------------------------------------------------------------------------------------------
# What the report shows of each bag


def build(report: AuditReport, archive: Archive) -> AuditView:
    """Gather each bag's title, dates and sizes, and the poster of each damaged work."""
    records = {record.work_id: record for record in Ledger(archive.ledger_path).bags()}
    log = AuditLog(archive.ledger_path)
    damaged = {problem.bag for problem in report.problems}
    names = [bag.bag for bag in report.bags] + [p.bag for p in report.unregistered]
    at_location = report.location != PRIMARY
    copies = (
        {c.work_id: c for c in Ledger(archive.ledger_path).copies(location=report.location)}
        if at_location
        else {}
    )
    facts = {}
    for name in dict.fromkeys(names):
        record = records.get(name)
        folder = _bag_folder(archive, record, name)
        # A location's copies have no audit log of their own: the ledger's copies table says
        # when each was last verified there (the primary's history would say something else).
        history = tuple(log.history(name)) if record is not None and not at_location else ()
        if at_location:
            copy = copies.get(name)
            verified = copy.verified_at if copy is not None else None
            history_verified, history_intact = verified, verified
        else:
            history_verified = history[-1].checked_at if history else None
            history_intact = None
        payload = _oxum(record.payload_oxum) if record is not None else (None, None)
        intact = [c.checked_at for c in history if c.outcome == CheckOutcome.INTACT]
        facts[name] = BagFacts(
            bag=name,
            title=_title(folder) if folder else None,
            ingested=record.placed_at if record is not None else None,
            payload_bytes=payload[0],
            payload_files=payload[1],
            last_verified=history_verified,
            last_intact=history_intact if at_location else (intact[-1] if intact else None),
            history=history,
            thumbnail=poster_thumbnail(folder) if folder and name in damaged else None,
            deaccessioned=_deaccessioned(folder) if folder else None,
        )
    return AuditView(report, facts)


def _deaccessioned(folder: Path) -> str | None:
    """When the bag in ``folder`` became a tombstone (it holds the deaccession's record), or
    None for any other bag."""
    if not (folder / DEACCESSION_RECORD).is_file():
        return None
    try:
        return str(json.loads((folder / DEACCESSION_RECORD).read_text("utf-8"))["when"])
    except (OSError, ValueError, KeyError, TypeError):
        return "(its record does not read)"


def _bag_folder(archive: Archive, record: BagRecord | None, name: str) -> Path | None:
    """The bag's folder, if it is there; never a path outside ``bags/`` (a ledger's path or a
    symbolic link that leads elsewhere is not followed for a title or a poster)."""
    folder = archive.root / record.bag_path if record is not None else archive.bags_dir / name
    try:
        inside = folder.resolve().is_relative_to(archive.bags_dir.resolve())
        return folder if inside and folder.is_dir() else None
    except OSError:
        return None


def _title(folder: Path) -> str | None:
    """``English / 中文`` from the bag's descriptive.json; None when it has none it can read (a
    damaged or forged description is shown for what it says)."""
    try:
        document = json.loads((folder / "metadata" / "descriptive.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    title = document.get("title") if isinstance(document, dict) else None
    if isinstance(title, dict):
        names = [title.get(language) for language in ("en", "zh")]
        title = " / ".join(name for name in names if isinstance(name, str) and name)
    return title if isinstance(title, str) and title else None


def _oxum(oxum: str) -> tuple[int | None, int | None]:
    octets, _, count = oxum.partition(".")
    if octets.isdigit() and count.isdigit():
        return int(octets), int(count)
    return None, None


# ---------------------------------------------------------------------------------------------
# HTML


def _e(text: object) -> str:
    return html.escape(visible(str(text)), quote=True)


def _when(moment: str | None, none: str = "-") -> str:
    return _e(moment) if moment else f"<span class='detail'>{_e(none)}</span>"


def _size(count: int | None) -> str:
    return sizes.decimal(count) if count is not None else "-"


def _payload(facts: BagFacts) -> str:
    if facts.payload_bytes is None:
        return "-"
    files = f" in {facts.payload_files} files" if facts.payload_files is not None else ""
    return f"{_size(facts.payload_bytes)}{files}"


def _title_html(facts: BagFacts | None) -> str:
    title = facts.title if facts else None
    if not title:
        return "<span class='detail'>(no title: no readable description)</span>"
    if len(title) > TITLE_CHARS:
        title = title[:TITLE_CHARS] + "…"
    return f"<bdi class='title'>{_e(title)}</bdi>"


def render_html(view: AuditView, json_name: str | None = None) -> str:
    """The audit as one self-contained HTML page (no script, no request), every value escaped.
    ``json_name``, the JSON report's file name, is linked relative to the reports folder, where
    the dated page and ``audit-latest.html`` both are."""
    report = view.report
    summary = report.as_dict()
    damaged = view.damaged()
    state = "ok" if report.ok else "bad"
    verdict = (
        ("every bag intact" if report.location == PRIMARY else "every copy good")
        if report.ok
        else f"{_count(len(report.problems), 'problem')} in {_count(len(damaged), 'bag')}"
    )
    if report.repaired:
        verdict += f" ({_count(len(report.repaired), 'file')} repaired)"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>CIFA fixity audit {_e(report.started)}</title><style>{_STYLE}</style></head>",
        "<body>",
        f"<h1>Fixity audit{_where(report)}: <span class='{state}' id='verdict'>{_e(verdict)}"
        "</span></h1>",
        f"<p id='summary'>{_e(summary['mode'].capitalize())} audit of <code>{_e(report.archive)}"
        f"</code>, {_e(report.started)} to {_e(report.finished)}: {summary['checked']} bags"
        f" checked, {summary['intact']} intact, {_e(_size(summary['bytes_read']))} read in"
        f" {summary['seconds']:.1f} s.</p>",
    ]
    if summary["objects"]:
        objects = summary["objects"]
        held = [o for o in objects if o["versions"] is not None]
        versions = sum(o["versions"] for o in held)
        parts.append(
            f"<p id='versions'>Versions: {_count(len(held), 'object')} checked with their bags,"
            f" {_count(versions, 'version')}, every stored file;"
            f" {_e(_size(sum(o['bytes_read'] for o in objects)))} read for them"
            f" ({_e(_size(sum(o['bytes_reused'] for o in objects)))} are their bags' own files,"
            " read once for both)."
            + (f" No versions recorded yet (the next ingest records them):"
               f" {_e(', '.join(o['bag'] for o in objects if o['versions'] is None))}."
               if len(held) < len(objects) else "")
            + "</p>"
        )  # fmt: skip
    if report.not_reached:
        parts.append(
            f"<p>Not reached within the budget ({len(report.not_reached)} bags, left for the next"
            f" audit): {_e(', '.join(report.not_reached))}</p>"
        )
    if json_name:
        href = html.escape(urllib.parse.quote(json_name), quote=True)
        parts.append(f"<p>For programs: <a href='{href}'>{_e(json_name)}</a></p>")
    if report.repair_refused:
        parts.append(
            f"<p class='bad' id='repair-refused'>Repair refused: {_e(report.repair_refused)}</p>"
        )
    if damaged:
        parts.append("<h2 id='problems'>Problems</h2>")
        parts += [_damaged_html(bag, problems, view.facts.get(bag)) for bag, problems in damaged]
    if report.repaired:
        parts.append(_repaired_html(report))
    parts.append(_bags_html(view))
    parts.append("</body></html>")
    return "\n".join(parts)


def _where(report: AuditReport) -> str:
    """`` of location offsite (cheap check)`` for a location's audit, nothing for the primary."""
    if report.location == PRIMARY:
        return ""
    return (
        f" of location <span id='location'>{_e(report.location)}</span> ({_e(report.check)} check)"
    )


def _damaged_html(bag: str, problems: list[Problem], facts: BagFacts | None) -> str:
    if facts and facts.thumbnail:
        encoded = base64.b64encode(facts.thumbnail).decode("ascii")
        poster = (
            f"<img class='poster' alt='poster of {_e(bag)}' src='data:image/jpeg;base64,{encoded}'>"
        )
    else:
        poster = "<div class='noposter'>no poster</div>"
    rows = "".join(_problem_html(problem) for problem in problems)
    return (
        f"<section class='damaged' id='bag-{_e(bag)}'><div class='head'>{poster}<div>"
        f"<h3>{_title_html(facts)}</h3><p class='id'>{_e(bag)}</p>{_facts_table(facts)}"
        "</div></div>"
        "<table class='problems'><tr><th>problem</th><th>file</th><th>checked by</th>"
        f"<th>expected</th><th>found</th><th>damaged frames</th></tr>{rows}</table></section>"
    )


def _facts_table(facts: BagFacts | None) -> str:
    if facts is None:
        return ""
    rows = [
        ("ingested", _when(facts.ingested, "not registered")),
        ("last verified", _when(facts.last_verified, "never")),
        ("last found intact", _when(facts.last_intact, "never")),
        ("payload", _e(_payload(facts))),
    ]
    if facts.deaccessioned is not None:
        rows.append(("deaccessioned", _when(facts.deaccessioned, "")))
    cells = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f"<table class='facts'>{cells}</table>"


#: How repair's word on a problem begins, in its detail (:mod:`cifa_ingest.audit.repairs`).
_REPAIR_WORDS = ("not repaired", "found by repair")


def _problem_html(problem: Problem) -> str:
    explained = KIND_TEXT.get(problem.kind, "")
    # The validator's message repeats the evidence shown beside it; the ledger's says which way.
    no_evidence = problem.expected is None and problem.found is None
    detail = ""
    # A problem of the versions: its detail names the bag's file and the rule of OCFL 1.1.
    said = problem.kind == ProblemKind.LEDGER_MISMATCH or problem.object is not None
    if problem.detail and (no_evidence or said):
        detail = f"<br><span class='detail'>{_e(problem.detail)}</span>"
    else:  # why repair left it, which the evidence beside it cannot say
        at = min((i for i in map((problem.detail or "").find, _REPAIR_WORDS) if i >= 0), default=-1)
        if at >= 0:
            detail = f"<br><span class='detail repair'>{_e((problem.detail or '')[at:])}</span>"
    file_gone = problem.kind in (
        ProblemKind.MISSING_FILE, ProblemKind.TAG_CHECKSUM_MISMATCH,
        ProblemKind.VERSION_MISSING_FILE,
    )  # fmt: skip
    gone = "gone" if file_gone else "absent" if problem.kind == ProblemKind.HEAD_MISMATCH else "-"
    expected = _digest(problem.expected, "-") if problem.algorithm else "-"
    found = _digest(problem.found, gone) if problem.algorithm else "-"
    frames = problem.damaged_frames or []
    shown = ", ".join(map(str, frames[:50])) + (f" … ({len(frames)} frames)" * (len(frames) > 50))
    return (
        f"<tr class='problem {_e(problem.kind)}'><td><b>{_e(problem.kind)}</b><br>"
        f"<span class='detail'>{_e(explained)}</span>{detail}</td>"
        f"<td><code>{_e(problem.path or '-')}</code>{_in_object(problem)}</td>"
        f"<td>{_e(problem.algorithm or '-')}</td>"
        f"<td class='expected'>{expected}</td><td class='found'>{found}</td>"
        f"<td>{_e(shown or '-')}</td></tr>"
    )


def _in_object(problem: Problem) -> str:
    """Where a problem of the versions is: the object, and the versions it damages."""
    if problem.object is None:
        return ""
    versions = ", ".join(problem.versions or []) or "none"
    return (
        f"<br><span class='detail versions'>in <code>{_e(problem.object)}</code>;"
        f" versions: {_e(versions)}</span>"
    )


def _digest(value: str | None, none: str) -> str:
    return f"<code class='digest'>{_e(value)}</code>" if value else _e(none)


def _repaired_html(report: AuditReport) -> str:
    """Every file repaired after the audit: which copy, what it was, the copy its verified bytes
    came from, its sha256 (the ledger's)."""
    rows = "".join(
        f"<tr class='repaired'><td class='id'>{_e(done['id'])}</td><td>{_e(done['location'])}</td>"
        f"<td><code>{_e(done['path'])}</code></td><td>{_e(done['was'])}</td>"
        f"<td>{_e(done['source'])}</td><td>{_digest(done['sha256'], '-')}</td></tr>"
        for done in report.repaired
    )
    return (
        f"<h2 id='repaired'>Repaired ({_count(len(report.repaired), 'file')})</h2><p>Each file"
        " replaced by the bytes of a copy that verifies against the ledger's digests, verified"
        " again once written.</p><table id='repaired-table'><tr><th>work</th><th>copy</th>"
        f"<th>file</th><th>was</th><th>repaired from</th><th>sha256</th></tr>{rows}</table>"
    )


def _versions_cell(bag: BagAudit, facts: BagFacts) -> str:
    """The versions of the work checked with its bag, or why none were; a deaccessioned work's
    one version is its tombstone, and the cell says so."""
    if facts.deaccessioned is not None:
        count = bag.object.versions if bag.object is not None else None
        return (
            f"<td class='versions deaccessioned'>{count or '-'}"
            " <span class='detail'>deaccessioned: the tombstone</span></td>"
        )
    if bag.object is None:
        return "<td class='num versions'>-</td>"
    if bag.object.versions is None:
        return "<td class='versions'><span class='detail'>no versions yet</span></td>"
    return f"<td class='num versions'>{bag.object.versions}</td>"


def _bags_html(view: AuditView) -> str:
    bags = sorted(view.report.bags, key=lambda bag: bag.intact)  # damaged first, order kept
    mended = {done["id"] for done in view.report.repaired}
    rows = []
    for bag in bags:
        facts = view.facts[bag.bag]
        outcome = _outcome(bag.intact)
        shown = f"{outcome} (repaired)" if bag.bag in mended else outcome
        history = "".join(
            f"<tr><td>{_e(check.checked_at)}</td><td>{_e(check.outcome)}</td>"
            f"<td class='num'>{_e(_size(check.bytes_read))}</td><td>{_e(check.software)}</td></tr>"
            for check in reversed(facts.history[-HISTORY_ROWS:])
        )
        rows.append(
            f"<tr class='bag {outcome}' id='row-{_e(bag.bag)}'>"
            f"<td>{_title_html(facts)}<br><span class='id'>{_e(bag.bag)}</span></td>"
            f"<td class='outcome'>{_e(shown)}</td><td>{_when(facts.ingested)}</td>"
            f"<td>{_when(facts.last_verified, 'never')}</td>"
            f"<td>{_when(facts.last_intact, 'never')}</td>"
            f"<td class='num'>{_e(_payload(facts))}</td>"
            f"{_versions_cell(bag, facts)}"
            f"<td class='num'>{_e(_size(bag.bytes_read))} in {bag.seconds:.1f} s</td>"
            f"<td><details><summary>{_count(len(facts.history), 'check')}</summary><table><tr>"
            "<th>checked</th><th>outcome</th><th>read</th><th>software</th></tr>"
            f"{history}</table></details></td></tr>"
        )
    return (
        "<h2 id='bags'>Bags and their history</h2><table id='bag-table'><tr><th>work</th>"
        "<th>outcome</th><th>ingested</th><th>last verified</th><th>last found intact</th>"
        "<th>payload</th><th>versions</th><th>read</th><th>history</th></tr>"
        + "".join(rows)
        + "</table>"
    )


# ---------------------------------------------------------------------------------------------
# Files


def write(report: AuditReport, archive: Archive) -> WrittenAuditReport:
    """Write ``reports/audit-<time>.json`` and ``.html`` and replace ``audit-latest.html``, each
    atomically (temporary file, flush, rename). A name already taken (two audits in one second)
    gets a counter rather than replacing an earlier audit's report."""
    view = build(report, archive)
    folder = archive.root / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    # A location's audits have their own names and latest page: the primary's
    # audit-latest.html always shows the primary.
    scope = "" if report.location == PRIMARY else f"{report.location}-"
    stem = f"audit-{scope}" + report.started.replace(":", "").replace("+0000", "Z")
    candidate, n = stem, 1
    while (folder / f"{candidate}.html").exists() or (folder / f"{candidate}.json").exists():
        n += 1
        candidate = f"{stem}-{n}"
    try:
        data = json.dumps(view.as_dict(), indent=2, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in a path or a title: JSON's \u escapes hold it
        data = json.dumps(view.as_dict(), indent=2, ensure_ascii=True).encode("ascii")
    page = render_html(view, f"{candidate}.json").encode("utf-8")
    json_path = write_atomically(folder / f"{candidate}.json", data)
    html_path = write_atomically(folder / f"{candidate}.html", page)
    latest = write_atomically(folder / (f"audit-{scope}latest.html" if scope else LATEST), page)
    return WrittenAuditReport(json=json_path, html=html_path, latest=latest)


def write_reports(report: AuditReport, archive: Archive) -> tuple[Path, Path]:
    """Write the audit's reports (:func:`write`); returns the JSON's and the HTML's paths."""
    written = write(report, archive)
    return written.json, written.html


def _versions(checked: BagAudit | None) -> int | None:
    """The versions of a work its audit checked; None where it has none yet, or they were not
    checked (an unregistered bag, a location's copy)."""
    return checked.object.versions if checked is not None and checked.object else None


def _outcome(intact: bool) -> CheckOutcome:
    """A checked bag's outcome, as the audit log records it."""
    return CheckOutcome.INTACT if intact else CheckOutcome.DAMAGED


def _count(number: int, noun: str) -> str:
    """``1 problem``, ``2 problems``: the report is read by people."""
    return f"{number} {noun}{'s' * (number != 1)}"
