"""The archive at a glance (``cifa status``): what it holds, how the last ingest and the last audit
went, which works are failing, which wait for a source address or a permission, which sources
have vanished. Read from the ledger and the catalogues only: no file is hashed, no source asked,
no Prefect started, so it answers at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.archive import Archive
from cifa_ingest.catalogue import load_catalogues
from cifa_ingest.ledger import Ledger, connect
from cifa_ingest.report import human_bytes


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


def _rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    try:
        with connect(path) as conn:
            return conn.execute(query).fetchall()
    except sqlite3.OperationalError:  # a table not made yet: nothing of that kind happened
        return []


def archive_status(archive: Archive, manifests: list[Path], missing: Sequence[Path] = ()) -> Status:
    """Gather the status of ``archive``; ``manifests`` (existing ones) tell what is awaited;
    ``missing`` are catalogues looked for and absent, reported as such."""
    status = Status(
        archive=str(archive.root),
        catalogues=[str(m.absolute()) for m in manifests],
        missing_catalogues=[str(m.absolute()) for m in missing],
    )
    if archive.ledger_path.is_file():
        ledger = archive.ledger_path
        status.bags = len(Ledger(ledger).bags())
        sizes = _rows(ledger, "SELECT COALESCE(SUM(size), 0) FROM bag_files")
        status.payload_bytes = int(sizes[0][0]) if sizes else 0
        last = _rows(
            ledger,
            "SELECT run_id, MAX(at), COUNT(*), SUM(outcome = 'failed') FROM work_outcomes"
            " WHERE run_id = (SELECT run_id FROM work_outcomes ORDER BY id DESC LIMIT 1)",
        )
        if last and last[0][0]:
            _run_id, at, works, failed = last[0]
            outcome = "failed" if failed else "ok"
            status.last_ingest = {"at": at, "works": works, "failed": failed, "outcome": outcome}
        audits = _rows(
            ledger,
            "SELECT MAX(checked_at), COUNT(*), SUM(outcome != 'intact') FROM fixity_checks"
            " WHERE id IN (SELECT MAX(id) FROM fixity_checks GROUP BY bag_id)",
        )
        if audits and audits[0][0]:
            at, bags, damaged = audits[0]
            outcome = "damaged" if damaged else "intact"
            status.last_audit = {"at": at, "bags": bags, "damaged": damaged, "outcome": outcome}
        for work_id, at, kind, error in _rows(
            ledger,
            "SELECT work_id, at, error_kind, error FROM work_outcomes WHERE id IN"
            " (SELECT MAX(id) FROM work_outcomes GROUP BY work_id) AND outcome = 'failed'"
            " ORDER BY work_id",
        ):
            first_line = (error or "").splitlines()[0] if error else ""
            status.failing.append({"id": work_id, "at": at, "kind": kind, "error": first_line})
        for check in Ledger(ledger).latest_source_checks():
            if check.status not in {"present", "unreachable"}:
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
