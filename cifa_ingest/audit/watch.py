"""The source watch: is each preserved film still where it was fetched from, and unchanged?

For a censored cinema, the day a film vanished from the web (or was cut, or made private) is
archival evidence. For every preserved work, each source the archive actually fetched (the URLs of
the bag's ``metadata/capture.json``, not the catalogue's, which may have been edited since) is
asked again, metadata only: the film is not downloaded (yt-dlp opens a plain file's address for
its headers, then closes it) and nothing is written but the ledger
(:func:`cifa_ingest.fetch.ytdlp.probe_source`, through the same source policy as the fetch). What
the
source says now is compared with what it said at capture, and the check is recorded in the ledger
(``source_checks``), where a status that differs from the previous check is a *change*.

Statuses (:class:`~cifa_ingest.archive.ledger.SourceStatus`, the ledger's word, since it stores
them): ``present``, ``changed``, ``gone``, ``private``, ``geo-blocked``, ``unreachable`` (we could
not tell), ``error``.

Only what the source reports can be compared: the video's identity (extractor and id), title,
duration and the set of format ids it offers. A plain file replaced by another film of the same
type at the same address, whose host reports no duration, reads as ``present``.

A host that blocks the watch (a bot wall, 429 after every retry: ``blocked``) is not asked again in
that watch: its other works are not checked, each with a note, and the report names the host once
(:attr:`WatchReport.paused`); the next watch asks again. Asking on would only read as more
``unreachable`` rows and reinforce the block (issue 17: blocks are not verdicts).

No Prefect here: ``pipelines/flows.py`` wraps :func:`watch_work` as a task, and ``cifa watch`` runs
it directly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yt_dlp.version import __version__ as YTDLP_VERSION

from cifa_ingest import __version__
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger, SourceCheckRecord, SourceStatus
from cifa_ingest.config import Settings
from cifa_ingest.errors import FetchError
from cifa_ingest.fetch.failures import FetchErrorKind, block_reason
from cifa_ingest.fetch.pauses import HostPause, site_of
from cifa_ingest.fetch.source_policy import SourcePolicy
from cifa_ingest.fetch.ytdlp import probe_source

log = logging.getLogger(__name__)

SOFTWARE = f"cifa-ingest {__version__} (yt-dlp {YTDLP_VERSION})"

#: How a classified failure of the probe (:class:`~cifa_ingest.fetch.failures.FetchErrorKind`)
#: reads as a status.
_KIND_STATUS = {
    FetchErrorKind.NOT_FOUND: "gone",
    FetchErrorKind.GONE: "gone",
    FetchErrorKind.PRIVATE: "private",
    FetchErrorKind.FORBIDDEN: "private",
    # The film is there, for a signed-in account only: private's neighbour, not gone.
    FetchErrorKind.LOGIN_REQUIRED: "private",
    FetchErrorKind.AGE_RESTRICTED: "private",
    FetchErrorKind.GEO_BLOCKED: "geo-blocked",
    FetchErrorKind.NETWORK: "unreachable",
    FetchErrorKind.SERVER_ERROR: "unreachable",
    FetchErrorKind.RATE_LIMITED: "unreachable",
    # The host blocked us (bot wall, 429, the media's 403): it said nothing of the film.
    FetchErrorKind.BLOCKED: "unreachable",
}

#: Durations closer than this are the same (a container's rounding, a remux), in seconds; a cut
#: of a scene is far longer.
DURATION_TOLERANCE = 0.5


# ---------------------------------------------------------------------------------------------
# The records


@dataclass(frozen=True)
class CapturedSource:
    """One source of a preserved work as captured (from the bag's capture.json)."""

    work_id: str
    index: int
    url: str
    extractor: str
    source_id: str
    title: str | None
    duration: float | None
    formats: tuple[str, ...]

    def described(self) -> dict[str, Any]:
        return {
            "id": f"{self.extractor}:{self.source_id}",
            "title": self.title,
            "duration": self.duration,
            "formats": sorted(self.formats),
        }


@dataclass(frozen=True)
class WatchedWork:
    """A preserved work and the sources to ask about it."""

    work_id: str
    sources: tuple[CapturedSource, ...]


@dataclass(frozen=True)
class Note:
    """A work that was not checked, and why (no capture record, checked recently, …)."""

    work_id: str
    reason: str


@dataclass
class SourceCheck:
    """One check of one source: what it found, and what the ledger knew before."""

    work_id: str
    source_index: int
    url: str
    status: SourceStatus
    checked_at: str
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # field → {old, new}
    error: str | None = None
    error_kind: FetchErrorKind | None = None  # why the source could not be read
    observed: dict[str, Any] | None = None  # what the source said now
    previous_status: SourceStatus | None = None
    since: str | None = None  # when the source entered this status

    @property
    def is_change(self) -> bool:
        """Whether this check's status differs from the previous check of this source."""
        return self.status != self.previous_status

    def details(self) -> dict[str, Any]:
        """What the ledger keeps of the check beyond its status."""
        return {
            "changes": self.changes,
            "error": self.error,
            "error_kind": self.error_kind,
            "observed": self.observed,
        }

    def summary(self) -> str:
        """What changed, or why the source could not be read, in one line."""
        if self.changes:
            return changes_summary(self.changes)
        if self.error:
            return f"{self.error_kind}: {self.error.removeprefix(f'{self.url}: ')}"
        return "-"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "source": self.source_index,
            "url": self.url,
            "status": self.status,
            "checked_at": self.checked_at,
            "since": self.since,
            "previous_status": self.previous_status,
            "is_change": self.is_change,
            "changes": self.changes,
            "error": self.error,
            "error_kind": self.error_kind,
            "observed": self.observed,
        }


@dataclass
class WatchReport:
    """Every check of one watch, and the works it did not check."""

    checks: list[SourceCheck] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    #: The hosts that blocked this watch, each with the works not asked because of it.
    paused: dict[str, tuple[HostPause, list[str]]] = field(default_factory=dict)
    #: ``--recapture``: per work found changed, what its re-capture did (``cifa recapture``'s
    #: JSON document: ``ok``, ``version``, ``error``…); empty when none was asked for.
    recaptures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every source checked is present and unchanged."""
        return all(check.status == SourceStatus.PRESENT for check in self.checks)

    @property
    def recaptured_all(self) -> bool:
        """Whether every source checked is present, or changed and its work captured again
        into a new version by ``--recapture``."""
        done = {r["id"] for r in self.recaptures if r.get("ok")}
        return all(
            check.status == SourceStatus.PRESENT
            or (check.status == SourceStatus.CHANGED and check.work_id in done)
            for check in self.checks
        )

    def to_recapture(self) -> tuple[list[str], list[tuple[str, str]]]:
        """The works to capture again: those with a source ``changed`` in this watch and every
        other source ``present``; and the works with a changed source that are not, with why (a
        source gone, private, unreachable…: a source that is not all there is never fetched
        again)."""
        by_work: dict[str, list[SourceCheck]] = {}
        for check in self.checks:
            by_work.setdefault(check.work_id, []).append(check)
        wanted, refused = [], []
        for work_id, checks in by_work.items():
            if not any(check.status == SourceStatus.CHANGED for check in checks):
                continue
            others = [
                f"source {check.source_index} is {check.status}"
                for check in checks
                if check.status not in (SourceStatus.CHANGED, SourceStatus.PRESENT)
            ]
            if others:
                refused.append((work_id, f"not captured again: {', '.join(others)}"))
            else:
                wanted.append(work_id)
        return wanted, refused

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(check.status for check in self.checks).items()))

    def summary_line(self) -> str:
        counts = "".join(f", {n} {status}" for status, n in self.counts.items())
        line = f"{len(self.checks)} source(s) checked{counts}"
        line += f"; {len(self.notes)} work(s) not checked" if self.notes else ""
        for pause, deferred in self.paused.values():
            line += f"; {pause.sentence}: {len(deferred)} work(s) left for the next watch"
        return line

    def as_dict(self, archive: str) -> dict[str, Any]:
        return {
            "archive": archive,
            "sources": [check.as_dict() for check in self.checks],
            "skipped": [{"id": note.work_id, "reason": note.reason} for note in self.notes],
            "paused_hosts": [
                {
                    "site": pause.site,
                    "reason": pause.reason,
                    "at": pause.at,
                    "work_id": pause.work_id,
                    "not_checked": deferred,
                }
                for pause, deferred in self.paused.values()
            ],
            "counts": self.counts,
            "ok": self.ok,
            "recaptures": self.recaptures,
        }


def changes_summary(changes: dict[str, dict[str, Any]]) -> str:
    """What changed ({field: {old, new}}, as a check records it), in one line."""
    return "; ".join(
        f"{name}: {_shown(change.get('old'))} → {_shown(change.get('new'))}"
        for name, change in changes.items()
        if isinstance(change, dict)
    )


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# What to watch


def captured_sources(work_id: str, bag_dir: Path) -> list[CapturedSource]:
    """The sources the bag's capture record says were fetched, in order. Raises ValueError when
    there is no usable capture record (the message says why)."""
    path = bag_dir / "metadata" / "capture.json"
    if not path.is_file():
        raise ValueError("the bag has no metadata/capture.json: nothing says where it came from")
    try:
        record = json.loads(path.read_text("utf-8"))
        sources = [
            CapturedSource(
                work_id=work_id,
                index=int(source["index"]),
                url=str(source["url"]),
                extractor=str(source["extractor"]),
                source_id=str(source["source_id"]),
                title=source.get("title"),
                duration=source.get("duration"),
                formats=tuple(
                    str(fmt["format_id"])
                    for fmt in source.get("formats_available") or []
                    if fmt.get("format_id") is not None
                ),
            )
            for source in record["sources"]
        ]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"metadata/capture.json cannot be read: {exc!r}") from None
    if not sources:
        raise ValueError("metadata/capture.json lists no source")
    return sources


def plan(
    archive: Archive,
    work_ids: Iterable[str] | None = None,
    *,
    min_interval: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> tuple[list[WatchedWork], list[Note]]:
    """Which preserved works to check (``work_ids``, or every bag in the ledger) and their
    captured sources; the others get a note. Reads only the ledger and the bags: no request.

    With ``min_interval``, a work whose every source was checked more recently than that is left
    out (a nightly run started again the same night does not ask the sources twice)."""
    ledger = Ledger(archive.ledger_path)
    bags = {record.work_id: record for record in ledger.bags()}
    wanted = list(dict.fromkeys(work_ids)) if work_ids is not None else sorted(bags)
    latest: dict[str, list[SourceCheckRecord]] = {}
    if min_interval is not None:
        for record in ledger.latest_source_checks(wanted):
            latest.setdefault(record.work_id, []).append(record)
    cutoff = (now or dt.datetime.now(dt.UTC)) - (min_interval or dt.timedelta())
    works, notes = [], []
    for work_id in wanted:
        if work_id not in bags:
            notes.append(Note(work_id, "not preserved: nothing to watch"))
            continue
        bag_dir = archive.root / bags[work_id].bag_path
        if not bag_dir.is_dir():
            notes.append(Note(work_id, f"{bags[work_id].bag_path} is missing; run an audit"))
            continue
        try:
            sources = captured_sources(work_id, bag_dir)
        except ValueError as exc:
            notes.append(Note(work_id, str(exc)))
            continue
        recent = latest.get(work_id, [])
        if (
            min_interval is not None
            and {r.source_index for r in recent} >= {s.index for s in sources}
            and all(dt.datetime.fromisoformat(r.checked_at) > cutoff for r in recent)
        ):
            statuses = ", ".join(f"source {r.source_index} {r.status}" for r in recent)
            oldest = min(r.checked_at for r in recent)
            notes.append(Note(work_id, f"checked at {oldest} ({statuses})"))
            continue
        works.append(WatchedWork(work_id, tuple(sources)))
    return works, notes


# ---------------------------------------------------------------------------------------------
# Asking the sources


def compare(captured: CapturedSource, info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What differs between the capture and what the source says now (``probe_source``'s info),
    as {field: {"old", "new"}}, for the video's identity, title, duration and formats."""
    observed = describe(info)
    old = captured.described()
    changes = {}
    for name in ("id", "title", "formats"):
        if old[name] != observed[name]:
            changes[name] = {"old": old[name], "new": observed[name]}
    before, now = old["duration"], observed["duration"]
    if (before is None) != (now is None) or (
        before is not None and now is not None and abs(before - now) > DURATION_TOLERANCE
    ):
        changes["duration"] = {"old": before, "new": now}
    return changes


def describe(info: dict[str, Any]) -> dict[str, Any]:
    """What a source says about its video, in the terms of the capture record (fetch.py names
    the extractor and id the same way)."""
    extractor = str(info.get("extractor_key") or info.get("extractor") or "unknown")
    duration = info.get("duration")
    return {
        "id": f"{extractor}:{info.get('id') or ''}",
        "title": info.get("title"),
        "duration": float(duration) if isinstance(duration, int | float) else None,
        "formats": sorted(
            {
                str(fmt["format_id"])
                for fmt in info.get("formats") or []
                if fmt.get("format_id") is not None
            }
        ),
    }


def check_source(source: CapturedSource, settings: Settings, policy: SourcePolicy) -> SourceCheck:
    """Ask one source, metadata only, and classify the answer. Never raises for the source's
    sake: whatever happens becomes the check's status."""
    log.info("%s: asking source %d, %s", source.work_id, source.index, source.url)
    status, changes, observed = SourceStatus.ERROR, {}, None
    error: str | None = None
    kind: FetchErrorKind | None = None
    try:
        info = probe_source(source.url, settings.fetch, policy)
    except FetchError as exc:
        kind, error = exc.kind, exc.message
        # The mapping's values are spellings of SourceStatus: checked here, whatever it holds.
        status = SourceStatus(_KIND_STATUS.get(exc.kind, SourceStatus.ERROR))
    except Exception as exc:  # a library's surprise must not stop the watch of the others
        log.warning(
            "%s: checking %s failed unexpectedly", source.work_id, source.url, exc_info=True
        )
        kind, error = FetchErrorKind.ERROR, f"unexpected {type(exc).__name__}: {exc}"
    else:
        observed = describe(info)
        changes = compare(source, info)
        status = SourceStatus.CHANGED if changes else SourceStatus.PRESENT
    return SourceCheck(
        work_id=source.work_id,
        source_index=source.index,
        url=source.url,
        status=status,
        checked_at="",
        changes=changes,
        error=error,
        error_kind=kind,
        observed=observed,
    )


def record(ledger: Ledger, check: SourceCheck) -> SourceCheck:
    """Store the check in the ledger; fills in its time, the previous status and since when."""
    stored = ledger.record_source_check(
        check.work_id, check.source_index, check.url, check.status, check.details(), SOFTWARE
    )
    check.checked_at, check.previous_status, check.since = (
        stored.checked_at,
        stored.previous_status,
        stored.since,
    )
    if check.is_change and check.previous_status is not None:
        log.warning(
            "%s: source %d is now %s (was %s): %s",
            check.work_id,
            check.source_index,
            check.status,
            check.previous_status,
            check.summary(),
        )
    return check


def watch_work(
    work: WatchedWork, archive: str | Path, settings: Settings, *, allow_private_sources: bool
) -> list[SourceCheck]:
    """Check every source of one preserved work and record each check in the ledger."""
    policy = SourcePolicy.of(settings.fetch, allow_private_sources)
    ledger = Ledger(Archive(archive).ledger_path)
    return [record(ledger, check_source(source, settings, policy)) for source in work.sources]


#: How one work is checked: directly, or (in pipelines/) as a Prefect task.
WorkRunner = Callable[[WatchedWork], list[SourceCheck]]


def run(
    works: Iterable[WatchedWork],
    archive: Archive,
    settings: Settings,
    *,
    allow_private_sources: bool,
    notes: Iterable[Note] = (),
    run_work: WorkRunner | None = None,
) -> WatchReport:
    """Check the planned works, one after the other (the sources' hosts are asked politely,
    one request at a time). A host that answers ``blocked`` is not asked again in this watch:
    the works with a source there are left with a note, and the report names the host once."""

    def directly(work: WatchedWork) -> list[SourceCheck]:
        return watch_work(work, archive.root, settings, allow_private_sources=allow_private_sources)

    def site(url: str) -> str:
        return site_of(url, settings.fetch.allowed_hosts)

    report = WatchReport(notes=list(notes))
    for work in works:
        blocked = next(
            (report.paused[s] for s in (site(x.url) for x in work.sources) if s in report.paused),
            None,
        )
        if blocked is not None:
            pause, deferred = blocked
            deferred.append(work.work_id)
            report.notes.append(Note(work.work_id, f"not asked: {pause.sentence}"))
            continue
        checks = (run_work or directly)(work)
        report.checks.extend(checks)
        for check in checks:
            if check.error_kind == FetchErrorKind.BLOCKED and site(check.url) not in report.paused:
                at = dt.datetime.now(dt.UTC).strftime("%H:%M")
                reason = block_reason(check.error or "")
                pause = HostPause(site(check.url), reason, at, work.work_id)
                report.paused[pause.site] = (pause, [])
                log.warning("%s; the watch asks its other works next time", pause.sentence)
    log.info("source watch: %s", report.summary_line())
    return report


def watch(
    archive: Archive,
    settings: Settings,
    work_ids: Iterable[str] | None = None,
    *,
    allow_private_sources: bool = False,
    min_interval: dt.timedelta | None = None,
) -> WatchReport:
    """Plan and run a watch of ``work_ids`` (or of every preserved work)."""
    works, notes = plan(archive, work_ids, min_interval=min_interval)
    return run(works, archive, settings, allow_private_sources=allow_private_sources, notes=notes)


# ---------------------------------------------------------------------------------------------
# For people


def table(report: WatchReport) -> str:
    """The watch as a table: work, source, status, since when, what changed (or why unknown)."""
    columns = [("work", 16), ("source", 44), ("status", 11), ("since", 25)]
    lines = ["  ".join(name.ljust(width) for name, width in columns) + "  what changed"]
    lines.append("  ".join("-" * width for _name, width in [*columns, ("", 13)]))
    for check in report.checks:
        status = check.status if check.status == SourceStatus.PRESENT else check.status.upper()
        source = f"{check.source_index} {check.url}"
        if len(source) > 44:
            source = source[:43] + "…"
        cells = [check.work_id, source, status, check.since or "-"]
        summary = check.summary()
        if check.is_change and check.previous_status is not None:
            summary = f"(was {check.previous_status}) {summary}"
        lines.append(
            "  ".join(c.ljust(w) for c, (_n, w) in zip(cells, columns, strict=True))
            + f"  {summary}"
        )
    lines.append("")
    lines.append(report.summary_line())
    for note in report.notes:
        lines.append(f"  {note.work_id}: not checked: {note.reason}")
    if report.recaptures:
        lines.append(f"re-captures: {len(report.recaptures)}")
        for done in report.recaptures:
            what = (
                f"version {done['version']} ({done.get('message')})"
                if done.get("ok")
                else f"no new version: {done.get('error')}"
            )
            lines.append(f"  {done['id']}: {what}")
    return "\n".join(lines)
