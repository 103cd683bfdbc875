"""``cifa recover`` (issue 16): the primary's whole disk lost, the archive rebuilt from one
location, on real bags made by the pipeline and replicated by ``cifa replicate``: every bag
verified against the ledger's snapshot, each work's versions with it (its OCFL object, valid for
ocfl-py; tests/test_recover_versions.py has works of several versions), the rebuilt archive
audited clean and its chain intact; a bag newer than the snapshot registered from its own records
and said so; from a real S3 server (SeaweedFS); a damaged copy reported and never taken; a folder
not empty refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import bagit
import pytest

from cifa_ingest import cli
from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.storage.recover import RecoveryOutcome, recover_archive
from cifa_ingest.storage.replicate import replicate_archive
from cifa_ingest.versions.inventory import Inventory
from tests.helpers import preserve_films
from tests.s3server import S3Server, s3_env, s3_server
from tests.test_replicate import _settings
from tests.test_versions import JUSTIFIED_WARNINGS, ocfl_object_report

__all__ = ["s3_env", "s3_server"]  # the fixtures, imported for pytest

WORKS = {"cifa-v-0001": "colour-bars.mkv", "cifa-v-0002": "three-days-day-1.mp4"}
LATE = "cifa-v-0003"
TITLE = {"en": "Recovery test", "zh": "恢复测试"}


@pytest.fixture(scope="module")
def pristine(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of three real bags (the third kept aside for a test), made once."""
    root = tmp_path_factory.mktemp("recover") / "archive"
    with LocalFileServer(served_root) as server:
        films = {i: (TITLE, f) for i, f in WORKS.items()}
        films[LATE] = (TITLE, "three-days-day-2.mp4")
        preserve_films(root, server.base_url, films)
    return root


@pytest.fixture
def archive(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "archive"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def replica(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A filesystem location ``replica``, declared in the settings."""
    root = tmp_path / "replica"
    root.mkdir()
    monkeypatch.setenv("CIFA_CONFIG", str(_settings(tmp_path, ("replica", root))))
    return root


def _cifa(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main([*args, "--json", "--quiet"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, json.loads(captured.out) if captured.out.strip() else {}


def _bag_digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "bags").rglob("*"))
        if p.is_file()
    }


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_ocfl_valid(objects: Path) -> None:
    """Every object under ``objects`` valid for ocfl-py, every digest checked. Its warnings but
    W005 (tests/test_versions.py says why) and W008: these archives' settings name no contact
    address, so their versions' user has none."""
    found = sorted(p for p in objects.iterdir() if p.is_dir())
    assert found
    for obj in found:
        valid, codes = ocfl_object_report(obj)
        assert valid, codes
        assert set(codes) <= {*JUSTIFIED_WARNINGS, "W008"}, codes


def _lose(archive: Path) -> None:
    """The primary's whole disk is lost."""
    shutil.rmtree(archive)
    assert not archive.exists()


def _forget(archive: Path, work_id: str) -> None:
    """The archive as it was before ``work_id`` was preserved: its bag and rows gone."""
    shutil.rmtree(archive / "bags" / work_id)
    with closing(sqlite3.connect(archive / "ledger.sqlite")) as conn, conn:
        for table in ("bags", "bag_files", "source_keys", "work_outcomes", "copies"):
            conn.execute(f"DELETE FROM {table} WHERE work_id = ?", (work_id,))


# ---------------------------------------------------------------------------------------------


def test_the_whole_archive_is_rebuilt_from_a_replica_and_audits_clean(
    archive: Path, replica: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _forget(archive, LATE)
    assert _cifa(capsys, "replicate", "--archive", str(archive))[0] == 0
    primary = _bag_digests(archive)
    before = Ledger(archive / "ledger.sqlite")
    records = {r.work_id: r for r in before.bags()}
    replica_before = _tree(replica)
    _lose(archive)

    rebuilt = tmp_path / "rebuilt"
    code, report = _cifa(capsys, "recover", "--from", "replica", "--to", str(rebuilt))
    assert code == 0, report
    assert report["ok"] is True and report["snapshot"].startswith("ledger/ledger-")
    assert {(b["id"], b["outcome"], b["versions"]) for b in report["bags"]} == {
        (work, "recovered", 1) for work in WORKS
    }
    assert report["audit"]["ok"] and report["audit"]["checked"] == len(WORKS)
    assert report["chain_problems"] == []
    # Byte for byte the lost bags, read-only as placed bags are; each valid for bagit-python.
    assert _bag_digests(rebuilt) == primary
    for work in WORKS:
        bag = rebuilt / "bags" / work
        bagit.Bag(str(bag)).validate()
        assert all(p.stat().st_mode & 0o222 == 0 for p in bag.rglob("*") if p.is_file())
    # The ledger is the snapshot's: the same bags, digests and files; nothing of the work left.
    ledger = Ledger(rebuilt / "ledger.sqlite")
    assert {r.work_id: r for r in ledger.bags()} == records
    assert {c.work_id: c.state for c in ledger.copies(location="replica")} == {
        work: CopyState.GOOD for work in WORKS
    }
    assert sorted(p.name for p in rebuilt.iterdir()) == [
        "bags", "ledger.sqlite", "objects", "staging"
    ]  # fmt: skip
    assert not list((rebuilt / "staging").iterdir())
    # Each work's versions (its one version here) with it: the object valid for ocfl-py, its
    # content the bag's own files (hard links: no byte twice).
    assert_ocfl_valid(rebuilt / "objects")
    for work in WORKS:
        bag, obj = rebuilt / "bags" / work, rebuilt / "objects" / work
        inventory = Inventory.from_bytes((obj / "inventory.json").read_bytes(), work)
        state = inventory.state()
        for digest, [content_path] in inventory.manifest.items():  # stored once, however many
            same = {(bag / path).stat().st_ino for path, d in state.items() if d == digest}
            assert (obj / content_path).stat().st_ino in same
    # The rebuilt archive as an auditor checks it: `cifa audit` clean, the chain verifies.
    code, audit = _cifa(capsys, "audit", "--archive", str(rebuilt))
    assert code == 0 and audit["ok"] and audit["checked"] == len(WORKS), audit
    code, verdict = _cifa(capsys, "ledger", "verify", "--archive", str(rebuilt))
    assert code == 0 and verdict["ok"]
    log = AuditLog(rebuilt / "ledger.sqlite")
    assert len(log.latest_checks()) == len(WORKS)
    # Each bag's recovery is a PREMIS event of the primary copy, from the replica.
    for work in WORKS:
        [event] = [e for e in log.events(work) if e.event_type == "recovery"]
        assert (event.location, event.outcome) == ("primary", "success")
        assert event.detail["from"] == "replica" and event.detail["outcome"] == "recovered"
    # The replica was only read.
    assert _tree(replica) == replica_before


def test_a_bag_newer_than_the_snapshot_is_registered_from_its_own_records(
    archive: Path, replica: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The night's replication copied a bag, and its snapshot never reached the location: the
    bag is there, the snapshot does not know it."""
    assert _cifa(capsys, "replicate", "--archive", str(archive))[0] == 0
    [snapshot] = (replica / "ledger").glob("ledger-*.sqlite")
    snapshot.chmod(0o644)
    with closing(sqlite3.connect(snapshot)) as conn, conn:  # as it was before LATE was placed
        for table in ("bags", "bag_files", "source_keys", "work_outcomes", "copies"):
            conn.execute(f"DELETE FROM {table} WHERE work_id = ?", (LATE,))
    late_record = Ledger(archive / "ledger.sqlite").bag(LATE)
    late_files = Ledger(archive / "ledger.sqlite").bag_files(LATE)
    assert late_record is not None and late_files
    _lose(archive)

    rebuilt = tmp_path / "rebuilt"
    code, report = _cifa(capsys, "recover", "--from", "replica", "--to", str(rebuilt))
    assert code == 0, report
    outcomes = {b["id"]: b["outcome"] for b in report["bags"]}
    assert outcomes == {**dict.fromkeys(WORKS, "recovered"), LATE: "registered_from_bag"}
    assert {b["id"]: b["versions"] for b in report["bags"]} == dict.fromkeys([*WORKS, LATE], 1)
    assert_ocfl_valid(rebuilt / "objects")  # the late bag's object too, from the location
    ledger = Ledger(rebuilt / "ledger.sqlite")
    registered = ledger.bag(LATE)
    assert registered is not None
    assert registered.manifest_digests == late_record.manifest_digests
    assert registered.source_keys == late_record.source_keys  # from its capture record
    assert registered.payload_oxum == late_record.payload_oxum
    assert ledger.bag_files(LATE) == late_files
    copy = ledger.copy(LATE, "replica")
    assert copy is not None and copy.state is CopyState.GOOD
    code, audit = _cifa(capsys, "audit", "--archive", str(rebuilt))
    assert code == 0 and audit["checked"] == 3
    # Said for people too.
    shutil.rmtree(rebuilt)
    capsys.readouterr()
    assert cli.main(["recover", "--from", "replica", "--to", str(rebuilt), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{LATE}: registered_from_bag (newer than the snapshot" in out


def test_a_damaged_copy_is_reported_never_taken(
    archive: Path, replica: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cifa(capsys, "replicate", "--archive", str(archive))[0] == 0
    damaged, intact = sorted(WORKS)
    [master] = (replica / "bags" / damaged / "data" / "master").iterdir()
    master.chmod(0o644)
    with master.open("r+b") as fh:
        fh.seek(master.stat().st_size // 2)
        fh.write(b"\xde\xad\xbe\xef")
    os.remove(next((replica / "bags" / LATE / "data" / "original").iterdir()))
    _lose(archive)

    rebuilt = tmp_path / "rebuilt"
    code, report = _cifa(capsys, "recover", "--from", "replica", "--to", str(rebuilt))
    assert code == 1
    rows = {b["id"]: b for b in report["bags"]}
    assert rows[intact]["outcome"] == RecoveryOutcome.RECOVERED
    assert rows[damaged]["outcome"] == RecoveryOutcome.DAMAGED
    relative = master.relative_to(replica / "bags" / damaged).as_posix()
    assert relative in rows[damaged]["detail"] and "sha256" in rows[damaged]["detail"]
    assert rows[LATE]["outcome"] == RecoveryOutcome.MISSING
    assert "data/original/" in rows[LATE]["detail"] and "absent" in rows[LATE]["detail"]
    # Neither is in the rebuilt archive; the ledger keeps them, and says the copies are bad.
    assert sorted(p.name for p in (rebuilt / "bags").iterdir()) == [intact]
    ledger = Ledger(rebuilt / "ledger.sqlite")
    assert {r.work_id for r in ledger.bags()} == {*WORKS, LATE}
    copy = ledger.copy(damaged, "replica")
    assert copy is not None and copy.state is CopyState.DAMAGED and relative in copy.detail
    copy = ledger.copy(LATE, "replica")
    assert copy is not None and copy.state is CopyState.MISSING
    [event] = AuditLog(rebuilt / "ledger.sqlite").events(damaged)
    assert (event.event_type, event.outcome) == ("recovery", "failure")
    assert report["ok"] is False and report["audit"]["problems"] == 2
    assert not list((rebuilt / "staging").iterdir())
    # Said for people, with which bag and why.
    shutil.rmtree(rebuilt)
    capsys.readouterr()
    assert cli.main(["recover", "--from", "replica", "--to", str(rebuilt), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"{damaged}: damaged, not recovered: {relative}: sha256" in out


def test_a_folder_not_empty_an_unknown_location_or_none_is_refused(
    archive: Path, replica: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cifa(capsys, "replicate", "--archive", str(archive))[0] == 0
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("someone's", "utf-8")
    capsys.readouterr()
    assert cli.main(["recover", "--from", "replica", "--to", str(occupied)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "Traceback" not in err
    assert sorted(p.name for p in occupied.iterdir()) == ["notes.txt"]
    # Over an archive: refused, untouched.
    assert cli.main(["recover", "--from", "replica", "--to", str(archive)]) == 2
    assert "holds an archive already" in capsys.readouterr().err
    assert cli.main(["recover", "--from", "nowhere", "--to", str(tmp_path / "n")]) == 2
    assert "--from: no location named 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()
    # A location that does not answer (its disk not mounted): exit 1, and nothing made.
    shutil.move(replica, tmp_path / "unmounted")
    assert cli.main(["recover", "--from", "replica", "--to", str(tmp_path / "u")]) == 1
    err = capsys.readouterr().err
    assert "does not exist (a disk not mounted?)" in err and "Traceback" not in err
    assert not (tmp_path / "u").exists()
    shutil.move(tmp_path / "unmounted", replica)
    # A location that holds no snapshot: exit 1, and nothing made.
    empty = tmp_path / "empty-location"
    empty.mkdir()
    os.environ["CIFA_CONFIG"] = str(_settings(tmp_path, ("replica", replica), ("bare", empty)))
    assert cli.main(["recover", "--from", "bare", "--to", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "holds no sound ledger snapshot" in err and not (tmp_path / "b").exists()


def test_a_recovery_cut_short_is_started_again(
    archive: Path, replica: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a killed recovery leaves (no ledger.sqlite, its work folder) is no archive, and the
    next recovery into the folder starts again."""
    assert _cifa(capsys, "replicate", "--archive", str(archive))[0] == 0
    _lose(archive)
    rebuilt = tmp_path / "rebuilt"
    (rebuilt / ".recovering").mkdir(parents=True)
    (rebuilt / ".recovering" / "ledger.sqlite").write_bytes(b"half")
    (rebuilt / "bags" / "cifa-v-0001" / "data").mkdir(parents=True)
    (rebuilt / "objects" / "cifa-v-0001" / "v1").mkdir(parents=True)
    capsys.readouterr()
    assert cli.main(["status", "--archive", str(rebuilt)]) == 2  # not an archive
    code, report = _cifa(capsys, "recover", "--from", "replica", "--to", str(rebuilt))
    assert code == 0, report
    assert not (rebuilt / ".recovering").exists()
    assert_ocfl_valid(rebuilt / "objects")


def test_an_older_snapshot_is_used_when_the_newest_is_damaged(
    archive: Path, replica: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cifa(capsys, "replicate", "--archive", str(archive))[0] == 0
    [good] = (replica / "ledger").glob("ledger-*.sqlite")
    newer = good.with_name("ledger-29991231T000000Z.sqlite")
    newer.write_bytes(good.read_bytes()[:4096] + b"\0" * 4096)
    _lose(archive)
    code, report = _cifa(capsys, "recover", "--from", "replica", "--to", str(tmp_path / "r"))
    assert code == 0, report
    assert report["snapshot"] == f"ledger/{good.name}"
    assert [r["key"] for r in report["refused_snapshots"]] == [f"ledger/{newer.name}"]


# ---------------------------------------------------------------------------------------------


def test_recovery_from_s3(
    archive: Path, tmp_path: Path, s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    location = s3_server.location(s3_server.create_bucket(), name="offsite", prefix="cifa/")
    assert replicate_archive(Archive(archive), [location]).ok
    primary = _bag_digests(archive)
    _lose(archive)
    rebuilt = tmp_path / "rebuilt"
    report = recover_archive(location, rebuilt)
    assert report.ok, report.as_dict()
    assert {(b.outcome, b.versions) for b in report.bags} == {(RecoveryOutcome.RECOVERED, 1)}
    assert _bag_digests(rebuilt) == primary
    assert_ocfl_valid(rebuilt / "objects")
    for secret in s3_env.values():
        if "SECRET" in secret:
            assert secret not in json.dumps(report.as_dict())
    assert AuditLog(rebuilt / "ledger.sqlite").verify() == []
