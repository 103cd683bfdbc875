"""The ledger's schema and how it evolves: numbered migrations, applied when a ledger is opened.

The ledger (``ARCHIVE/ledger.sqlite``) must outlive every release of this program, so its schema
changes only here, by migrations: small numbered steps, each a function below whose docstring says
why, listed in :data:`MIGRATIONS`. The version a ledger is at is SQLite's ``PRAGMA user_version``
(0 for a new, empty file and for a ledger made by v0.1.0, which had no version). Opening a ledger
(:class:`cifa_ingest.archive.ledger.Ledger`, :class:`cifa_ingest.archive.audit_log.AuditLog`) calls
:func:`upgrade`, which

- refuses a ledger at a version above the latest this program knows (one a newer release has
  written): :class:`~cifa_ingest.errors.LedgerError`, before anything is written to it;
- recognises an unversioned ledger: every table it holds must be one of v0.1.0's, column for
  column, or it is refused in the same way, untouched;
- copies a ledger that holds anything, with SQLite's online backup, to
  ``ledger.sqlite.before-v{N}`` beside it (``N``: the version it is about to reach; ``.2``, ``.3``
  after the name if one is there already), flushed to disk before any step runs, and keeps it;
- applies the steps the ledger lacks and sets its ``user_version``, all in one ``BEGIN IMMEDIATE``
  transaction: a step that fails, or a process killed mid-way, leaves the ledger as it was; and of
  two processes opening a new ledger at once, one migrates while the other waits for SQLite's
  write lock, then finds the work done.

No other module creates a table. A new table, column or index is a new step at the end of
:data:`MIGRATIONS`, never an edit of a step already released: a ledger that has applied a step
never applies it again. A step runs inside the transaction: it executes its statements one by one
(``executescript`` would commit) and never changes the journal mode.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cifa_ingest import __version__
from cifa_ingest.errors import LedgerError, LedgerMigrationError


@dataclass(frozen=True)
class Migration:
    """One step: ``apply`` brings a ledger at ``version - 1`` to ``version``."""

    version: int
    apply: Callable[[sqlite3.Connection], None]

    @property
    def why(self) -> str:
        return inspect.cleandoc(self.apply.__doc__ or "")


#: The tables of v0.1.0 (commit 39670d7), exactly as its ``ledger.py`` and ``audit_log.py``
#: created them on every open. Never edit: a change to the schema is a new migration.
_V0_1_0_TABLES = (
    """CREATE TABLE IF NOT EXISTS bags (
    work_id          TEXT PRIMARY KEY,
    bag_path         TEXT NOT NULL,
    placed_at        TEXT NOT NULL,
    payload_oxum     TEXT NOT NULL,
    manifest_digests TEXT NOT NULL,
    source_keys      TEXT NOT NULL,
    software         TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS bag_files (
    work_id TEXT NOT NULL REFERENCES bags (work_id),
    path    TEXT NOT NULL,
    size    INTEGER NOT NULL,
    sha256  TEXT,
    sha512  TEXT,
    PRIMARY KEY (work_id, path)
)""",
    """CREATE TABLE IF NOT EXISTS source_keys (
    source_key TEXT PRIMARY KEY,
    work_id    TEXT NOT NULL REFERENCES bags (work_id)
)""",
    """CREATE TABLE IF NOT EXISTS work_outcomes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL,
    work_id    TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT,
    error_kind TEXT,
    seconds    REAL,
    at         TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS work_outcomes_work ON work_outcomes (work_id, at)",
    """CREATE TABLE IF NOT EXISTS source_checks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    work_id      TEXT NOT NULL,
    source_index INTEGER NOT NULL,
    url          TEXT NOT NULL,
    checked_at   TEXT NOT NULL,
    status       TEXT NOT NULL,
    details      TEXT NOT NULL,
    software     TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS source_checks_source ON source_checks (work_id, source_index, id)",
    """CREATE TABLE IF NOT EXISTS placements (
    work_id    TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    files      TEXT NOT NULL,
    started_at TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS fixity_checks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    bag_id      TEXT NOT NULL,
    checked_at  TEXT NOT NULL,
    software    TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    problems    TEXT NOT NULL,
    bytes_read  INTEGER NOT NULL,
    seconds     REAL NOT NULL,
    prev_hash   TEXT NOT NULL,
    record_hash TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS fixity_checks_bag ON fixity_checks (bag_id, id)",
    """CREATE TABLE IF NOT EXISTS fixity_chain_head (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    last_id   INTEGER NOT NULL,
    last_hash TEXT NOT NULL
)""",
)


def _v1_schema_of_v0_1_0(conn: sqlite3.Connection) -> None:
    """The schema of v0.1.0, the first release, gathered from the modules that created it on every
    open: the ledger's bags, bag files, source keys, work outcomes, source checks and placement
    journal (``ledger.py``), the audit log's fixity checks and chain head (``audit_log.py``).
    ``IF NOT EXISTS``, as then: a ledger v0.1.0 made has no version and holds these tables, or
    some of them (the audit log's appeared when it was first opened), and this step completes it
    without touching a row; on a new ledger it creates them all."""
    for statement in _V0_1_0_TABLES:
        conn.execute(statement)


def _v2_copies(conn: sqlite3.Connection) -> None:
    """Issue 16: every bag is kept in several storage locations (``[[storage.locations]]``),
    and the ledger must say, bag by bag and location by location, which copies exist and were
    verified, so that a copy is trusted only once every byte of it was checked against the
    ledger's digests, and an interrupted replication is told apart from a complete one. One row
    per (bag, location): its state (:class:`cifa_ingest.archive.ledger.CopyState`), when it was
    copied and last verified, its size, and a detail that names a problem (never a credential
    or an endpoint's secret). The primary copy (``ARCHIVE/bags/``) has no row: the bags and the
    audit log are its record. The index serves "every copy at this location", the question of
    replication, a location's audit and the holdings report."""
    conn.execute(
        """CREATE TABLE copies (
    work_id     TEXT NOT NULL REFERENCES bags (work_id),
    location    TEXT NOT NULL,
    state       TEXT NOT NULL,
    copied_at   TEXT,
    verified_at TEXT,
    bytes       INTEGER,
    detail      TEXT NOT NULL DEFAULT '',
    software    TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (work_id, location)
)"""
    )
    conn.execute("CREATE INDEX copies_location ON copies (location, state)")


def _v3_preservation_events(conn: sqlite3.Connection) -> None:
    """Issue 16: a damaged or missing copy is repaired from one that verifies, and every repair
    must be part of the archive's hash-chained history, as the fixity checks are: which copy
    was checked and found wanting (PREMIS ``fixity check``), which file was copied from where
    to where (``replication``), which copy was brought back whole (``recovery``). These events
    are not fixity checks of a bag (the audit's "last verified" must not count them), so they
    get a chained table of their own, with its own head row, rather than a column in
    ``fixity_checks``: the rows already chained there are not touched, so every digest of a
    ledger made before keeps verifying. ``location`` names the copy (``primary`` for
    ``ARCHIVE/bags/``); ``detail`` is JSON (the files, the source copy, their sha256), never a
    credential."""
    conn.execute(
        """CREATE TABLE preservation_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    bag_id      TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    event_at    TEXT NOT NULL,
    location    TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    software    TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    record_hash TEXT NOT NULL
)"""
    )
    conn.execute("CREATE INDEX preservation_events_bag ON preservation_events (bag_id, id)")
    conn.execute(
        """CREATE TABLE events_chain_head (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    last_id   INTEGER NOT NULL,
    last_hash TEXT NOT NULL
)"""
    )


def _v4_versions_at_locations(conn: sqlite3.Connection) -> None:
    """Issue 18: every version of a work is kept at every storage location, not only its newest
    bag: a location now holds beside ``bags/<id>/`` the work's versions (``versions/<id>/``,
    :mod:`cifa_ingest.storage.versions_copy`), and a copy is good only once both were verified.
    A copy recorded good before holds no versions, so it is good no more: each becomes
    ``pending``, which the next replication completes (the work's version 1 recorded first
    where the archive has none, every file already at the location verified again against the
    ledger's digests, the versions sent) and records good again, copy by copy, so that an
    interrupted migration resumes where it stopped. Copies recorded missing or damaged stay so:
    their finding stands until repaired. No column changes."""
    conn.execute(
        "UPDATE copies SET state = 'pending', updated_at = ?, detail = ? WHERE state = 'good'",
        (
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "migrated: the work's versions are not at this location yet; the next replication"
            " verifies the copy and adds them",
        ),
    )


#: Every step, in order; ``version`` is 1, 2, 3, … with no gap.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, _v1_schema_of_v0_1_0),
    Migration(2, _v2_copies),
    Migration(3, _v3_preservation_events),
    Migration(4, _v4_versions_at_locations),
)
#: The schema version this program writes, and the highest it opens.
LATEST = MIGRATIONS[-1].version


def upgrade(path: Path, migrations: Sequence[Migration] | None = None) -> int:
    """Bring the ledger at ``path`` (created if absent) to the latest version of ``migrations``
    (default :data:`MIGRATIONS`), as the module's docstring says; returns that version. Raises
    :class:`LedgerError` for a ledger it must not touch, :class:`LedgerMigrationError` for a step
    that failed (rolled back)."""
    steps = MIGRATIONS if migrations is None else tuple(migrations)
    latest = steps[-1].version
    with contextlib.closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        version = _version(conn, path)
        _refuse_newer(path, version, latest)
        if version == latest:
            return version
        if version == 0:
            _is_empty_v0_1_0(conn, path)  # refuse an unknown database before writing anything
        _write_ahead_log(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")  # one migrating process at a time
        backup: Path | None = None
        try:
            version = _version(conn, path)  # again, with the lock: another may have migrated
            _refuse_newer(path, version, latest)
            if version < latest:
                if version > 0 or not _is_empty_v0_1_0(conn, path):
                    backup = _backup(path, latest)
                for step in steps:
                    if step.version > version:
                        _apply(conn, path, step)
                conn.execute(f"PRAGMA user_version = {int(latest)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if backup is not None:  # rolled back: the ledger is what the backup holds
                backup.unlink(missing_ok=True)
            raise
    return latest


def schema_version(path: Path) -> int:
    """The schema version of the ledger at ``path``, read without changing it."""
    with contextlib.closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        return _version(conn, path)


def _write_ahead_log(conn: sqlite3.Connection, timeout: float = 60) -> None:
    """Put a new ledger in WAL mode, as every connection to it asks (:func:`.ledger.connect`).
    Another process may be switching it at the same instant: SQLite then answers "locked" at
    once, without waiting, since it read the file before the switch; asked again, it sees the
    switch made and the pragma has nothing to do."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _apply(conn: sqlite3.Connection, path: Path, step: Migration) -> None:
    try:
        step.apply(conn)
    except Exception as exc:
        raise LedgerMigrationError(
            f"{path}: migrating the ledger to schema version {step.version} failed"
            f" ({type(exc).__name__}: {exc}); rolled back, the ledger is as it was"
        ) from exc


def _version(conn: sqlite3.Connection, path: Path) -> int:
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.OperationalError:  # locked, unreadable: not a verdict on the file
        raise
    except sqlite3.DatabaseError as exc:  # "file is not a database"
        raise LedgerError(f"{path}: not a ledger ({exc}); left as it is") from None


def _refuse_newer(path: Path, version: int, latest: int) -> None:
    if version > latest:
        raise LedgerError(
            f"{path}: the ledger is at schema version {version}, written by a newer cifa-ingest;"
            f" this one ({__version__}) knows versions up to {latest}. Open it with the newer"
            " cifa-ingest; the ledger was left as it is."
        )


def _tables(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Each table (SQLite's own aside) and its columns: name, type, not null, default, key."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'"
            " ESCAPE '\\' ORDER BY name"
        )
    ]
    return {
        name: [tuple(column[1:]) for column in conn.execute(f'PRAGMA table_info("{name}")')]
        for name in names
    }


def _is_empty_v0_1_0(conn: sqlite3.Connection, path: Path) -> bool:
    """Whether an unversioned ledger is new (no table yet); else it must be v0.1.0's: every table
    it holds one of that release's, column for column, or it is refused (rolled back, untouched).
    """
    found = _tables(conn)
    if not found:
        return True
    with contextlib.closing(sqlite3.connect(":memory:")) as reference:
        _v1_schema_of_v0_1_0(reference)
        expected = _tables(reference)
    differences = []
    for name, columns in found.items():
        if name not in expected:
            differences.append(f"table {name} is not one of the ledger's")
        elif columns != expected[name]:
            have = ", ".join(f"{c[0]} {c[1]}" for c in columns)
            want = ", ".join(f"{c[0]} {c[1]}" for c in expected[name])
            differences.append(f"table {name} has ({have}), v0.1.0 made ({want})")
    if differences:
        raise LedgerError(
            f"{path}: not a ledger this cifa-ingest knows (no schema version, and "
            + "; ".join(differences)
            + "); left as it is"
        )
    return False


def _backup(path: Path, version: int) -> Path:
    """Copy the ledger to ``<name>.before-v<version>`` beside it: one file (no write-ahead log),
    flushed to disk with its directory entry before the caller goes on. Called with the write
    lock held, so the copy is what the migration starts from; it reads through a connection of
    its own (SQLite's backup cannot read through the one holding the write transaction)."""
    target = path.with_name(f"{path.name}.before-v{version}")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.before-v{version}.{number}")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)  # a copy cut short by a crash; we hold the write lock
    try:
        with (
            contextlib.closing(sqlite3.connect(path, timeout=60)) as source,
            contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy,
        ):
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return target
