"""The ledger: the archive's own record of what it holds and of every run's outcome per work.

SQLite, in ``ARCHIVE/ledger.sqlite``. One row per placed bag with the digests of its manifests
(so that a bag whose files *and* manifests were rewritten can still be told apart from what was
ingested), one row per work per run, and one row per check of a preserved work's source (the
source watch, :mod:`cifa_ingest.audit.watch`). Paths are stored relative to the archive root.

Its tables are made and changed only by :mod:`cifa_ingest.archive.migrations` (a schema version,
numbered migrations), and read only through this class and
:class:`cifa_ingest.archive.audit_log.AuditLog`:
other modules never query them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from cifa_ingest.archive.migrations import upgrade
from cifa_ingest.errors import CifaError


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# The words the ledger stores. They are defined here, beside the tables that hold them, because
# they are a published contract (years of rows, ``--json`` outputs, the docs) that every reader
# and writer must spell alike: the pipeline (:mod:`cifa_ingest.preserve`), the watch
# (:mod:`cifa_ingest.audit.watch`) and the audit import them from here, and the ledger, below
# them all, can type what it reads without importing any of them.


class Outcome(StrEnum):
    """What one run did to one work (``work_outcomes.outcome``, the ``outcome`` of ``--json``)."""

    PRESERVED = "preserved"
    #: Preserved, but the capture is degraded: its chosen format far below the best the source
    #: lists, or below an earlier capture of the same source (capture.json says why). Counted
    #: as preserved; "preserved (degraded)" for people.
    PRESERVED_DEGRADED = "preserved-degraded"
    ALREADY_PRESERVED = "already-preserved"
    #: Preserved before; this run made its next version, because its catalogue entry (title,
    #: director, permission…) no longer agreed with it (cifa_ingest.revision).
    NEW_VERSION = "new-version"
    FAILED = "failed"
    NOT_PERMITTED = "not-permitted"
    AWAITING_SOURCE = "awaiting-source"
    #: Not tried: a host of its sources blocked this run (a bot wall, 429); the next run tries.
    DEFERRED = "deferred"


class SourceStatus(StrEnum):
    """What one check of a preserved work's source found (``source_checks.status``, the
    ``status`` of ``cifa watch --json``)."""

    #: The source is there and says what it said at capture.
    PRESENT = "present"
    #: The source is there but its id, title, duration or formats differ from capture.
    CHANGED = "changed"
    #: The source answers not-found (404) or gone (410), or says the video was removed.
    GONE = "gone"
    #: The video is private, or there for a signed-in account only (login-required,
    #: age-restricted), or the source answers 401/403.
    PRIVATE = "private"
    #: The video is not available from the archive's country.
    GEO_BLOCKED = "geo-blocked"
    #: Network failures, 5xx after every retry, or the host blocked us (a bot wall, 429 after
    #: every retry): we could not tell.
    UNREACHABLE = "unreachable"
    #: Anything else (no film found at the address, refused by the source policy, …).
    ERROR = "error"


class CheckOutcome(StrEnum):
    """What one fixity check found of one bag (``fixity_checks.outcome`` of the audit log,
    :mod:`cifa_ingest.archive.audit_log`); the audit's reports also call a folder under
    ``bags/`` that the ledger does not know ``unregistered``, which is never a check's outcome."""

    INTACT = "intact"
    DAMAGED = "damaged"
    UNREGISTERED = "unregistered"


class CopyState(StrEnum):
    """What the ledger knows of one bag's copy in one storage location (``copies.state``, the
    ``state`` of ``cifa replicate --json``). Only ``good`` is trusted: a copy is recorded good
    after every one of its files was verified against the ledger's digests, never before; any
    other state is a copy that replication (re)makes on its next run."""

    #: Every file of the bag is at the location, each verified against the ledger's sha256
    #: (at ``verified_at``).
    GOOD = "good"
    #: Replication began to write the copy and has not verified all of it: a run under way, or
    #: one interrupted (killed, a full disk, a connection lost). The next run resumes it.
    PENDING = "pending"
    #: A check of the location found files of the copy absent (the location answered).
    MISSING = "missing"
    #: A check of the location found a file of the copy whose bytes differ from the ledger's.
    DAMAGED = "damaged"


@dataclass(frozen=True)
class CopyRecord:
    """One bag's copy in one storage location, as the ledger records it (:class:`CopyState`)."""

    work_id: str
    location: str
    state: CopyState
    copied_at: str | None
    verified_at: str | None
    bytes: int | None
    detail: str
    software: str
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "location": self.location,
            "state": str(self.state),
            "copied_at": self.copied_at,
            "verified_at": self.verified_at,
            "bytes": self.bytes,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class BagRecord:
    work_id: str
    bag_path: str
    placed_at: str
    payload_oxum: str
    manifest_digests: dict[str, str]
    source_keys: list[str]
    software: str


@dataclass(frozen=True)
class SourceCheckRecord:
    """One check of a preserved work's source (:mod:`cifa_ingest.audit.watch`), as stored.

    ``previous_status`` is the status of the check before it for the same source (None for the
    first); a check whose status differs from it is a *change*, e.g. the day a film vanished.
    ``since`` is when the source entered the status this check found."""

    work_id: str
    source_index: int
    url: str
    checked_at: str
    status: SourceStatus
    details: dict[str, Any] = field(default_factory=dict)
    software: str = ""
    previous_status: SourceStatus | None = None
    since: str | None = None

    @property
    def is_change(self) -> bool:
        return self.status != self.previous_status


@dataclass(frozen=True)
class RunSummary:
    """The works of one run (``run_id``) as recorded: how many, how many failed, and the time of
    its last outcome."""

    run_id: str
    at: str
    works: int
    failed: int


@dataclass(frozen=True)
class OutcomeRecord:
    """One work's outcome in one run, as recorded."""

    run_id: str
    work_id: str
    outcome: Outcome
    error: str | None
    error_kind: str | None
    seconds: float | None
    at: str


@contextmanager
def connect(path: Path, *, autocommit: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to the ledger file: WAL (an audit reads while an ingest writes), full sync.
    Without ``autocommit`` the block is one transaction; with it, the caller begins its own."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None if autocommit else "DEFERRED")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        if autocommit:
            yield conn
        else:
            with conn:
                yield conn
    finally:
        conn.close()


class StaleCopy(CifaError):
    """A copy verified against a bag the ledger no longer vouches for: not recorded."""


class Ledger:
    """Access to one archive's ledger. Each method is its own transaction."""

    def __init__(self, path: Path) -> None:
        """Open the ledger at ``path``, created or migrated to the latest schema version if it is
        not there yet (:mod:`cifa_ingest.archive.migrations`); one a newer release wrote is
        refused (:class:`~cifa_ingest.errors.LedgerError`)."""
        self.path = path
        upgrade(path)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    def register_bag(
        self, record: BagRecord, files: Iterable[tuple[str, int, str | None, str | None]] = ()
    ) -> None:
        """Register a placed bag, with each payload file's (path, size, sha256, sha512) at
        ingest: what the audit compares the archive with, years later."""
        with self._connect() as conn:
            _insert_bag(conn, record, files)
            conn.execute("DELETE FROM placements WHERE work_id = ?", (record.work_id,))

    # A bag's placement is a journal entry in three steps, so that the ledger knows every bag in
    # bags/ at every instant, even when the process is killed between the rename and the
    # registration: (1) ``begin_placement`` records the bag (digests, files, source keys) before
    # it is renamed into bags/; (2) the rename; (3) ``complete_placement`` moves the record into
    # ``bags`` in one transaction. A run killed after (1) leaves the record here; the next run
    # completes it (the bag is in bags/ and matches it) or abandons it (the rename never happened).

    def begin_placement(
        self, record: BagRecord, files: list[tuple[str, int, str | None, str | None]]
    ) -> None:
        """Record, before the rename into bags/, the bag about to be placed."""
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO placements VALUES (?, ?, ?, ?)",
                (record.work_id, json.dumps(_record_dict(record)), json.dumps(files), _now()),
            )

    def pending_placement(
        self, work_id: str
    ) -> tuple[BagRecord, list[tuple[str, int, str | None, str | None]]] | None:
        """The bag record of an unfinished placement of ``work_id`` (and its files), if any."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT record, files FROM placements WHERE work_id = ?", (work_id,)
            ).fetchone()
        if row is None:
            return None
        return BagRecord(**json.loads(row[0])), [tuple(entry) for entry in json.loads(row[1])]

    def pending_placements(self) -> list[str]:
        """The works whose placement began and was neither completed nor abandoned."""
        with self._connect() as conn:
            return [r[0] for r in conn.execute("SELECT work_id FROM placements ORDER BY 1")]

    def complete_placement(self, work_id: str, placed_at: str | None = None) -> BagRecord:
        """Register the bag of a begun placement (now in bags/), in one transaction with the
        removal of the journal entry."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT record, files FROM placements WHERE work_id = ?", (work_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no placement of {work_id} was begun")
            record = BagRecord(**json.loads(row[0]))
            if placed_at is not None:
                record = replace(record, placed_at=placed_at)
            _insert_bag(conn, record, [tuple(entry) for entry in json.loads(row[1])])
            conn.execute("DELETE FROM placements WHERE work_id = ?", (work_id,))
        return record

    def abandon_placement(self, work_id: str) -> None:
        """Forget a begun placement whose bag never reached bags/."""
        with self._connect() as conn:
            conn.execute("DELETE FROM placements WHERE work_id = ?", (work_id,))

    def record_new_head(
        self,
        record: BagRecord,
        files: Iterable[tuple[str, int, str | None, str | None]],
        detail: str,
    ) -> None:
        """Record that ``bags/<id>`` is now the bag of a new version of the work (issue 18): its
        manifests' digests, Payload-Oxum and payload files replace the ones before (the versions
        store keeps every version; the ledger vouches for the bag in ``bags/``), its source keys
        are the work's (with those of earlier captures: they stay the work's), and every copy
        of the work at a storage location that was good is ``pending`` again, with ``detail``
        saying why: it holds the version before, and replication brings it the new one. One
        transaction: never new digests with copies still called good."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            found = conn.execute(
                "SELECT 1 FROM bags WHERE work_id = ?", (record.work_id,)
            ).fetchone()
            if found is None:
                raise KeyError(f"{record.work_id} is not registered")
            conn.execute(
                "UPDATE bags SET payload_oxum = ?, manifest_digests = ?, software = ?,"
                " source_keys = ? WHERE work_id = ?",
                (
                    record.payload_oxum,
                    json.dumps(record.manifest_digests, sort_keys=True),
                    record.software,
                    json.dumps(record.source_keys),
                    record.work_id,
                ),
            )
            # The payload files are the new bag's; its sources are the work's, the old ones stay.
            conn.execute("DELETE FROM bag_files WHERE work_id = ?", (record.work_id,))
            _insert_keys_and_files(conn, record, files)
            conn.execute(
                "UPDATE copies SET state = ?, detail = ?, updated_at = ?"
                " WHERE work_id = ? AND state = ?",
                (str(CopyState.PENDING), detail, _now(), record.work_id, str(CopyState.GOOD)),
            )

    def bag_files(self, work_id: str) -> list[tuple[str, int, str | None, str | None]]:
        """(path, size, sha256, sha512) of each payload file of a bag, as ingested."""
        with self._connect() as conn:
            return conn.execute(
                "SELECT path, size, sha256, sha512 FROM bag_files WHERE work_id = ? ORDER BY path",
                (work_id,),
            ).fetchall()

    def work_for_source(self, source_key: str) -> str | None:
        """The work that holds the source video of this key (``Youtube:<id>``,
        ``Generic:<address>``: :class:`cifa_ingest.fetch.capture.SourceKey`), if any. Keys are
        matched as
        stored; :func:`cifa_ingest.preserve.holder_of_source` also matches a key's former form."""
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
        outcome: Outcome | str,
        error: str | None,
        seconds: float | None,
        error_kind: str | None = None,
    ) -> None:
        """Record one work's outcome in one run. An outcome that is not one of :class:`Outcome`
        is refused (ValueError) before anything is written: a misspelt outcome in the ledger
        would be a work no reader counts."""
        outcome = Outcome(outcome)
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO work_outcomes"
                " (run_id, work_id, outcome, error, error_kind, seconds, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, work_id, str(outcome), error, error_kind, seconds, _now()),
            )

    def outcomes(self, work_id: str) -> list[tuple[str, Outcome, str | None, str | None]]:
        """(at, outcome, error kind, error) of every run of one work, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT at, outcome, error_kind, error FROM work_outcomes"
                " WHERE work_id = ? ORDER BY id",
                (work_id,),
            ).fetchall()
        return [(at, Outcome(outcome), kind, error) for at, outcome, kind, error in rows]

    def payload_bytes(self) -> int:
        """The payload size of every registered bag, as ingested."""
        with self._connect() as conn:
            return int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM bag_files").fetchone()[0])

    def last_run(self) -> RunSummary | None:
        """The run that recorded the latest outcome, summed up; None before any run."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT run_id, MAX(at), COUNT(*), SUM(outcome = ?) FROM work_outcomes"
                " WHERE run_id = (SELECT run_id FROM work_outcomes ORDER BY id DESC LIMIT 1)",
                (str(Outcome.FAILED),),
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return RunSummary(run_id=row[0], at=row[1], works=row[2], failed=row[3])

    def failing_works(self) -> list[OutcomeRecord]:
        """The works whose latest outcome is a failure, by work id, with that outcome."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT run_id, work_id, outcome, error, error_kind, seconds, at"
                " FROM work_outcomes WHERE id IN"
                " (SELECT MAX(id) FROM work_outcomes GROUP BY work_id) AND outcome = ?"
                " ORDER BY work_id",
                (str(Outcome.FAILED),),
            ).fetchall()
        return [_outcome_record(row) for row in rows]

    def record_source_check(
        self,
        work_id: str,
        source_index: int,
        url: str,
        status: SourceStatus | str,
        details: dict[str, Any],
        software: str,
        checked_at: str | None = None,
    ) -> SourceCheckRecord:
        """Store one check of a source. Returns it with the status it follows and since when the
        source is in its status, read in the same (immediate) transaction as the insert, so that
        two watches at once cannot both claim the same change. A status that is not one of
        :class:`SourceStatus` is refused (ValueError) before anything is written."""
        status = SourceStatus(status)
        checked_at = checked_at or _now()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                _LATEST_SOURCE_CHECKS.format(where="WHERE work_id = ? AND source_index = ?"),
                (work_id, source_index),
            ).fetchall()
            conn.execute(
                "INSERT INTO source_checks"
                " (work_id, source_index, url, checked_at, status, details, software)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    work_id,
                    source_index,
                    url,
                    checked_at,
                    str(status),
                    json.dumps(details, sort_keys=True, ensure_ascii=False),
                    software,
                ),
            )
        latest = _source_check_record(rows[0]) if rows else None
        previous = latest.status if latest else None
        return SourceCheckRecord(
            work_id=work_id,
            source_index=source_index,
            url=url,
            checked_at=checked_at,
            status=status,
            details=details,
            software=software,
            previous_status=previous,
            since=latest.since if latest and previous == status else checked_at,
        )

    def source_history(
        self, work_id: str, source_index: int | None = None
    ) -> list[SourceCheckRecord]:
        """Every check of one work's sources (or of one source), oldest first, each with the
        status it follows and since when the source was in its status."""
        where = "WHERE work_id = ?"
        params: list[object] = [work_id]
        if source_index is not None:
            where, params = where + " AND source_index = ?", [*params, source_index]
        with self._connect() as conn:
            rows = conn.execute(
                _MARKED_SOURCE_CHECKS.format(where=where)
                + " SELECT *, NULL FROM marked ORDER BY source_index, id",
                params,
            ).fetchall()
        records, since = [], None
        for row in rows:
            record = _source_check_record(row)
            since = record.checked_at if record.is_change else since
            records.append(replace(record, since=since))
        return records

    def latest_source_checks(
        self, work_ids: Iterable[str] | None = None
    ) -> list[SourceCheckRecord]:
        """The latest check of every source (of ``work_ids``, or of every work), with since when
        each source is in that status; ordered by work and source."""
        with self._connect() as conn:
            rows = conn.execute(_LATEST_SOURCE_CHECKS.format(where="")).fetchall()
        wanted = set(work_ids) if work_ids is not None else None
        records = [_source_check_record(row) for row in rows]
        return [r for r in records if wanted is None or r.work_id in wanted]

    def source_changes(
        self, since: str | None = None, work_id: str | None = None
    ) -> list[SourceCheckRecord]:
        """The checks that changed a source's status (the first check of a source counts, from
        nothing known), at or after ``since`` (an ISO 8601 date or time, UTC), oldest first:
        when each film vanished, came back, changed or became private."""
        where, params = ("WHERE work_id = ?", [work_id]) if work_id else ("", [])
        with self._connect() as conn:
            rows = conn.execute(
                _MARKED_SOURCE_CHECKS.format(where=where) + " SELECT *, checked_at FROM marked"
                " WHERE previous_status IS NOT status AND checked_at >= ?"
                " ORDER BY checked_at, id",
                [*params, since or ""],
            ).fetchall()
        return [_source_check_record(row) for row in rows]

    # Copies in further storage locations (issue 16): one row per (bag, location).

    def record_copy(
        self,
        work_id: str,
        location: str,
        state: CopyState | str,
        *,
        software: str,
        detail: str = "",
        size: int | None = None,
        copied: bool = False,
        of_bag: Mapping[str, str] | None = None,
    ) -> CopyRecord:
        """Record what is now known of ``work_id``'s copy at ``location``, replacing what was.

        ``of_bag``: the manifest digests of the bag the copy was made of; the row is written only
        if the ledger still vouches for that bag, in the same statement, else
        :class:`StaleCopy` and nothing is written (a new version made while the copy was being
        verified: a copy of the one before is not a good copy of the work).

        ``good`` stamps ``verified_at`` now, and ``copied_at`` too when this run wrote bytes
        (``copied``); other states keep the times of the last good copy, so a damaged copy still
        says when it was last known good. A state that is not a :class:`CopyState` is refused
        (ValueError) before anything is written. ``detail`` says what is wrong in words for an
        operator; callers never put a credential or a signed address in it."""
        state = CopyState(state)
        now = _now()
        verified = now if state is CopyState.GOOD else None
        copied_at = now if copied and state is CopyState.GOOD else None
        values = (work_id, location, str(state), copied_at, verified, size, detail, software, now)
        # "WHERE true": SQLite's upsert after a SELECT needs a WHERE clause.
        condition = " WHERE true"
        bound: tuple[str, ...] = ()
        if of_bag is not None:
            condition = (
                " WHERE EXISTS (SELECT 1 FROM bags WHERE work_id = ? AND manifest_digests = ?)"
            )
            bound = (work_id, json.dumps(dict(of_bag), sort_keys=True))
        with self._connect() as conn:
            written = conn.execute(
                "INSERT INTO copies (work_id, location, state, copied_at, verified_at, bytes,"
                " detail, software, updated_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?"
                + condition
                + " ON CONFLICT (work_id, location) DO UPDATE SET state = excluded.state,"
                " copied_at = COALESCE(excluded.copied_at, copies.copied_at),"
                " verified_at = COALESCE(excluded.verified_at, copies.verified_at),"
                " bytes = COALESCE(excluded.bytes, copies.bytes), detail = excluded.detail,"
                " software = excluded.software, updated_at = excluded.updated_at",
                (*values, *bound),
            ).rowcount
            if written == 0:
                raise StaleCopy(
                    f"{work_id}: the ledger no longer vouches for the bag the copy at {location}"
                    " was made of (a new version was made meanwhile)"
                )
            row = conn.execute(
                f"SELECT {_COPY_COLUMNS} FROM copies WHERE work_id = ? AND location = ?",
                (work_id, location),
            ).fetchone()
        return _copy_record(row)

    def copy(self, work_id: str, location: str) -> CopyRecord | None:
        """The ledger's record of ``work_id``'s copy at ``location``, if it has one."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COPY_COLUMNS} FROM copies WHERE work_id = ? AND location = ?",
                (work_id, location),
            ).fetchone()
        return _copy_record(row) if row else None

    def copies(
        self, *, work_id: str | None = None, location: str | None = None
    ) -> list[CopyRecord]:
        """Every recorded copy (of one bag, at one location, or all), by bag then location."""
        where: list[str] = []
        params: list[str] = []
        if work_id is not None:
            where, params = [*where, "work_id = ?"], [*params, work_id]
        if location is not None:
            where, params = [*where, "location = ?"], [*params, location]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COPY_COLUMNS} FROM copies{clause} ORDER BY work_id, location", params
            ).fetchall()
        return [_copy_record(row) for row in rows]

    def snapshot(self, target: Path) -> Path:
        """A consistent copy of the whole ledger in the new file ``target`` (one file, no
        write-ahead log, flushed): SQLite's online backup, so a run writing meanwhile is never
        caught half-way. What replication sends to every location, so that any one location
        holds what it needs to rebuild the archive: the bags and the ledger that vouches for
        them."""
        try:
            with (
                contextlib.closing(sqlite3.connect(self.path, timeout=60)) as source,
                contextlib.closing(sqlite3.connect(target, isolation_level=None)) as copy,
            ):
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
            with open(target, "rb") as written:
                os.fsync(written.fileno())
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target


_COPY_COLUMNS = (
    "work_id, location, state, copied_at, verified_at, bytes, detail, software, updated_at"
)


def _copy_record(row: tuple) -> CopyRecord:
    work_id, location, state, copied_at, verified_at, size, detail, software, updated = row
    return CopyRecord(
        work_id, location, CopyState(state), copied_at, verified_at, size, detail, software,
        updated,
    )  # fmt: skip


def _insert_bag(
    conn: sqlite3.Connection,
    record: BagRecord,
    files: Iterable[tuple[str, int, str | None, str | None]],
) -> None:
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
    _insert_keys_and_files(conn, record, files)


def _insert_keys_and_files(
    conn: sqlite3.Connection,
    record: BagRecord,
    files: Iterable[tuple[str, int, str | None, str | None]],
) -> None:
    """A registered bag's source keys (a key already the work's kept) and payload files."""
    conn.executemany(
        "INSERT OR IGNORE INTO source_keys VALUES (?, ?)",
        [(key, record.work_id) for key in record.source_keys],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO bag_files VALUES (?, ?, ?, ?, ?)",
        [(record.work_id, *entry) for entry in files],
    )


def _record_dict(record: BagRecord) -> dict[str, Any]:
    return {
        "work_id": record.work_id,
        "bag_path": record.bag_path,
        "placed_at": record.placed_at,
        "payload_oxum": record.payload_oxum,
        "manifest_digests": record.manifest_digests,
        "source_keys": record.source_keys,
        "software": record.software,
    }


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


#: Every check (optionally of some works) with the status of the check before it for its source.
_MARKED_SOURCE_CHECKS = """
WITH marked AS (
    SELECT work_id, source_index, url, checked_at, status, details, software, id,
           LAG(status) OVER (PARTITION BY work_id, source_index ORDER BY id) AS previous_status
    FROM source_checks {where}
)
"""

#: The latest check of each source, with when its current status began (its latest change).
_LATEST_SOURCE_CHECKS = (
    _MARKED_SOURCE_CHECKS
    + """
, ranked AS (
    SELECT *,
           MAX(CASE WHEN previous_status IS NOT status THEN id END)
               OVER (PARTITION BY work_id, source_index) AS change_id,
           ROW_NUMBER() OVER (PARTITION BY work_id, source_index ORDER BY id DESC) AS recency
    FROM marked
)
SELECT work_id, source_index, url, checked_at, status, details, software, id, previous_status,
       (SELECT checked_at FROM source_checks WHERE id = ranked.change_id)
FROM ranked WHERE recency = 1 ORDER BY work_id, source_index
"""
)


def _source_check_record(row: tuple) -> SourceCheckRecord:
    work_id, index, url, checked_at, status, details, software, _id, previous, since = row
    return SourceCheckRecord(
        work_id=work_id,
        source_index=index,
        url=url,
        checked_at=checked_at,
        status=SourceStatus(status),
        details=json.loads(details),
        software=software,
        previous_status=SourceStatus(previous) if previous is not None else None,
        since=since,
    )


def _outcome_record(row: tuple) -> OutcomeRecord:
    run_id, work_id, outcome, error, error_kind, seconds, at = row
    return OutcomeRecord(run_id, work_id, Outcome(outcome), error, error_kind, seconds, at)
