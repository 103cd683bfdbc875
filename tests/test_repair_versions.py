"""Repair of every version of a work (issue 18), on a real work preserved by the pipeline, its
title then fixed by the real ingest (version 2, so that version 1 keeps its own descriptive
record), replicated by the real replication to a filesystem location and to a real SeaweedFS
bucket: a location's copy of the versions (``versions/<id>/``) that lost or holds damaged files
is found by its audit and put back by ``cifa repair`` from the primary's object, verified, and is
good again; an earlier version's own file damaged in the primary's object is mended from a
location, the object valid for ocfl-py's validator (which we did not write); with no good copy
anywhere nothing is overwritten; a mend cut short leaves the file as it was."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from cifa_ingest import cli
from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.audit.fixity_audit import audit_archive
from cifa_ingest.catalogue.model import Work
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.storage.locations import S3Location
from cifa_ingest.storage.repair import PRIMARY_VERSIONS, repair_work
from cifa_ingest.storage.replicate import SourceDamaged, work_files
from cifa_ingest.storage.stores import open_store
from cifa_ingest.storage.versions_copy import object_key
from tests.conftest import TEST_CONFIG
from tests.s3server import S3Server, s3_env, s3_server
from tests.test_docs import _assert_documented
from tests.test_ingest_versions import WORK_ID, _settings
from tests.test_versions import assert_ocfl_valid

__all__ = ["s3_env", "s3_server"]  # the fixtures, imported for pytest

#: Version 1's own descriptive records: version 2 (a title fix) has others.
OLD_RECORD = "v1/content/metadata/descriptive.json"
OLD_DC = "v1/content/metadata/descriptive.xml"


def _cifa(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = cli.main([*args, "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, json.loads(out) if out.strip() else {}, err


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _overwrite(path: Path, data: bytes) -> None:
    """Other bytes in a read-only file, its mode kept (an insider's damage, or bit rot)."""
    mode = path.stat().st_mode & 0o777
    path.chmod(0o644)
    path.write_bytes(data)
    path.chmod(mode)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    _overwrite(path, bytes(data))


def _object_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class Places:
    """The archive (a work at version 2) and its two locations, every copy good."""

    def __init__(self, archive: Archive, disk: Path, s3: S3Location) -> None:
        self.archive, self.disk, self.s3 = archive, disk, s3
        self.obj = archive.objects_dir / WORK_ID
        self.at_disk = disk / "versions" / WORK_ID

    def s3_bytes(self, path: str) -> bytes | None:
        store = open_store(self.s3)
        if store.stat(object_key(WORK_ID, path)) is None:
            return None
        with store.open(object_key(WORK_ID, path)) as reader:
            return reader.read()

    def states(self) -> dict[str, CopyState]:
        return {c.location: c.state for c in Ledger(self.archive.ledger_path).copies()}


@pytest.fixture
def places(
    preserved: tuple[Archive, Work],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,
    s3_env: dict[str, str],
) -> Places:
    """Version 2 of the work (a title fix, its payload unchanged), replicated by ``cifa
    replicate`` to ``disk2`` (a folder) and ``offsite`` (a SeaweedFS bucket), both in the
    settings ``cifa`` reads."""
    archive, work = preserved
    corrected = Work.model_validate(
        {**work.model_dump(mode="python"), "title": {"en": "Versions test", "zh": "版本測試"}}
    )
    assert preserve_work(corrected, archive, _settings()).outcome is Outcome.NEW_VERSION
    disk = tmp_path / "disk2"
    disk.mkdir()
    s3 = s3_server.location(s3_server.create_bucket(), name="offsite", prefix="cifa/")
    config = tmp_path / "cifa.toml"
    config.write_text(
        TEST_CONFIG.read_text("utf-8")
        + f'\n[[storage.locations]]\nname = "disk2"\nkind = "filesystem"\npath = "{disk}"\n'
        'zone = "zone-disk2"\n'
        f'\n[[storage.locations]]\nname = "offsite"\nkind = "s3"\nendpoint = "{s3.endpoint}"\n'
        f'region = "{s3.region}"\nbucket = "{s3.bucket}"\nprefix = "{s3.prefix}"\n'
        'zone = "zone-offsite"\n',
        "utf-8",
    )
    monkeypatch.setenv("CIFA_CONFIG", str(config))
    code = cli.main(["replicate", "--archive", str(archive.root), "--quiet"])
    assert code == 0
    found = Places(archive, disk, s3)
    assert found.states() == {"disk2": CopyState.GOOD, "offsite": CopyState.GOOD}
    assert (found.at_disk / OLD_RECORD).is_file() and found.s3_bytes(OLD_DC) is not None
    return found


# ---------------------------------------------------------------------------------------------
# (a) A location's copy of the versions, put back from the primary


def test_versions_lost_or_damaged_at_a_folder_and_in_s3_are_put_back_from_the_primary(
    places: Places, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = str(places.archive.root)
    # At the folder: version 1's own record deleted, version 1's inventory one bit flipped.
    (places.at_disk / OLD_RECORD).unlink()
    _flip(places.at_disk / "v1/inventory.json")
    # In the bucket: version 1's own Dublin Core deleted, the object's inventory overwritten
    # with other bytes of its size (a new object, with its own checksum).
    client = s3_server.client()
    bucket, prefix = places.s3.bucket, places.s3.prefix
    client.delete_object(Bucket=bucket, Key=prefix + object_key(WORK_ID, OLD_DC))
    size = len(places.s3_bytes("inventory.json") or b"")
    client.put_object(Bucket=bucket, Key=prefix + object_key(WORK_ID, "inventory.json"),
                      Body=b"{" + b" " * (size - 2) + b"}", ChecksumAlgorithm="SHA256")  # fmt: skip

    code, deep, _ = _cifa(capsys, "audit", "--archive", archive, "--location", "disk2", "--deep",
                          "--no-repair")  # fmt: skip
    assert code == 1
    assert {(p["kind"], p["path"]) for p in deep["problems"]} == {
        ("copy_missing", OLD_RECORD), ("copy_damaged", "v1/inventory.json"),
    }  # fmt: skip
    code, cheap, _ = _cifa(capsys, "audit", "--archive", archive, "--location", "offsite",
                           "--no-repair")  # fmt: skip
    assert code == 1
    assert {(p["kind"], p["path"]) for p in cheap["problems"]} == {
        ("copy_missing", OLD_DC), ("copy_damaged", "inventory.json"),
    }  # fmt: skip
    assert places.states() == {"disk2": CopyState.DAMAGED, "offsite": CopyState.DAMAGED}

    code, report, err = _cifa(capsys, "repair", WORK_ID, "--archive", archive)

    assert code == 0, (report, err)
    assert report["ok"] is True and report["problems"] == []
    _assert_documented("## `cifa repair`", report)  # docs/reference/json.md
    primary = places.obj
    assert {(r["location"], r["path"], r["was"], r["source"], r["sha256"])
            for r in report["repaired"]} == {
        ("disk2", OLD_RECORD, "copy_missing", PRIMARY_VERSIONS,
         _sha256((primary / OLD_RECORD).read_bytes())),
        ("disk2", "v1/inventory.json", "copy_damaged", PRIMARY_VERSIONS,
         _sha256((primary / "v1/inventory.json").read_bytes())),
        ("offsite", OLD_DC, "copy_missing", PRIMARY_VERSIONS,
         _sha256((primary / OLD_DC).read_bytes())),
        ("offsite", "inventory.json", "copy_damaged", PRIMARY_VERSIONS,
         _sha256((primary / "inventory.json").read_bytes())),
    }  # fmt: skip
    copies = {c["location"]: c for c in report["copies"]}
    assert set(copies) == {"primary", PRIMARY_VERSIONS, "disk2", "offsite"}
    assert all(c["good"] for c in copies.values())
    assert (copies["disk2"]["missing"], copies["disk2"]["damaged"]) == (
        [OLD_RECORD], ["v1/inventory.json"]
    )  # fmt: skip
    assert (
        copies["disk2"]["files"] == copies["primary"]["files"] + copies[PRIMARY_VERSIONS]["files"]
    )
    assert places.states() == {"disk2": CopyState.GOOD, "offsite": CopyState.GOOD}
    # Each location holds the primary's object again, byte for byte, beside its bag.
    held = _object_files(places.at_disk)
    assert held and all(data == (primary / path).read_bytes() for path, data in held.items())
    for path in (OLD_DC, "inventory.json"):
        assert places.s3_bytes(path) == (primary / path).read_bytes()
    # Both audits, deep, find nothing wrong.
    for location in ("disk2", "offsite"):
        code, audit, _ = _cifa(capsys, "audit", "--archive", archive, "--location", location,
                               "--deep", "--no-repair")  # fmt: skip
        assert code == 0 and audit["problems"] == [], audit
    # Each a PREMIS event in the audit log's chain, as a bag's repairs are.
    log = AuditLog(places.archive.ledger_path)
    assert log.verify() == []
    events = log.events(WORK_ID)
    copied = {(e.location, e.detail["path"]) for e in events
              if e.event_type == "replication" and e.outcome == "success"}  # fmt: skip
    assert copied == {("disk2", OLD_RECORD), ("disk2", "v1/inventory.json"),
                      ("offsite", OLD_DC), ("offsite", "inventory.json")}  # fmt: skip
    assert {(e.location, e.outcome) for e in events if e.event_type == "recovery"} == {
        ("disk2", "success"), ("offsite", "success"),
    }  # fmt: skip
    checked = {(e.location, e.outcome) for e in events if e.event_type == "fixity check"}
    assert {("disk2", "failure"), ("offsite", "failure"), (PRIMARY_VERSIONS, "success")} <= checked


def test_a_location_that_lost_every_version_gets_them_all_back_and_is_good(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    """A location's ``versions/<id>/`` gone whole: every file put back, the declaration last
    (a copy cut short never looks complete), and the copy good."""
    import shutil

    expected = _object_files(places.at_disk)
    for path in places.at_disk.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(places.at_disk)

    code, report, _ = _cifa(capsys, "repair", "--archive", str(places.archive.root))

    assert code == 0, report
    written = [r["path"] for r in report["repaired"] if r["location"] == "disk2"]
    assert sorted(written) == sorted(expected) and written[-1] == "0=ocfl_object_1.1"
    assert written.index("inventory.json") > written.index("v2/inventory.json")
    assert _object_files(places.at_disk) == expected
    assert places.states()["disk2"] is CopyState.GOOD


def test_a_location_audit_repairs_the_versions_it_finds_wanting(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cifa audit --location`` (repair on, as by default) hands a copy whose versions lost a
    file to repair: the file is put back, the problem leaves the report, the copy is good."""
    (places.at_disk / OLD_DC).unlink()

    code, report, err = _cifa(capsys, "audit", "--archive", str(places.archive.root),
                              "--location", "disk2")  # fmt: skip

    assert code == 0, (report, err)
    assert report["problems"] == []
    assert [(r["location"], r["path"], r["was"], r["source"]) for r in report["repaired"]] == [
        ("disk2", OLD_DC, "copy_missing", PRIMARY_VERSIONS)
    ]
    assert (places.at_disk / OLD_DC).read_bytes() == (places.obj / OLD_DC).read_bytes()
    assert places.states()["disk2"] is CopyState.GOOD


# ---------------------------------------------------------------------------------------------
# (b) The primary's object, mended from a location


def test_an_earlier_versions_own_file_damaged_in_the_primary_is_mended_from_a_location(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = places.obj / OLD_RECORD
    good = stored.read_bytes()
    _overwrite(stored, b'{"title": "someone else\'s film"}\n')
    assert not audit_archive(places.archive).ok

    code, report, err = _cifa(capsys, "repair", WORK_ID, "--archive", str(places.archive.root))

    assert code == 0, (report, err)
    [done] = report["repaired"]
    assert (done["location"], done["path"], done["was"], done["sha256"]) == (
        PRIMARY_VERSIONS, OLD_RECORD, "copy_damaged", _sha256(good),
    )  # fmt: skip
    assert done["source"] in ("disk2", "offsite")
    assert stored.read_bytes() == good
    assert stored.stat().st_mode & 0o777 == 0o444  # read-only, as every stored file
    assert not [p.name for p in places.archive.objects_dir.glob(".*.tmp")]  # no debris
    assert not list((places.archive.staging_dir).glob(".repair*"))
    assert_ocfl_valid(places.archive.objects_dir)
    assert audit_archive(places.archive).ok
    events = AuditLog(places.archive.ledger_path).events(WORK_ID)
    assert {(e.event_type, e.outcome) for e in events if e.location == PRIMARY_VERSIONS} == {
        ("fixity check", "failure"), ("replication", "success"), ("recovery", "success"),
    }  # fmt: skip
    assert places.states() == {"disk2": CopyState.GOOD, "offsite": CopyState.GOOD}


def test_the_audits_repair_mends_an_earlier_versions_own_file_from_a_location(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cifa audit`` (the primary's) finds an old record damaged; the bag has no file with its
    bytes, so its repair takes them from a location's copy of the versions, and the work, audited
    again, is clean."""
    stored = places.obj / OLD_DC
    good = stored.read_bytes()
    _flip(stored)

    code, report, err = _cifa(capsys, "audit", "--archive", str(places.archive.root))

    assert code == 0, (report, err)
    assert report["problems"] == []
    [done] = report["repaired"]
    assert (done["location"], done["path"], done["was"]) == (
        PRIMARY_VERSIONS, OLD_DC, "version_checksum_mismatch",
    )  # fmt: skip
    assert done["source"] in ("disk2", "offsite")
    assert stored.read_bytes() == good
    assert_ocfl_valid(places.archive.objects_dir)


def test_a_file_and_an_inventory_lost_from_the_primarys_object_come_back_from_s3(
    places: Places,
) -> None:
    """Version 1's own record gone and its inventory damaged in the primary's object: the
    object cannot say what its copies are (replication would refuse it), so what it must be is
    learnt from the object's inventory (intact, naming the bag the ledger vouches for) and the
    bucket's copy of version 1's inventory (matching its digest file, recording version 1 as
    the object's does); both come back from the bucket alone."""
    (places.obj / OLD_RECORD).unlink()
    _flip(places.obj / "v1/inventory.json")
    good = {p: places.s3_bytes(p) for p in (OLD_RECORD, "v1/inventory.json")}
    record = Ledger(places.archive.ledger_path).bag(WORK_ID)
    assert record is not None
    with pytest.raises(SourceDamaged, match="is missing"):  # replication refuses this object
        work_files(places.archive, record)

    report = repair_work(places.archive, [WORK_ID], [places.s3])

    assert report.ok, report.problems
    assert {(r.location, r.path, str(r.was), r.source) for r in report.repaired} == {
        (PRIMARY_VERSIONS, OLD_RECORD, "copy_missing", "offsite"),
        (PRIMARY_VERSIONS, "v1/inventory.json", "copy_damaged", "offsite"),
    }
    for path, data in good.items():
        assert (places.obj / path).read_bytes() == data
    assert_ocfl_valid(places.archive.objects_dir)
    assert audit_archive(places.archive).ok


# ---------------------------------------------------------------------------------------------
# (c) No good copy: nothing is overwritten


def test_an_old_record_no_copy_holds_whole_is_refused_and_nothing_is_overwritten(
    places: Places, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    _overwrite(places.obj / OLD_RECORD, b"damaged at the primary\n")
    _overwrite(places.at_disk / OLD_RECORD, b"damaged at disk2, otherwise\n")
    s3 = places.s3
    s3_server.client().delete_object(
        Bucket=s3.bucket, Key=s3.prefix + object_key(WORK_ID, OLD_RECORD)
    )
    before = {"primary": places.obj / OLD_RECORD, "disk2": places.at_disk / OLD_RECORD}
    contents = {name: path.read_bytes() for name, path in before.items()}

    code, report, err = _cifa(capsys, "repair", WORK_ID, "--archive", str(places.archive.root))

    assert code == 1 and report["ok"] is False, err
    assert report["repaired"] == []
    assert {(p["location"], p["kind"], p["path"]) for p in report["problems"]} == {
        (name, "no_good_copy", OLD_RECORD) for name in (PRIMARY_VERSIONS, "disk2", "offsite")
    }
    assert {name: path.read_bytes() for name, path in before.items()} == contents
    assert places.s3_bytes(OLD_RECORD) is None
    assert places.states() == {"disk2": CopyState.DAMAGED, "offsite": CopyState.MISSING}
    events = AuditLog(places.archive.ledger_path).events(WORK_ID)
    assert {(e.location, e.outcome) for e in events if e.event_type == "recovery"} == {
        (name, "failure") for name in (PRIMARY_VERSIONS, "disk2", "offsite")
    }
    capsys.readouterr()
    assert cli.main(["repair", WORK_ID, "--archive", str(places.archive.root), "--quiet"]) == 1
    assert "no_good_copy" in capsys.readouterr().out


def test_a_mend_cut_short_before_its_rename_leaves_the_file_as_it_was(
    places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The primary's file is replaced by one rename of a verified file: a run stopped before it
    (here the rename fails) leaves the damaged file as it was, never half of one; what it left
    in the storage root is cleared by the recovery before the next read, and the next run
    mends it."""
    import cifa_ingest.versions.repair as mending

    stored = places.obj / OLD_RECORD
    good = stored.read_bytes()
    _flip(stored)
    damaged = stored.read_bytes()
    real = os.replace

    def refuse_the_last_rename(source: object, target: object) -> None:
        if Path(str(target)) == stored:
            raise OSError(5, "Input/output error", str(target))
        real(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(mending.os, "replace", refuse_the_last_rename)
    report = repair_work(places.archive, [WORK_ID], [places.s3])
    assert not report.ok and report.repaired == []
    [problem] = report.problems
    assert (problem.location, problem.path, str(problem.kind)) == (
        PRIMARY_VERSIONS, OLD_RECORD, "copy_damaged",
    )  # fmt: skip
    assert "not replaced" in problem.detail
    assert stored.read_bytes() == damaged
    monkeypatch.setattr(mending.os, "replace", real)

    report = repair_work(places.archive, [WORK_ID], [places.s3])
    assert report.ok, report.problems
    assert stored.read_bytes() == good
    assert not list(places.archive.objects_dir.glob(".*.tmp"))
    assert_ocfl_valid(places.archive.objects_dir)


@pytest.mark.slow  # SIGKILLs: in the slow set, which CI runs, beside the other kill tests
def test_a_repair_of_the_versions_killed_at_random_moments_leaves_no_copy_worse(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cifa repair`` killed (SIGKILL) at random moments while it mends the primary's object
    and a location's copy of the versions: each file of each copy is as it was or whole, a copy
    recorded good is whole, the object valid once the recovery has run; the next run finishes."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from cifa_ingest.versions.history import read_object
    from tests.conftest import REPO

    watched = (OLD_RECORD, OLD_DC, "v1/inventory.json", "inventory.json")
    good = {path: (places.obj / path).read_bytes() for path in watched}
    rng = random.Random(18)
    for _trial in range(5):
        for path in watched[:2]:
            _overwrite(places.obj / path, good[path][::-1])  # the primary's old records damaged
        for path in watched:  # the folder's copy of them, and of two inventories, lost
            (places.at_disk / path).unlink(missing_ok=True)
        before = {
            str(root / path): (root / path).read_bytes() if (root / path).exists() else None
            for root in (places.obj, places.at_disk)
            for path in watched
        }
        row = Ledger(places.archive.ledger_path).copy(WORK_ID, "disk2")  # the damage not in it
        process = subprocess.Popen(
            [sys.executable, "-m", "cifa_ingest.cli", "repair", WORK_ID, "--archive",
             str(places.archive.root), "--quiet"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
        )  # fmt: skip
        time.sleep(rng.uniform(0.2, 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        for root in (places.obj, places.at_disk):
            for path in watched:
                now = (root / path).read_bytes() if (root / path).exists() else None
                assert now in (before[str(root / path)], good[path]), (root, path)
        now = Ledger(places.archive.ledger_path).copy(WORK_ID, "disk2")
        if now is not None and now != row and now.state is CopyState.GOOD:  # recorded good
            assert all((places.at_disk / p).read_bytes() == good[p] for p in watched)
        read_object(places.archive.objects_dir, WORK_ID)  # the recovery, as before every read
        assert not list(places.archive.objects_dir.glob(".*.tmp"))
        assert AuditLog(places.archive.ledger_path).verify() == []
    code, report, _ = _cifa(capsys, "repair", WORK_ID, "--archive", str(places.archive.root))
    assert code == 0, report
    for root in (places.obj, places.at_disk):
        assert {path: (root / path).read_bytes() for path in watched} == good
    assert places.states() == {"disk2": CopyState.GOOD, "offsite": CopyState.GOOD}
    assert_ocfl_valid(places.archive.objects_dir)
