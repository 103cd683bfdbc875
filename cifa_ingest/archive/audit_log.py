"""The audit log: every fixity check of every bag, and every preservation event of its copies
(a copy checked, a file copied to replace a bad one, a copy recovered), hash-chained so that
tampering shows.

Each record carries the SHA-256 of the previous record, and its own digest covers its content and
that link. Altering a record breaks its own digest; deleting one breaks the next record's link; and
the chain's head (last id and digest) is kept in a row of its own, so that cutting records off the
end is caught too. ``cifa ledger verify`` walks the chain. It lives in the archive's ledger file,
in tables of its own.

The preservation events of repair (schema version 3) are a second chain, in
``preservation_events`` with its own head row (``events_chain_head``), built and checked the same
way: the fixity checks' chain was left as it was, so a ledger made before keeps verifying, and an
audit's "last verified" counts only fixity checks. :meth:`AuditLog.verify` walks both.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cifa_ingest.archive.ledger import CheckOutcome, connect, now
from cifa_ingest.archive.migrations import upgrade

GENESIS = "0" * 64
_FIELDS = ("bag_id", "checked_at", "software", "outcome", "problems", "bytes_read", "seconds")
_EVENT_FIELDS = (
    "bag_id", "event_type", "event_at", "location", "outcome", "detail", "software"
)  # fmt: skip


class EventType(StrEnum):
    """The PREMIS event types of a copy's life after ingest (``preservation_events.event_type``),
    terms of the Library of Congress preservation event-type vocabulary
    (id.loc.gov/vocabulary/preservation/eventType): ``cifa events`` shows them as they are."""

    #: Every file of one copy re-read and re-hashed against the ledger's digests.
    FIXITY_CHECK = "fixity check"
    #: One file copied, verified, from a copy that verifies to one that did not.
    REPLICATION = "replication"
    #: A copy found damaged or missing made whole again (or, failed: it could not be).
    RECOVERY = "recovery"


class EventOutcome(StrEnum):
    """How a preservation event ended (``preservation_events.outcome``; PREMIS eventOutcome)."""

    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class PreservationEvent:
    """One preservation event of one bag's copy, as recorded."""

    id: int
    bag_id: str
    event_type: EventType
    event_at: str
    location: str
    outcome: EventOutcome
    detail: dict[str, Any]
    software: str


def _event(row: tuple[Any, ...]) -> PreservationEvent:
    return PreservationEvent(
        row[0], row[1], EventType(row[2]), row[3], row[4], EventOutcome(row[5]),
        json.loads(row[6]), row[7],
    )  # fmt: skip


@dataclass(frozen=True)
class Check:
    """One fixity check of one bag, as recorded."""

    id: int
    bag_id: str
    checked_at: str
    software: str
    outcome: CheckOutcome
    problems: list[dict[str, Any]]
    bytes_read: int
    seconds: float


def _check(row: tuple[Any, ...]) -> Check:
    outcome = CheckOutcome(row[4])
    return Check(row[0], row[1], row[2], row[3], outcome, json.loads(row[5]), row[6], row[7])


def _digest(prev_hash: str, values: dict[str, Any]) -> str:
    canonical = json.dumps({"prev": prev_hash, **values}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AuditLog:
    """The hash-chained record of fixity checks in ``ledger.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        upgrade(path)  # its tables are the ledger's migrations' (cifa_ingest.archive.migrations)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.path, autocommit=True)  # record() begins its own transaction

    def record(
        self,
        bag_id: str,
        checked_at: str,
        software: str,
        outcome: CheckOutcome,
        problems: list[dict[str, Any]],
        bytes_read: int,
        seconds: float,
    ) -> None:
        if CheckOutcome(outcome) is CheckOutcome.UNREGISTERED:  # also refuses an unknown word
            raise ValueError("a fixity check's outcome is intact or damaged, never unregistered")
        values = {
            "bag_id": bag_id,
            "checked_at": checked_at,
            "software": software,
            "outcome": str(outcome),  # the value: the chain's digests hash plain strings
            "problems": json.dumps(problems, sort_keys=True, ensure_ascii=False),
            "bytes_read": int(bytes_read),
            "seconds": round(float(seconds), 3),
        }
        self._append("fixity_checks", "fixity_chain_head", _FIELDS, values)

    def _append(
        self, table: str, head_table: str, fields: tuple[str, ...], values: dict[str, Any]
    ) -> int:
        """Append ``values`` to the chain kept in ``table`` (its last link in ``head_table``):
        the one way both chains grow, so that both are hashed and linked alike. One writer
        extends a chain at a time. Table and field names are this module's constants, never
        input. Returns the new row's id."""
        columns = ", ".join((*fields, "prev_hash", "record_hash"))
        marks = ", ".join("?" * (len(fields) + 2))
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            head = conn.execute(f"SELECT last_hash FROM {head_table}").fetchone()
            prev = head[0] if head else GENESIS
            record_hash = _digest(prev, values)
            cursor = conn.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                (*[values[k] for k in fields], prev, record_hash),
            )
            conn.execute(
                f"INSERT INTO {head_table} (one, last_id, last_hash) VALUES (1, ?, ?)"
                " ON CONFLICT (one) DO UPDATE SET last_id = excluded.last_id,"
                " last_hash = excluded.last_hash",
                (cursor.lastrowid, record_hash),
            )
            conn.execute("COMMIT")
        return int(cursor.lastrowid or 0)

    def record_event(
        self,
        bag_id: str,
        event_type: EventType | str,
        location: str,
        outcome: EventOutcome | str,
        detail: dict[str, Any],
        software: str,
        event_at: str | None = None,
    ) -> PreservationEvent:
        """Append one preservation event to its chain (a word not of :class:`EventType` or
        :class:`EventOutcome` is refused before anything is written). ``detail`` names files,
        copies and digests, never a credential."""
        event_type, outcome = EventType(event_type), EventOutcome(outcome)
        values: dict[str, Any] = {
            "bag_id": bag_id,
            "event_type": str(event_type),
            "event_at": event_at or now(),
            "location": location,
            "outcome": str(outcome),
            "detail": json.dumps(detail, sort_keys=True, ensure_ascii=False),
            "software": software,
        }
        row_id = self._append("preservation_events", "events_chain_head", _EVENT_FIELDS, values)
        return PreservationEvent(
            row_id, bag_id, event_type, values["event_at"], location,
            outcome, detail, software,
        )  # fmt: skip

    def events(self, bag_id: str) -> list[PreservationEvent]:
        """Every preservation event of one bag's copies, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, " + ", ".join(_EVENT_FIELDS) + " FROM preservation_events"
                " WHERE bag_id = ? ORDER BY id",
                (bag_id,),
            ).fetchall()
        return [_event(row) for row in rows]

    def last_verified(self) -> dict[str, str]:
        """When each bag was last checked (ISO time), by bag id."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT bag_id, MAX(checked_at) FROM fixity_checks GROUP BY bag_id"
            ).fetchall()
        return dict(rows)

    def history(self, bag_id: str) -> list[Check]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, bag_id, checked_at, software, outcome, problems, bytes_read, seconds"
                " FROM fixity_checks WHERE bag_id = ? ORDER BY id",
                (bag_id,),
            ).fetchall()
        return [_check(row) for row in rows]

    def latest_checks(self) -> list[Check]:
        """The latest check of each bag ever checked, by bag id."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, bag_id, checked_at, software, outcome, problems, bytes_read, seconds"
                " FROM fixity_checks WHERE id IN"
                " (SELECT MAX(id) FROM fixity_checks GROUP BY bag_id) ORDER BY bag_id"
            ).fetchall()
        return [_check(row) for row in rows]

    def verify(self) -> list[str]:
        """Every break in the chains (fixity checks, then preservation events), described; an
        empty list when the log is intact."""
        with self._connect() as conn:
            checks = conn.execute(
                "SELECT id, " + ", ".join(_FIELDS) + ", prev_hash, record_hash"
                " FROM fixity_checks ORDER BY id"
            ).fetchall()
            checks_head = conn.execute(
                "SELECT last_id, last_hash FROM fixity_chain_head"
            ).fetchone()
            events = conn.execute(
                "SELECT id, " + ", ".join(_EVENT_FIELDS) + ", prev_hash, record_hash"
                " FROM preservation_events ORDER BY id"
            ).fetchall()
            events_head = conn.execute(
                "SELECT last_id, last_hash FROM events_chain_head"
            ).fetchone()
        problems = _verify_chain(checks, checks_head, _FIELDS, "record")
        problems += _verify_chain(events, events_head, _EVENT_FIELDS, "preservation event")
        return problems


def _verify_chain(
    rows: list[tuple[Any, ...]],
    head: tuple[Any, ...] | None,
    fields: tuple[str, ...],
    what: str,
) -> list[str]:
    """The breaks of one chain: ``rows`` are (id, *fields, prev_hash, record_hash)."""
    chain = "the chain's" if what == "record" else f"the {what}s' chain"
    problems = []
    prev = GENESIS
    width = len(fields)
    for row in rows:
        values = dict(zip(fields, row[1 : width + 1], strict=True))
        if "seconds" in values:
            values["seconds"] = round(float(values["seconds"]), 3)
        link, digest = row[width + 1], row[width + 2]
        if link != prev:
            problems.append(
                f"{what} {row[0]}: its link does not match the record before it"
                " (a record was deleted or inserted)"
            )
        if _digest(link, values) != digest:
            problems.append(f"{what} {row[0]} ({row[1]}, {row[2]}): its content was altered")
        prev = digest
    if rows and (head is None or (head[0], head[1]) != (rows[-1][0], rows[-1][width + 2])):
        problems.append(f"{chain} head does not match its last record (records removed)")
    if not rows and head is not None:
        problems.append(f"{chain} head names records that are gone")
    return problems
