"""The archive at a glance (``cifa status``): what it holds, how the last ingest and the last audit
went, which works are failing, which wait for a source address or a permission, which sources
have vanished, and, per storage location, its copies, their last verification and the problems.
Read from the ledger, the settings and the catalogues only: no file is hashed, no source or
location asked, no Prefect started, so it answers at once (and says only what the ledger knows:
a location's copies are as its last replication or audit left them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CheckOutcome, CopyRecord, CopyState, Ledger, SourceStatus
from cifa_ingest.catalogue.model import load_catalogues
from cifa_ingest.demo.replica import UNDECLARED, undeclared_note
from cifa_ingest.reports.summary import human_bytes
from cifa_ingest.storage.locations import FilesystemLocation, S3Location


class RunOutcome(StrEnum):
    """How the last ingest went, as a whole (``last_ingest.outcome`` of ``cifa status --json``):
    ``failed`` when any of its works failed. The last audit's outcome is a bag's word,
    :class:`~cifa_ingest.archive.ledger.CheckOutcome` (``damaged`` when any bag is)."""

    OK = "ok"
    FAILED = "failed"


#: Sources that are not listed as vanished: there, or not known to be otherwise (unreachable:
#: the watch could not tell, and a network outage must not read as a censored film).
_NOT_VANISHED = frozenset({SourceStatus.PRESENT, SourceStatus.UNREACHABLE})


@dataclass
class Status:
    archive: str
    bags: int = 0
    payload_bytes: int = 0
    last_ingest: dict[str, Any] | None = None
    last_audit: dict[str, Any] | None = None
    failing: list[dict[str, Any]] = field(default_factory=list)
    awaiting_source: list[str] | None = None
    awaiting_permission: list[str] | None = None
    vanished: list[dict[str, Any]] = field(default_factory=list)
    #: The catalogues read, and those looked for and absent. With none read, what awaits a
    #: source address or a permission is not known: ``awaiting_*`` are None, not empty.
    catalogues: list[str] = field(default_factory=list)
    missing_catalogues: list[str] = field(default_factory=list)
    #: Per storage location (those of the settings, then any the ledger names that the settings
    #: do not declare: retired, removed, or the demo's replica): :func:`location_status`.
    locations: list[dict[str, Any]] = field(default_factory=list)
    #: The holdings report's page, when ``cifa status --holdings`` wrote it.
    holdings_report: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def location_status(
    name: str,
    location: FilesystemLocation | S3Location | None,
    copies: Sequence[CopyRecord],
    works: Sequence[str],
    now: dt.datetime,
    note: str | None = None,
) -> dict[str, Any]:
    """One location as the ledger knows it: its copies by state (``absent``: bags with no copy
    recorded there), the oldest and newest verification of its good copies, how many good copies
    are ``overdue`` (not verified within its ``audit_every_days``), and every problem: each copy
    not good, with the ledger's detail, and each bag without a copy. ``note`` says what a
    location the settings do not declare is (:func:`cifa_ingest.demo.replica.undeclared_note`)."""
    counts = {str(state): 0 for state in CopyState} | {"absent": 0}
    problems: list[dict[str, Any]] = []
    held = {copy.work_id: copy for copy in copies}
    verified = sorted(c.verified_at for c in copies if c.state is CopyState.GOOD and c.verified_at)
    every = location.audit_every_days if location is not None else None
    overdue = 0
    for copy in copies:
        counts[str(copy.state)] += 1
        if copy.state is not CopyState.GOOD:
            problems.append({"id": copy.work_id, "state": str(copy.state), "detail": copy.detail})
        elif every is not None and copy.verified_at:
            when = dt.datetime.fromisoformat(copy.verified_at)
            overdue += now - when > dt.timedelta(days=every)
    for work_id in works:
        if work_id not in held:
            counts["absent"] += 1
            problems.append({"id": work_id, "state": None, "detail": "no copy recorded"})
    return {
        "name": name,
        "declared": location is not None,
        "note": note if location is None else None,
        "kind": str(location.kind) if location is not None else None,
        "zone": location.zone if location is not None else None,
        "audit_every_days": every,
        "copies": counts,
        "oldest_verified": verified[0] if verified else None,
        "last_verified": verified[-1] if verified else None,
        "overdue": overdue,
        "problems": problems,
    }


def archive_status(
    archive: Archive,
    manifests: list[Path],
    missing: Sequence[Path] = (),
    locations: Sequence[FilesystemLocation | S3Location] = (),
) -> Status:
    """Gather the status of ``archive``; ``manifests`` (existing ones) tell what is awaited;
    ``missing`` are catalogues looked for and absent, reported as such; ``locations`` are the
    storage locations of the settings."""
    status = Status(
        archive=str(archive.root),
        catalogues=[str(m.absolute()) for m in manifests],
        missing_catalogues=[str(m.absolute()) for m in missing],
    )
    if archive.ledger_path.is_file():
        ledger, log = Ledger(archive.ledger_path), AuditLog(archive.ledger_path)
        status.bags = len(ledger.bags())
        status.payload_bytes = ledger.payload_bytes()
        if (run := ledger.last_run()) is not None:
            outcome = RunOutcome.FAILED if run.failed else RunOutcome.OK
            status.last_ingest = {
                "at": run.at,
                "works": run.works,
                "failed": run.failed,
                "outcome": outcome,
            }
        if latest := log.latest_checks():
            damaged = sum(check.outcome != CheckOutcome.INTACT for check in latest)
            status.last_audit = {
                "at": max(check.checked_at for check in latest),
                "bags": len(latest),
                "damaged": damaged,
                "outcome": CheckOutcome.DAMAGED if damaged else CheckOutcome.INTACT,
            }
        for failure in ledger.failing_works():
            first_line = failure.error.splitlines()[0] if failure.error else ""
            status.failing.append(
                {
                    "id": failure.work_id,
                    "at": failure.at,
                    "kind": failure.error_kind,
                    "error": first_line,
                }
            )
        works = [record.work_id for record in ledger.bags()]
        copies = ledger.copies()
        declared = {location.name: location for location in locations}
        names = list(declared) + sorted({c.location for c in copies} - set(declared))
        now = dt.datetime.now(dt.UTC)
        for name in names:
            status.locations.append(
                location_status(
                    name,
                    declared.get(name),
                    [c for c in copies if c.location == name],
                    works,
                    now,
                    None if name in declared else undeclared_note(archive.root, name),
                )
            )
        for check in ledger.latest_source_checks():
            if check.status not in _NOT_VANISHED:
                status.vanished.append(
                    {
                        "id": check.work_id,
                        "source": check.source_index,
                        "status": check.status,
                        "since": check.since,
                    }
                )
    if manifests:
        status.awaiting_source, status.awaiting_permission = [], []
        for _path, catalogue in load_catalogues(manifests):
            for work in catalogue.works:
                if not work.is_permitted:
                    status.awaiting_permission.append(work.id)
                elif not work.has_source_address:
                    status.awaiting_source.append(work.id)
    return status


def render(status: Status) -> str:
    lines = [
        f"Archive: {status.archive}",
        f"Bags: {status.bags}, {human_bytes(status.payload_bytes)} of payload",
    ]
    ingest = status.last_ingest
    lines.append(
        f"Last ingest: {ingest['at']}, {ingest['works']} works, {ingest['failed']} failed"
        if ingest
        else "Last ingest: none yet"
    )
    audit = status.last_audit
    lines.append(
        f"Last audit: {audit['at']}, {audit['bags']} bags, {audit['damaged']} damaged"
        if audit
        else "Last audit: none yet"
    )
    lines.append(f"Works failing: {len(status.failing)}")
    lines += [f"  {f['id']}: {f['kind']}: {f['error']}" for f in status.failing]
    if status.awaiting_source is None or status.awaiting_permission is None:
        looked = ", ".join(status.missing_catalogues)
        why = f"no catalogue at {looked}" if looked else "no catalogue configured"
        lines.append(f"Awaiting a source address or permission: unknown ({why})")
    else:
        lines.append(f"Awaiting a source address: {len(status.awaiting_source)}")
        lines.append(f"Awaiting permission: {len(status.awaiting_permission)}")
        lines += [f"  not counted, no such catalogue: {m}" for m in status.missing_catalogues]
    lines.append(f"Sources vanished or changed: {len(status.vanished)}")
    lines += [
        f"  {v['id']} source {v['source']}: {v['status']} since {v['since']}"
        for v in status.vanished
    ]
    lines.append(f"Storage locations: {len(status.locations) or 'none declared'}")
    for location in status.locations:
        where = (
            f"{location['kind']}, zone {location['zone']}"
            if location["declared"]
            else location["note"] or UNDECLARED
        )
        counts = ", ".join(f"{n} {state}" for state, n in location["copies"].items())
        late = f", {location['overdue']} overdue" if location["overdue"] else ""
        lines.append(
            f"  {location['name']} ({where}): {counts}; verified"
            f" {location['oldest_verified'] or 'never'} to {location['last_verified'] or 'never'}"
            f"{late}"
        )
        for problem in location["problems"]:
            state, detail = problem["state"] or "no copy", problem["detail"] or ""
            # Repair's detail already begins with the state ("damaged: data/…"): said once.
            said = detail if detail.startswith(state) else f"{state}: {detail}" if detail else state
            lines.append(f"    {problem['id']}: {said}")
    if status.holdings_report:
        lines.append(f"Holdings report: {status.holdings_report}")
    return "\n".join(lines)
