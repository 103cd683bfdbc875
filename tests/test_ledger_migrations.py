"""The ledger's schema version and migrations (issue 15): a ledger v0.1.0 made is upgraded in
place, rows and hash chain kept, a backup beside it; a new one gets the latest version at once; one
a newer release wrote is refused untouched; a step that fails or a process killed mid-way leaves
the ledger as it was; two processes opening a new ledger migrate it once."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

from cifa_ingest import cli
from cifa_ingest.archive import migrations as ledger_migrations
from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.archive.migrations import LATEST, MIGRATIONS, Migration, upgrade
from cifa_ingest.errors import LedgerError, LedgerMigrationError
from tests.conftest import REPO

#: A ledger written by v0.1.0's own code (commit 39670d7), dumped as SQL; its header says how.
V0_1_0 = REPO / "tests" / "ledger-fixtures" / "ledger-v0.1.0.sql"
AUDIT_TABLES = ("fixity_checks", "fixity_chain_head")


def _v0_1_0_ledger(path: Path, *, without: tuple[str, ...] = ()) -> Path:
    """A ledger as v0.1.0 left it (write-ahead log, user_version 0); ``without`` drops tables,
    e.g. the audit log's, which v0.1.0 made only when an audit first opened the ledger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(V0_1_0.read_text("utf-8"))
        for table in without:
            conn.execute(f"DROP TABLE {table}")
        conn.commit()
    return path


def _user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def _dump(path: Path) -> list[str]:
    """Every statement that remakes the database: its schema and every row."""
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.iterdump())


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(path)) as conn:
        tables = [row[1] for row in _schema(conn) if row[0] == "table"]
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1, 2').fetchall() for t in tables}


def _chain_as_v0_1_0_checks_it(path: Path) -> list[str]:
    """The audit log's chain, checked with v0.1.0's algorithm written out again here (not the
    module's): each record's SHA-256 over its canonical JSON and the previous record's digest."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT * FROM fixity_checks ORDER BY id").fetchall()
        head = conn.execute("SELECT last_id, last_hash FROM fixity_chain_head").fetchone()
    fields = ("bag_id", "checked_at", "software", "outcome", "problems", "bytes_read", "seconds")
    problems, prev = [], "0" * 64
    for row in rows:
        values = dict(zip(fields, row[1:8], strict=True))
        canonical = json.dumps({"prev": prev, **values}, sort_keys=True, ensure_ascii=False)
        if row[8] != prev or hashlib.sha256(canonical.encode()).hexdigest() != row[9]:
            problems.append(f"record {row[0]}")
        prev = row[9]
    if head != (rows[-1][0], rows[-1][9]):
        problems.append("head")
    return problems


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------------------------------------
# (a) A ledger v0.1.0 made is upgraded in place on first open.


def test_a_v0_1_0_ledger_is_upgraded_in_place_rows_chain_and_backup_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    ledger_path = _v0_1_0_ledger(archive / "ledger.sqlite")
    assert _user_version(ledger_path) == 0
    assert _chain_as_v0_1_0_checks_it(ledger_path) == []  # the fixture's chain is a real one
    before = _rows(ledger_path)
    assert all(before.values())  # every table holds rows

    ledger = Ledger(ledger_path)

    assert _user_version(ledger_path) == LATEST
    after = _rows(ledger_path)
    assert {t: after[t] for t in before} == before  # every row kept
    new_tables = {"copies", "preservation_events", "events_chain_head"}  # steps 2 and 3
    assert set(after) - set(before) == new_tables
    assert all(after[t] == [] for t in new_tables)
    backup = archive / f"ledger.sqlite.before-v{LATEST}"
    assert _user_version(backup) == 0 and _rows(backup) == before
    assert not (archive / f"ledger.sqlite.before-v{LATEST}-wal").exists()  # one file
    log = AuditLog(ledger_path)
    assert log.verify() == []
    assert cli.main(["ledger", "verify", "--archive", str(archive), "--quiet"]) == 0
    # What v0.1.0 recorded reads through the API as it did then, and the chain goes on.
    assert [b.work_id for b in ledger.bags()] == ["cifa-v-0001", "cifa-v-0002"]
    assert ledger.pending_placements() == ["cifa-v-0003"]
    assert ledger.work_for_source("Youtube:abc123") == "cifa-v-0001"
    log.record("cifa-v-0002", "2026-12-01T00:00:00+00:00", "cifa-ingest now", "intact", [], 1, 0)
    assert log.verify() == [] and len(log.history("cifa-v-0002")) == 2
    # Opened again: nothing to migrate, no second backup.
    Ledger(ledger_path)
    assert sorted(p.name for p in archive.glob("ledger.sqlite.before-*")) == [backup.name]
    capsys.readouterr()
    assert cli.main(["status", "--archive", str(archive), "--json", "--quiet"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["bags"], status["payload_bytes"]) == (2, 600)
    assert status["last_ingest"] == {
        "at": "2026-11-01T06:00:00+00:00", "works": 2, "failed": 1, "outcome": "failed"
    }  # fmt: skip
    assert status["last_audit"] == {
        "at": "2026-12-01T00:00:00+00:00", "bags": 2, "damaged": 1, "outcome": "damaged"
    }  # fmt: skip
    assert status["failing"] == [
        {"id": "cifa-v-0004", "at": "2026-11-01T06:00:00+00:00", "kind": "gone",
         "error": "HTTP Error 410: Gone"}
    ]  # fmt: skip
    assert status["vanished"] == [
        {"id": "cifa-v-0001", "source": 1, "status": "gone", "since": "2026-11-02T01:00:00+00:00"}
    ]


def test_a_v0_1_0_ledger_that_never_had_an_audit_gets_the_audit_log(tmp_path: Path) -> None:
    ledger_path = _v0_1_0_ledger(tmp_path / "ledger.sqlite", without=AUDIT_TABLES)
    before = _rows(ledger_path)
    log = AuditLog(ledger_path)
    assert log.verify() == [] and log.latest_checks() == []
    after = _rows(ledger_path)
    assert {t: after[t] for t in before} == before
    assert after["fixity_checks"] == after["fixity_chain_head"] == []


def test_an_unversioned_database_that_is_not_v0_1_0s_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with closing(sqlite3.connect(path)) as conn:  # an earlier draft: outcomes without a kind
        conn.execute("CREATE TABLE work_outcomes (id INTEGER PRIMARY KEY, run_id TEXT)")
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.commit()
    files = _files(tmp_path)
    with pytest.raises(LedgerError) as refused:
        Ledger(path)
    assert "not a ledger this cifa-ingest knows" in str(refused.value)
    assert "table work_outcomes has (id INTEGER, run_id TEXT)" in str(refused.value)
    assert "table notes is not one of the ledger's" in str(refused.value)
    assert _files(tmp_path) == files


# ---------------------------------------------------------------------------------------------
# (b) A new ledger gets the latest version directly.


def test_a_new_ledger_gets_the_latest_version_and_v0_1_0s_exact_tables(tmp_path: Path) -> None:
    path = tmp_path / "archive" / "ledger.sqlite"
    path.parent.mkdir()
    Ledger(path)
    assert _user_version(path) == LATEST
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.sqlite"]  # nothing to back up
    assert AuditLog(path).verify() == []  # the audit log's tables came with the ledger's
    with closing(sqlite3.connect(path)) as new, closing(sqlite3.connect(":memory:")) as old:
        old.executescript(V0_1_0.read_text("utf-8"))
        if LATEST == 1:  # the same statements, word for word, as v0.1.0's modules ran
            assert _schema(new) == _schema(old)


def test_no_module_but_the_migrations_creates_a_table() -> None:
    package = REPO / "cifa_ingest"
    creating = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if "CREATE TABLE" in p.read_text("utf-8").upper() and p != package / "archive/migrations.py"
    ]
    assert creating == []


def test_the_status_reads_the_ledger_only_through_its_classes() -> None:
    source = (REPO / "cifa_ingest" / "reports" / "status.py").read_text("utf-8")
    assert "sqlite3" not in source and "SELECT" not in source and "connect(" not in source


# ---------------------------------------------------------------------------------------------
# (c) A ledger a newer release wrote is refused, its bytes unchanged.


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_a_ledger_from_a_newer_release_is_refused_by_status_untouched(
    tmp_path: Path, journal: str
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    path = archive / "ledger.sqlite"
    Ledger(path).record_outcome("run-9", "cifa-n-0001", "preserved", None, 1.0)
    with closing(sqlite3.connect(path)) as conn:  # what a later release might have done
        conn.execute(f"PRAGMA journal_mode={journal}")
        conn.execute("ALTER TABLE work_outcomes ADD COLUMN attempt INTEGER")
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
        conn.commit()
    files = _files(archive)
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "status", "--archive", str(archive)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert f"schema version {LATEST + 1}, written by a newer cifa-ingest" in result.stderr
    assert f"knows versions up to {LATEST}" in result.stderr
    for opening in (Ledger, AuditLog, upgrade):
        with pytest.raises(LedgerError):
            opening(path)
    assert cli.main(["ledger", "verify", "--archive", str(archive), "--quiet"]) == 2
    assert _files(archive) == files  # same files, same bytes: no backup, no journal switch


def test_a_file_that_is_no_database_is_refused_as_not_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"not SQLite at all\n" * 64)
    with pytest.raises(LedgerError, match="not a ledger"):
        Ledger(path)
    assert path.read_bytes() == b"not SQLite at all\n" * 64


# ---------------------------------------------------------------------------------------------
# (d) Each step on its own, and the machinery that runs them.


def test_every_step_is_numbered_in_order_and_says_why() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[-1].version == LATEST
    for migration in MIGRATIONS:
        assert len(migration.why) > 80, f"migration {migration.version} does not say why"


def test_step_1_on_an_empty_database_makes_v0_1_0s_schema() -> None:
    step = MIGRATIONS[0]
    with closing(sqlite3.connect(":memory:")) as new, closing(sqlite3.connect(":memory:")) as old:
        step.apply(new)
        old.executescript(V0_1_0.read_text("utf-8"))
        assert _schema(new) == _schema(old)


def test_step_1_on_a_v0_1_0_ledger_completes_it_and_keeps_its_rows(tmp_path: Path) -> None:
    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite", without=("placements", *AUDIT_TABLES))
    before = _rows(path)
    with closing(sqlite3.connect(path)) as conn:
        MIGRATIONS[0].apply(conn)
        conn.commit()
        with closing(sqlite3.connect(":memory:")) as old:
            old.executescript(V0_1_0.read_text("utf-8"))
            assert _schema(conn) == _schema(old)
    after = _rows(path)
    assert {t: after[t] for t in before} == before
    assert after["placements"] == after["fixity_checks"] == after["fixity_chain_head"] == []


def _add_column(conn: sqlite3.Connection) -> None:
    """A later step, for the tests: a column on the bags."""
    conn.execute("ALTER TABLE bags ADD COLUMN note TEXT")


def test_steps_run_in_order_once_each_with_one_backup_named_after_the_version_reached(
    tmp_path: Path,
) -> None:
    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite")
    before = _rows(path)
    applied: list[int] = []

    def recording(step: Migration) -> Migration:
        def apply(conn: sqlite3.Connection) -> None:
            applied.append(step.version)
            step.apply(conn)

        return Migration(step.version, apply)

    steps = [recording(MIGRATIONS[0]), recording(Migration(2, _add_column))]
    assert upgrade(path, steps) == 2
    assert applied == [1, 2] and _user_version(path) == 2
    assert _rows(tmp_path / "ledger.sqlite.before-v2") == before  # v0.1.0's, one copy
    assert not (tmp_path / "ledger.sqlite.before-v1").exists()
    assert upgrade(path, steps) == 2 and applied == [1, 2]  # nothing left to do
    with pytest.raises(LedgerError):
        upgrade(path, steps[:1])  # the program before step 2 refuses it


def test_a_backup_already_there_is_kept_and_the_next_gets_a_number(tmp_path: Path) -> None:
    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite")
    before = _rows(path)
    earlier = tmp_path / f"ledger.sqlite.before-v{LATEST}"
    earlier.write_bytes(b"someone's copy")
    Ledger(path)
    assert earlier.read_bytes() == b"someone's copy"
    assert _rows(tmp_path / f"ledger.sqlite.before-v{LATEST}.2") == before


# ---------------------------------------------------------------------------------------------
# (e) A step that fails mid-way, or a process killed mid-way, leaves the ledger as it was.


def test_a_step_failing_after_its_first_statement_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite", without=AUDIT_TABLES)
    dump, files = _dump(path), _files(tmp_path)

    def half_of_step_1(conn: sqlite3.Connection) -> None:
        """Step 1, cut by a failure after its first statement that changes something."""
        conn.execute(next(s for s in ledger_migrations._V0_1_0_TABLES if "fixity_checks" in s))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger_migrations, "MIGRATIONS", (Migration(1, half_of_step_1),))
    with pytest.raises(LedgerMigrationError, match=r"schema version 1 failed.*No space left"):
        Ledger(path)
    assert _user_version(path) == 0 and _dump(path) == dump  # no fixity_checks table
    assert _files(tmp_path) == files  # and its backup, now needless, is gone
    monkeypatch.undo()
    assert AuditLog(path).verify() == [] and _user_version(path) == LATEST


def test_a_later_step_failing_rolls_back_the_earlier_ones_too(tmp_path: Path) -> None:
    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite", without=AUDIT_TABLES)
    dump = _dump(path)

    def failing(conn: sqlite3.Connection) -> None:
        _add_column(conn)
        raise RuntimeError("a bug in step 2")

    with pytest.raises(LedgerMigrationError, match="version 2"):
        upgrade(path, [MIGRATIONS[0], Migration(2, failing)])
    assert _user_version(path) == 0 and _dump(path) == dump


def test_a_process_killed_mid_migration_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite", without=AUDIT_TABLES)
    dump = _dump(path)
    killed = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from cifa_ingest.archive import migrations as m

        def dying(conn):
            conn.execute(next(s for s in m._V0_1_0_TABLES if "fixity_checks" in s))
            os._exit(9)  # no rollback, no close: as a SIGKILL or a power cut would

        m.upgrade(Path(sys.argv[1]), [m.Migration(1, dying), *m.MIGRATIONS[1:]])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", killed, str(path)], cwd=REPO, capture_output=True, check=False
    )
    assert result.returncode == 9, result.stderr
    assert _user_version(path) == 0 and _dump(path) == dump
    assert (tmp_path / f"ledger.sqlite.before-v{LATEST}").exists()  # the killed run's, kept
    assert AuditLog(path).verify() == [] and _user_version(path) == LATEST
    assert (tmp_path / f"ledger.sqlite.before-v{LATEST}.2").exists()


# ---------------------------------------------------------------------------------------------
# Two processes opening a new ledger at once: one migrates, the other waits and finds it done.


def test_processes_opening_a_new_ledger_at_once_migrate_it_once(tmp_path: Path) -> None:
    path, log, go = tmp_path / "ledger.sqlite", tmp_path / "applied.log", tmp_path / "go"
    child = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from cifa_ingest.archive import migrations as m

        path, log, go, ready = map(Path, sys.argv[1:])
        real = m.MIGRATIONS[0].apply

        def slow(conn):
            with open(log, "a") as out:
                out.write(f"{os.getpid()}\\n")
            time.sleep(0.5)  # the others arrive while this one migrates
            real(conn)

        m.MIGRATIONS = (m.Migration(1, slow), *m.MIGRATIONS[1:])
        ready.touch()
        while not go.exists():
            time.sleep(0.005)
        print(m.upgrade(path))
        """
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(path), str(log), str(go), str(tmp_path / f"r{i}")],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"r{i}").exists() for i in range(3)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.touch()
    for process in children:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert out.strip() == str(LATEST)
    assert len(log.read_text().splitlines()) == 1
    assert _user_version(path) == LATEST
    assert not list(tmp_path.glob("ledger.sqlite.before-*"))  # a new ledger: nothing to back up
    assert os.path.getsize(path) > 0


# ---------------------------------------------------------------------------------------------
# Step 2 (issue 16): the copies of each bag in further storage locations.


def test_a_v1_ledger_gets_the_copies_table_rows_kept_and_a_backup_of_v1(tmp_path: Path) -> None:
    """A ledger the release before storage locations made (schema version 1) is upgraded in
    place: its rows kept, a backup of it named after version 2, the copies table empty."""
    from cifa_ingest.archive.ledger import CopyState

    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite")
    assert upgrade(path, MIGRATIONS[:1]) == 1  # what the previous release did on open
    first_backup = tmp_path / "ledger.sqlite.before-v1"
    assert first_backup.exists()
    before = _rows(path)
    assert upgrade(path, MIGRATIONS[:2]) == 2  # the release of issue 16's first half
    ledger = Ledger(path)
    assert _user_version(path) == LATEST
    after = _rows(path)
    assert {t: after[t] for t in before} == before and after["copies"] == []
    backup = tmp_path / "ledger.sqlite.before-v2"
    assert _user_version(backup) == 1 and _rows(backup) == before
    assert first_backup.exists()  # each version's backup kept
    assert AuditLog(path).verify() == []
    # The copies API on the upgraded ledger.
    pending = ledger.record_copy("cifa-v-0001", "disk2", "pending", software="cifa-ingest t")
    assert pending.state is CopyState.PENDING and pending.verified_at is None
    good = ledger.record_copy(
        "cifa-v-0001", "disk2", CopyState.GOOD, software="cifa-ingest t", size=600, copied=True
    )
    assert good.verified_at and good.copied_at and good.bytes == 600
    damaged = ledger.record_copy(
        "cifa-v-0001", "disk2", CopyState.DAMAGED, software="t", detail="data/x differs"
    )
    # A damaged copy still says when it was last known good, and how large it was.
    assert (damaged.verified_at, damaged.copied_at, damaged.bytes) == (
        good.verified_at, good.copied_at, 600,
    )  # fmt: skip
    assert [c.state for c in ledger.copies(work_id="cifa-v-0001")] == [CopyState.DAMAGED]
    assert ledger.copy("cifa-v-0002", "disk2") is None
    with pytest.raises(ValueError):
        ledger.record_copy("cifa-v-0001", "disk2", "fine", software="t")
    assert ledger.copies(location="disk2")[0].detail == "data/x differs"


def test_step_2_makes_the_copies_table_and_its_index() -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        MIGRATIONS[0].apply(conn)
        MIGRATIONS[1].apply(conn)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(copies)")]
        assert columns == [
            "work_id", "location", "state", "copied_at", "verified_at", "bytes", "detail",
            "software", "updated_at",
        ]  # fmt: skip
        indexes = [row[1] for row in conn.execute("PRAGMA index_list(copies)")]
        assert "copies_location" in indexes


# ---------------------------------------------------------------------------------------------
# Step 3 (issue 16): preservation events of repair, in a hash chain of their own.


def test_a_v2_ledger_gets_the_preservation_events_chain_and_old_digests_keep_verifying(
    tmp_path: Path,
) -> None:
    """A ledger at schema version 2 (copies, no events) with fixity checks chained is upgraded
    in place: its rows and chain kept, a backup named after version 3; events then extend a
    chain of their own, which ``verify`` walks and a tampered row breaks."""
    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite")
    assert upgrade(path, MIGRATIONS[:2]) == 2
    before = _rows(path)
    assert before["fixity_checks"]
    assert upgrade(path, MIGRATIONS[:3]) == 3
    after = _rows(path)
    assert {t: after[t] for t in before} == before
    assert after["preservation_events"] == [] and after["events_chain_head"] == []
    assert _user_version(tmp_path / "ledger.sqlite.before-v3") == 2
    log = AuditLog(path)
    assert log.verify() == [] and _chain_as_v0_1_0_checks_it(path) == []
    first = log.record_event(
        "cifa-v-0001", "fixity check", "nas", "failure", {"damaged": ["data/x"]}, "cifa-ingest t"
    )
    log.record_event("cifa-v-0001", "replication", "nas", "success", {"path": "data/x"}, "t")
    log.record_event("cifa-v-0001", "recovery", "nas", "success", {}, "t")
    assert [e.event_type for e in log.events("cifa-v-0001")] == [
        "fixity check", "replication", "recovery"
    ]  # fmt: skip
    assert first.detail == {"damaged": ["data/x"]} and log.events("cifa-v-0002") == []
    assert log.verify() == []
    with pytest.raises(ValueError):
        log.record_event("cifa-v-0001", "repair", "nas", "success", {}, "t")  # not LoC's term
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE preservation_events SET outcome = 'success' WHERE id = ?", (first.id,))
        conn.commit()
    assert any("preservation event 1" in p and "altered" in p for p in log.verify())


def test_a_v3_ledger_has_its_good_copies_made_pending_until_replication_adds_the_versions(
    tmp_path: Path,
) -> None:
    """Step 4 (issue 18): a copy recorded good by a release whose locations held no versions is
    pending after the upgrade, said why, so that the next replication verifies it and adds the
    work's versions; a copy found missing or damaged keeps its finding; nothing else changes,
    and a backup of the v3 ledger is kept."""
    path = _v0_1_0_ledger(tmp_path / "ledger.sqlite")
    assert upgrade(path, MIGRATIONS[:3]) == 3
    with closing(sqlite3.connect(path)) as conn:
        works = [row[0] for row in conn.execute("SELECT work_id FROM bags ORDER BY work_id")]
        assert works
        for location, state in (("nas", "good"), ("s3", "damaged"), ("disk", "pending")):
            conn.execute(
                "INSERT INTO copies (work_id, location, state, copied_at, verified_at, bytes,"
                " detail, software, updated_at) VALUES (?, ?, ?, 't0', 't0', 10, 'before',"
                " 'cifa-ingest 0.x', 't0')",
                (works[0], location, state),
            )
        conn.commit()
    before = _rows(path)
    assert upgrade(path) == 4 == LATEST
    after = _rows(path)
    assert {t: after[t] for t in before if t != "copies"} == {
        t: before[t] for t in before if t != "copies"
    }
    assert _user_version(tmp_path / "ledger.sqlite.before-v4") == 3
    with closing(sqlite3.connect(path)) as conn:
        rows = {
            row[0]: row[1:]
            for row in conn.execute("SELECT location, state, detail, verified_at FROM copies")
        }
    assert rows["nas"][0] == "pending" and "versions" in rows["nas"][1]
    assert rows["nas"][2] == "t0"  # when it was last verified is history: kept
    assert rows["s3"] == ("damaged", "before", "t0")
    assert rows["disk"] == ("pending", "before", "t0")


def test_step_3_makes_the_events_tables_and_index() -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        for step in MIGRATIONS[:3]:
            step.apply(conn)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(preservation_events)")]
        assert columns == [
            "id", "bag_id", "event_type", "event_at", "location", "outcome", "detail",
            "software", "prev_hash", "record_hash",
        ]  # fmt: skip
        indexes = [row[1] for row in conn.execute("PRAGMA index_list(preservation_events)")]
        assert "preservation_events_bag" in indexes
