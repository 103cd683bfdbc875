"""The holdings report (``cifa status --holdings``): per work, every copy the ledger knows (the
primary and each storage location), its zone and media, when it was last verified, and the NDSA
Levels of Digital Preservation (2.0) its copies reach for storage and integrity, with the reasons.

Written beside the audit reports, ``ARCHIVE/reports/holdings.html`` and ``holdings.json``, each
replaced atomically: it describes the archive as it is now, not one run, so one address always
holds the current view (the dated audit reports keep the history). It is computed from the ledger
and the settings alone, as ``cifa status`` is: no byte of a bag is read and no location is
contacted, so it answers at once, and says only what the ledger can vouch for.

How the levels are decided (the NDSA's words are in quotes; the rest is this archive's reading):

Storage, counting only *good* copies (every file verified against the ledger; the primary is good
unless its last audit found it damaged):

1. "Two complete copies in separate locations": the primary and one good copy at a location.
2. "Three complete copies, with at least one copy in a separate geographic location": three good
   copies, and one of them in a zone other than the others'. A location's ``zone`` (and
   ``[archive] zone`` for the primary) names where it is and what disaster would take it; two
   copies in different zones are taken to be in separate places with different disaster threats.
3. Level 2, and "at least one copy on a different storage media type": an S3 store beside
   file systems (its kind differs); the zone of level 2 stands for the "geographic location with a
   different disaster threat" too, since one word names both.
4. Level 3, and "at least three copies in geographic locations, each with a different disaster
   threat": three good copies in three different zones.

Integrity:

1. "Verify integrity information ... generate it if not provided": the bag was validated and its
   digests recorded at ingest (every registered bag).
2. "Back up integrity information and store a copy in a separate location": a good copy at a
   location (replication sends the ledger's snapshot, its digests, to every location it reached
   after copying); and the primary "verified at fixed intervals": audited within
   ``[schedules] fixity_rolling_max_age_days``.
3. "Verify integrity information of content at fixed intervals", every copy: each good copy at a
   location verified within its ``audit_every_days`` too (each copy was also verified when it was
   made: replication's own check, an event).
4. "Replace or repair corrupted content as necessary": level 3, no copy of the work damaged,
   missing or half-made (what was found corrupted has been repaired), and two good copies at least
   (one to repair the other from).

A level is reached only with every level below it; the reasons say what holds and, for the next
level, what is lacking. No endpoint, bucket or credential appears: locations are named only.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive, write_atomically
from cifa_ingest.archive.ledger import CheckOutcome, CopyRecord, CopyState, Ledger
from cifa_ingest.demo.replica import UNDECLARED, undeclared_note
from cifa_ingest.reports.ingest_report import CSP, visible
from cifa_ingest.storage.locations import PRIMARY, FilesystemLocation, LocationKind, S3Location

HTML_NAME = "holdings.html"
JSON_NAME = "holdings.json"
#: The highest NDSA level of each area.
TOP_LEVEL = 4

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:90em;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
    "text-align:left;vertical-align:top}.id{font-family:monospace;color:#555}"
    ".good{color:#070}.bad{color:#a00;font-weight:bold}.late{color:#a60}"
    ".level{font-size:1.4em;font-weight:bold;text-align:center}"
    "ul.reasons{margin:.2em 0;padding-left:1.2em;font-size:.85em}"
    ".detail{color:#555;font-size:.85em}"
    "table.copies td,table.copies th{border:none;border-bottom:1px solid #eee;padding:.1em .5em}"
)


@dataclass(frozen=True)
class Place:
    """Where a copy is: the primary or a location of the settings (a location the ledger names
    and the settings do not declare has no kind nor zone, and a ``note`` saying what it is: the
    demo's replica, or a retired or removed location)."""

    name: str
    kind: str | None
    zone: str | None
    audit_every_days: float | None
    note: str | None = None


@dataclass(frozen=True)
class CopyView:
    """One copy of one work."""

    place: Place
    state: CopyState | None
    verified_at: str | None
    #: Verified within the place's interval (its ``audit_every_days``; the primary's rolling audit).
    on_time: bool
    detail: str = ""

    @property
    def good(self) -> bool:
        return self.state is CopyState.GOOD

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.place.name,
            "kind": self.place.kind,
            "zone": self.place.zone,
            "state": str(self.state) if self.state is not None else None,
            "verified_at": self.verified_at,
            "on_time": self.on_time,
            "detail": self.detail,
        }


@dataclass
class WorkHoldings:
    """One work's copies and the NDSA levels they reach."""

    work_id: str
    placed_at: str
    copies: list[CopyView] = field(default_factory=list)
    storage_level: int = 0
    storage_reasons: list[str] = field(default_factory=list)
    integrity_level: int = 0
    integrity_reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "placed_at": self.placed_at,
            "copies": [c.as_dict() for c in self.copies],
            "storage_level": self.storage_level,
            "storage_reasons": self.storage_reasons,
            "integrity_level": self.integrity_level,
            "integrity_reasons": self.integrity_reasons,
        }


@dataclass
class Holdings:
    archive: str
    generated: str
    places: list[Place]
    works: list[WorkHoldings]

    def levels(self, area: str) -> dict[str, int]:
        """How many works reach each level of ``area`` (``storage`` or ``integrity``)."""
        counts = {str(level): 0 for level in range(TOP_LEVEL + 1)}
        for work in self.works:
            counts[str(getattr(work, f"{area}_level"))] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "generated": self.generated,
            "locations": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "zone": p.zone,
                    "audit_every_days": p.audit_every_days,
                    "note": p.note,
                }
                for p in self.places
            ],
            "storage_levels": self.levels("storage"),
            "integrity_levels": self.levels("integrity"),
            "works": [w.as_dict() for w in self.works],
        }


# ---------------------------------------------------------------------------------------------
# From the ledger


def _parse(moment: str | None) -> dt.datetime | None:
    if not moment:
        return None
    try:
        parsed = dt.datetime.fromisoformat(moment)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _within(moment: str | None, days: float | None, now: dt.datetime) -> bool:
    when = _parse(moment)
    return when is not None and days is not None and now - when <= dt.timedelta(days=days)


def gather(
    archive: Archive,
    locations: Sequence[FilesystemLocation | S3Location],
    *,
    primary_zone: str,
    primary_every_days: float,
    now: dt.datetime | None = None,
) -> Holdings:
    """Every registered work's copies and levels, from the ledger and the settings."""
    now = now or dt.datetime.now(dt.UTC)
    ledger, log = Ledger(archive.ledger_path), AuditLog(archive.ledger_path)
    primary = Place(PRIMARY, str(LocationKind.FILESYSTEM), primary_zone, primary_every_days)
    places = {
        loc.name: Place(loc.name, str(loc.kind), loc.zone, loc.audit_every_days)
        for loc in locations
    }
    copies: dict[str, dict[str, CopyRecord]] = {}
    for copy in ledger.copies():
        copies.setdefault(copy.work_id, {})[copy.location] = copy
        if copy.location not in places:
            note = undeclared_note(archive.root, copy.location)
            places[copy.location] = Place(copy.location, None, None, None, note)
    latest = {check.bag_id: check for check in log.latest_checks()}
    works = []
    for record in ledger.bags():
        work = WorkHoldings(record.work_id, record.placed_at)
        check = latest.get(record.work_id)
        damaged = check is not None and check.outcome == CheckOutcome.DAMAGED
        verified = check.checked_at if check is not None else record.placed_at
        work.copies.append(
            CopyView(
                primary,
                CopyState.DAMAGED if damaged else CopyState.GOOD,
                verified,
                _within(verified, primary.audit_every_days, now),
                "its last audit found it damaged" if damaged else "",
            )
        )
        for name, place in places.items():
            found = copies.get(record.work_id, {}).get(name)
            if found is None:
                work.copies.append(CopyView(place, None, None, False, "no copy recorded"))
                continue
            work.copies.append(
                CopyView(
                    place,
                    found.state,
                    found.verified_at,
                    _within(found.verified_at, place.audit_every_days, now),
                    found.detail,
                )
            )
        work.storage_level, work.storage_reasons = storage_level(work.copies)
        work.integrity_level, work.integrity_reasons = integrity_level(work.copies)
        works.append(work)
    return Holdings(
        archive=str(archive.root),
        generated=now.isoformat(timespec="seconds"),
        places=[primary, *places.values()],
        works=works,
    )


def storage_level(copies: Sequence[CopyView]) -> tuple[int, list[str]]:
    """The NDSA storage level the good ``copies`` reach, and why (the module says how)."""
    good = [c for c in copies if c.good]
    zones = {c.place.zone for c in good if c.place.zone is not None}
    kinds = {c.place.kind for c in good if c.place.kind is not None}
    names = ", ".join(c.place.name for c in good) or "none"
    reasons = [
        f"{len(good)} good {_plural(len(good), 'copy', 'copies')} ({names}),"
        f" in {len(zones)} {_plural(len(zones), 'zone', 'zones')}"
        f" ({', '.join(sorted(zones)) or '-'}), on {', '.join(sorted(kinds)) or '-'}"
    ]
    needs = [
        (len(good) >= 2, "level 1 needs two good copies in separate locations"),
        (
            len(good) >= 3 and len(zones) >= 2,
            "level 2 needs three good copies, one in another zone",
        ),
        (len(kinds) >= 2, "level 3 needs a good copy on another media type (S3 beside disks)"),
        (len(zones) >= 3, "level 4 needs good copies in three different zones"),
    ]
    return _climb(needs, reasons)


def integrity_level(copies: Sequence[CopyView]) -> tuple[int, list[str]]:
    """The NDSA integrity level the ``copies`` reach, and why (the module says how)."""
    primary, further = copies[0], [c for c in copies[1:] if c.state is not None]
    good_further = [c for c in further if c.good]
    late = [c.place.name for c in [primary, *good_further] if c.good and not c.on_time]
    bad = [f"{c.place.name} {c.state}" for c in [primary, *further] if not c.good]
    reasons = ["validated and its digests recorded at ingest"]
    if good_further:
        reasons.append(
            "integrity information backed up with the copies at "
            + ", ".join(c.place.name for c in good_further)
        )
    needs = [
        (True, ""),
        (
            bool(good_further) and primary.on_time,
            "level 2 needs a good copy at a location (the ledger's snapshot goes with it) and"
            f" the primary audited within {primary.place.audit_every_days:g} days"
            if primary.place.audit_every_days is not None
            else "level 2 needs a good copy at a location and the primary audited on time",
        ),
        (
            not late,
            f"level 3 needs every copy verified within its interval (late: {', '.join(late)})",
        ),
        (
            not bad and len([c for c in copies if c.good]) >= 2,
            f"level 4 needs every copy good, two at least ({', '.join(bad) or 'one copy only'})",
        ),
    ]
    return _climb(needs, reasons)


def _climb(needs: list[tuple[bool, str]], reasons: list[str]) -> tuple[int, list[str]]:
    """The highest level whose condition holds with every one below it; the first unmet one
    becomes the last reason."""
    level = 0
    for met, why_not in needs:
        if not met:
            if why_not:
                reasons.append(why_not)
            break
        level += 1
    return level, reasons


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


# ---------------------------------------------------------------------------------------------
# HTML


def _e(text: object) -> str:
    return html.escape(visible(str(text)), quote=True)


def _copy_row(copy: CopyView) -> str:
    state = str(copy.state) if copy.state is not None else "none"
    css = "good" if copy.good else "bad"
    when = _e(copy.verified_at) if copy.verified_at else "<span class='detail'>never</span>"
    if copy.on_time or not copy.good:
        late = ""
    elif copy.place.audit_every_days is None:  # a location the settings do not declare
        late = " <span class='late'>(no audit interval: not in the settings)</span>"
    else:
        late = " <span class='late'>(overdue)</span>"
    detail = f"<br><span class='detail'>{_e(copy.detail)}</span>" if copy.detail else ""
    return (
        f"<tr class='copy' data-location='{_e(copy.place.name)}'>"
        f"<td>{_e(copy.place.name)}</td><td>{_e(copy.place.kind or '-')}</td>"
        f"<td class='zone'>{_e(copy.place.zone or '-')}</td>"
        f"<td class='state {css}'>{_e(state)}{detail}</td>"
        f"<td class='verified'>{when}{late}</td></tr>"
    )


def _level_cell(area: str, level: int, reasons: list[str]) -> str:
    items = "".join(f"<li>{_e(reason)}</li>" for reason in reasons)
    return (
        f"<td class='{area}'><div class='level' data-level='{level}'>{level}</div>"
        f"<ul class='reasons'>{items}</ul></td>"
    )


def render_html(holdings: Holdings, titles: dict[str, str | None] | None = None) -> str:
    """The holdings as one self-contained page: inline CSS, no script, no request (the
    Content-Security-Policy forbids both), every value escaped."""
    titles = titles or {}
    storage, integrity = holdings.levels("storage"), holdings.levels("integrity")
    summary = "".join(
        f"<tr><th>level {level}</th><td class='num'>{storage[str(level)]}</td>"
        f"<td class='num'>{integrity[str(level)]}</td></tr>"
        for level in range(TOP_LEVEL + 1)
    )
    places = "".join(
        f"<tr><td>{_e(p.name)}</td><td>{_e(p.kind or p.note or UNDECLARED)}</td>"
        f"<td>{_e(p.zone or '-')}</td>"
        f"<td>{_e(f'{p.audit_every_days:g} days' if p.audit_every_days else '-')}</td></tr>"
        for p in holdings.places
    )
    rows = []
    for work in holdings.works:
        title = titles.get(work.work_id)
        named = f"<bdi class='title'>{_e(title)}</bdi><br>" if title else ""
        copies = "".join(_copy_row(c) for c in work.copies)
        rows.append(
            f"<tr class='work' id='work-{_e(work.work_id)}'>"
            f"<td>{named}<span class='id'>{_e(work.work_id)}</span><br>"
            f"<span class='detail'>ingested {_e(work.placed_at)}</span></td>"
            f"<td><table class='copies'><tr><th>copy</th><th>media</th><th>zone</th>"
            f"<th>state</th><th>last verified</th></tr>{copies}</table></td>"
            + _level_cell("storage", work.storage_level, work.storage_reasons)
            + _level_cell("integrity", work.integrity_level, work.integrity_reasons)
            + "</tr>"
        )
    return "\n".join(
        [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
            f"<title>CIFA holdings {_e(holdings.generated)}</title><style>{_STYLE}</style>",
            "</head><body>",
            f"<h1>Holdings: <span id='works'>{len(holdings.works)}</span> works</h1>",
            f"<p id='summary'>Archive <code>{_e(holdings.archive)}</code>, from its ledger at"
            f" {_e(holdings.generated)}. The NDSA Levels of Digital Preservation (2.0) each work's"
            " copies reach, for storage and for integrity, with the reasons.</p>",
            "<h2>Levels</h2><table id='levels'><tr><th></th><th>storage</th><th>integrity</th>"
            f"</tr>{summary}</table>",
            "<h2>Copies kept at</h2><table id='places'><tr><th>location</th><th>media</th>"
            f"<th>zone</th><th>verified every</th></tr>{places}</table>",
            "<h2>Works</h2><table id='holdings'><tr><th>work</th><th>copies</th>"
            "<th>NDSA storage</th><th>NDSA integrity</th></tr>" + "".join(rows) + "</table>",
            "</body></html>",
        ]
    )


def write(holdings: Holdings, archive: Archive) -> Path:
    """Write ``reports/holdings.html`` and ``holdings.json``, each atomically; returns the
    page's path. Titles come from each bag's own description, as in the audit report."""
    from cifa_ingest.reports.audit_report import _title

    folder = archive.root / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    titles = {}
    for work in holdings.works:
        bag = archive.bags_dir / work.work_id
        titles[work.work_id] = _title(bag) if bag.is_dir() else None
    data = json.dumps(holdings.as_dict(), indent=2, ensure_ascii=False).encode("utf-8")
    write_atomically(folder / JSON_NAME, data)
    return write_atomically(folder / HTML_NAME, render_html(holdings, titles).encode("utf-8"))
