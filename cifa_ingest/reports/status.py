"""The archive at a glance (``cifa status``): what it holds, how the last ingest and the last audit
went, which works are failing, which wait for a source address or a permission, which sources
have vanished. Read from the ledger and the catalogues only: no file is hashed, no source asked,
no Prefect started, so it answers at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CheckOutcome, Ledger, SourceStatus
from cifa_ingest.catalogue.model import load_catalogues
from cifa_ingest.reports.summary import human_bytes


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def archive_status(archive: Archive, manifests: list[Path], missing: Sequence[Path] = ()) -> Status:
    """Gather the status of ``archive``; ``manifests`` (existing ones) tell what is awaited;
    ``missing`` are catalogues looked for and absent, reported as such."""
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
    return "\n".join(lines)
