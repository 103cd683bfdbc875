"""The ledger: the archive's own record of what it holds and of every run's outcome per work.

SQLite, in ``ARCHIVE/ledger.sqlite``. One row per placed bag with the digests of its manifests
(so that a bag whose files *and* manifests were rewritten can still be told apart from what was
ingested), and one row per work per run. Paths are stored relative to the archive root.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS bags (
    work_id          TEXT PRIMARY KEY,
    bag_path         TEXT NOT NULL,
    placed_at        TEXT NOT NULL,
    payload_oxum     TEXT NOT NULL,
    manifest_digests TEXT NOT NULL,
    source_keys      TEXT NOT NULL,
    software         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS source_keys (
    source_key TEXT PRIMARY KEY,
    work_id    TEXT NOT NULL REFERENCES bags (work_id)
);
CREATE TABLE IF NOT EXISTS work_outcomes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL,
    work_id    TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT,
    error_kind TEXT,
    seconds    REAL,
    at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS work_outcomes_work ON work_outcomes (work_id, at);
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class BagRecord:
    work_id: str
    bag_path: str
    placed_at: str
    payload_oxum: str
    manifest_digests: dict[str, str]
    source_keys: list[str]
    software: str


class Ledger:
    """Access to one archive's ledger. Each method is its own transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            with conn:
                yield conn
        finally:
            conn.close()

    def register_bag(self, record: BagRecord) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO bags VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.work_id,
                    record.bag_path,
                    record.placed_at,
                    record.payload_oxum,
                    json.dumps(record.manifest_digests, sort_keys=True),
                    json.dumps(record.source_keys),
                    record.software,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO source_keys VALUES (?, ?)",
                [(key, record.work_id) for key in record.source_keys],
            )

    def work_for_source(self, source_key: str) -> str | None:
        """The work that holds the source video ``extractor:id``, if any."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT work_id FROM source_keys WHERE source_key = ?", (source_key,)
            ).fetchone()
        return row[0] if row else None

    def bag(self, work_id: str) -> BagRecord | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM bags WHERE work_id = ?", (work_id,)).fetchone()
        return _bag_record(row) if row else None

    def bags(self) -> list[BagRecord]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM bags ORDER BY work_id").fetchall()
        return [_bag_record(row) for row in rows]

    def record_outcome(
        self,
        run_id: str,
        work_id: str,
        outcome: str,
        error: str | None,
        seconds: float | None,
        error_kind: str | None = None,
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO work_outcomes"
                " (run_id, work_id, outcome, error, error_kind, seconds, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, work_id, outcome, error, error_kind, seconds, _now()),
            )

    def outcomes(self, work_id: str) -> list[tuple[str, str, str | None, str | None]]:
        """(at, outcome, error kind, error) of every run of one work, oldest first."""
        with self._connect() as conn:
            return conn.execute(
                "SELECT at, outcome, error_kind, error FROM work_outcomes"
                " WHERE work_id = ? ORDER BY id",
                (work_id,),
            ).fetchall()


def _bag_record(row: tuple) -> BagRecord:
    work_id, bag_path, placed_at, oxum, digests, source_keys, software = row
    return BagRecord(
        work_id=work_id,
        bag_path=bag_path,
        placed_at=placed_at,
        payload_oxum=oxum,
        manifest_digests=json.loads(digests),
        source_keys=json.loads(source_keys),
        software=software,
    )


def now() -> str:
    """The ledger's timestamp format (UTC, ISO 8601, seconds)."""
    return _now()
