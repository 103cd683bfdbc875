"""The audit log: every fixity check of every bag, hash-chained so that tampering shows.

Each record carries the SHA-256 of the previous record, and its own digest covers its content and
that link. Altering a record breaks its own digest; deleting one breaks the next record's link; and
the chain's head (last id and digest) is kept in a row of its own, so that cutting records off the
end is caught too. ``cifa ledger verify`` walks the chain. It lives in the archive's ledger file,
in tables of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifa_ingest.archive.ledger import CheckOutcome, connect
from cifa_ingest.archive.migrations import upgrade

GENESIS = "0" * 64
_FIELDS = ("bag_id", "checked_at", "software", "outcome", "problems", "bytes_read", "seconds")


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
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")  # one writer extends the chain at a time
            head = conn.execute("SELECT last_hash FROM fixity_chain_head").fetchone()
            prev = head[0] if head else GENESIS
            record_hash = _digest(prev, values)
            cursor = conn.execute(
                "INSERT INTO fixity_checks"
                " (bag_id, checked_at, software, outcome, problems, bytes_read, seconds,"
                " prev_hash, record_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*[values[k] for k in _FIELDS], prev, record_hash),
            )
            conn.execute(
                "INSERT INTO fixity_chain_head (one, last_id, last_hash) VALUES (1, ?, ?)"
                " ON CONFLICT (one) DO UPDATE SET last_id = excluded.last_id,"
                " last_hash = excluded.last_hash",
                (cursor.lastrowid, record_hash),
            )
            conn.execute("COMMIT")

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
        """Every break in the chain, described; an empty list when the log is intact."""
        problems = []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, bag_id, checked_at, software, outcome, problems, bytes_read, seconds,"
                " prev_hash, record_hash FROM fixity_checks ORDER BY id"
            ).fetchall()
            head = conn.execute("SELECT last_id, last_hash FROM fixity_chain_head").fetchone()
        prev = GENESIS
        for row in rows:
            values = dict(zip(_FIELDS, row[1:8], strict=True))
            values["seconds"] = round(float(values["seconds"]), 3)
            if row[8] != prev:
                problems.append(
                    f"record {row[0]}: its link does not match the record before it"
                    " (a record was deleted or inserted)"
                )
            if _digest(row[8], values) != row[9]:
                problems.append(f"record {row[0]} ({row[1]}, {row[2]}): its content was altered")
            prev = row[9]
        if rows and (head is None or (head[0], head[1]) != (rows[-1][0], rows[-1][9])):
            problems.append("the chain's head does not match its last record (records removed)")
        if not rows and head is not None:
            problems.append("the chain's head names records that are gone")
        return problems
