"""Repair and restore (issue 16), on real bags made by the pipeline, copied by replication to two
filesystem locations (and a real S3 server, SeaweedFS): a damaged primary master repaired from a
replica, a replica's lost file from the primary, a file damaged differently in every copy refused
with nothing overwritten, a tampered ledger refused, a repair killed by SIGKILL at random moments
never leaving a copy worse; restore from a location, verified, all or nothing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import bagit
import pytest

from cifa_ingest import cli
from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.storage.repair import repair_work
from cifa_ingest.storage.replicate import replicate_archive
from cifa_ingest.storage.restore import restore_work
from cifa_ingest.storage.stores import open_store
from tests.conftest import REPO
from tests.s3server import S3Server, s3_env, s3_server
from tests.test_docs import _assert_documented
from tests.test_replicate import WORKS, archive, pristine, two_locations

__all__ = ["archive", "pristine", "s3_env", "s3_server", "two_locations"]  # fixtures

WORK = sorted(WORKS)[0]


def _cifa(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = cli.main([*args, "--json", "--quiet"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def _replicated(capsys: pytest.CaptureFixture[str], archive: Path) -> None:
    code, report, err = _cifa(capsys, "replicate", "--archive", str(archive))
    assert code == 0, (report, err)


def _digests(bag: Path) -> dict[str, str]:
    return {
        p.relative_to(bag).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(bag.rglob("*"))
        if p.is_file()
    }


def _master(bag: Path) -> Path:
    return next((bag / "data" / "master").iterdir())


def _damage(path: Path, at: int, xor: int = 0x01) -> None:
    """Flip bits of one byte, the file's size, mode and times kept (as bit rot would)."""
    state = path.stat()
    path.chmod(0o644)
    with path.open("r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ xor]))
    path.chmod(state.st_mode & 0o777)
    os.utime(path, ns=(state.st_atime_ns, state.st_mtime_ns))


def _copies(archive: Path, roots: tuple[Path, ...], work: str) -> list[Path]:
    return [archive / "bags" / work, *(root / "bags" / work for root in roots)]


# ---------------------------------------------------------------------------------------------


def test_a_damaged_primary_master_is_repaired_from_a_replica(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _replicated(capsys, archive)
    bag = archive / "bags" / WORK
    intact = _digests(bag)
    master = _master(bag)
    _damage(master, master.stat().st_size // 2)
    assert _digests(bag) != intact

    code, report, err = _cifa(capsys, "repair", WORK, "--archive", str(archive))
    assert code == 0, (report, err)
    assert report["ok"] is True and report["problems"] == []
    path = master.relative_to(bag).as_posix()
    [repaired] = report["repaired"]
    assert (repaired["location"], repaired["path"], repaired["was"]) == (
        "primary", path, "copy_damaged",
    )  # fmt: skip
    assert repaired["source"] in ("disk2", "nas")
    _assert_documented("## `cifa repair`", report)  # docs/reference/json.md
    assert _digests(bag) == intact
    assert master.stat().st_mode & 0o777 == 0o444  # read-only again, like every placed file
    assert not [p for p in bag.rglob(".*")]  # no temporary file ever in a placed bag
    bagit.Bag(str(bag)).validate()
    assert not list((archive / "staging").glob(".repair*/*"))

    code, audit, _ = _cifa(capsys, "audit", "--archive", str(archive))
    assert code == 0, audit
    code, events, _ = _cifa(capsys, "events", WORK, "--archive", str(archive))
    assert code == 0
    types = [(e["type"], e["outcome"]) for e in events["events"]]
    assert ("recovery", "success") in types and ("replication", "success") in types
    assert ("fixity check", "failure") in types  # the check of the primary that found it
    recovery = next(e for e in events["events"] if e["type"] == "recovery")
    assert "primary" in recovery["detail"]
    assert AuditLog(archive / "ledger.sqlite").verify() == []
    assert {c.state for c in Ledger(archive / "ledger.sqlite").copies()} == {CopyState.GOOD}
    # The events document still validates against PREMIS 3.0.
    from cifa_ingest.metadata.events import bag_events, to_bytes
    from tests.helpers import premis_schema

    document = bag_events(bag, AuditLog(archive / "ledger.sqlite"), WORK)
    premis_schema().validate(to_bytes(document).decode())


def test_a_replicas_missing_file_is_repaired_from_the_primary_and_recorded_good(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _replicated(capsys, archive)
    _disk, nas = two_locations
    lost = _master(nas / "bags" / WORK)
    lost.unlink()
    before = Ledger(archive / "ledger.sqlite").copy(WORK, "nas")
    code, report, _ = _cifa(capsys, "repair", "--archive", str(archive))  # every bag
    assert code == 0, report
    assert [(r["location"], r["was"]) for r in report["repaired"]] == [("nas", "copy_missing")]
    assert report["works"] == sorted(WORKS)
    bagit.Bag(str(nas / "bags" / WORK)).validate()
    copy = Ledger(archive / "ledger.sqlite").copy(WORK, "nas")
    assert copy is not None and before is not None
    assert copy.state is CopyState.GOOD and copy.verified_at and copy.detail == ""
    assert copy.copied_at is not None and copy.copied_at >= (before.copied_at or "")


def test_the_same_file_damaged_differently_everywhere_is_refused_nothing_overwritten(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _replicated(capsys, archive)
    bags = _copies(archive, two_locations, WORK)
    for number, bag in enumerate(bags):
        master = _master(bag)
        _damage(master, 1000 + 97 * number, xor=1 << number)
    before = {str(bag): _digests(bag) for bag in bags}
    code, report, err = _cifa(capsys, "repair", WORK, "--archive", str(archive))
    assert code == 1 and report["ok"] is False
    assert "Traceback" not in err
    assert report["repaired"] == []
    kinds = {(p["location"], p["kind"]) for p in report["problems"]}
    assert kinds == {(name, "no_good_copy") for name in ("primary", "disk2", "nas")}
    assert {str(bag): _digests(bag) for bag in bags} == before  # nothing overwritten
    ledger = Ledger(archive / "ledger.sqlite")
    assert {ledger.copy(WORK, n).state for n in ("disk2", "nas")} == {CopyState.DAMAGED}  # type: ignore[union-attr]
    events = AuditLog(archive / "ledger.sqlite").events(WORK)
    assert {(e.location, e.outcome) for e in events if e.event_type == "recovery"} == {
        (name, "failure") for name in ("primary", "disk2", "nas")
    }
    # In words too, for people.
    capsys.readouterr()
    assert cli.main(["repair", WORK, "--archive", str(archive), "--quiet"]) == 1
    assert "no_good_copy" in capsys.readouterr().out


def test_a_ledger_whose_chain_is_broken_stops_repair_nothing_touched(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _replicated(capsys, archive)
    assert _cifa(capsys, "audit", "--archive", str(archive))[0] == 0  # chain rows to forge
    master = _master(archive / "bags" / WORK)
    _damage(master, 5000)
    trees = {str(bag): _digests(bag) for bag in _copies(archive, two_locations, WORK)}
    with closing(sqlite3.connect(archive / "ledger.sqlite")) as conn:
        conn.execute("UPDATE fixity_checks SET outcome = 'damaged' WHERE id = 1")
        conn.commit()
    rows_before = Ledger(archive / "ledger.sqlite").copies()
    code, report, err = _cifa(capsys, "repair", WORK, "--archive", str(archive))
    assert code == 1 and report["ok"] is False
    assert "hash chain is broken" in report["refused"] and "repair refused" in err
    assert "Traceback" not in err
    assert {str(bag): _digests(bag) for bag in _copies(archive, two_locations, WORK)} == trees
    assert Ledger(archive / "ledger.sqlite").copies() == rows_before
    assert AuditLog(archive / "ledger.sqlite").events(WORK) == []


# ---------------------------------------------------------------------------------------------
# A repair killed at random moments


def _state_is_never_worse(
    archive: Path, roots: tuple[Path, Path], before: dict[str, dict[str, str]],
    intact: dict[str, str], rows: Mapping[str, object],
) -> None:  # fmt: skip
    """Each file of each copy is as it was before the repair or as the ledger records it; a
    placed bag holds no file it did not hold; a copy the run recorded good is good (``rows``:
    the ledger's rows before the run, which the test's own damage made wrong)."""
    ledger = Ledger(archive / "ledger.sqlite")
    for bag in _copies(archive, roots, WORK):
        now = _digests(bag)
        visible = {p: d for p, d in now.items() if not Path(p).name.startswith(".")}
        if bag.is_relative_to(archive):
            assert visible == now  # no debris in a placed bag
        for path, digest in visible.items():
            assert digest in (before[str(bag)].get(path), intact[path]), (bag, path)
        for path in intact:
            if path not in visible:
                assert path not in before[str(bag)], (bag, path)  # lost only if it was
    for root, name in zip(roots, ("disk2", "nas"), strict=True):
        copy = ledger.copy(WORK, name)
        if copy is not None and copy.state is CopyState.GOOD and copy != rows[name]:
            assert _digests(root / "bags" / WORK) == intact


def _kill_repair_at_random(
    archive: Path, roots: tuple[Path, Path], trials: int, capsys: pytest.CaptureFixture[str]
) -> None:
    intact = _digests(archive / "bags" / WORK)
    rng = random.Random(16)
    for trial in range(trials):
        # Damage the primary's master and lose a file of each replica, differently each time.
        master = _master(archive / "bags" / WORK)
        _damage(master, rng.randrange(master.stat().st_size))
        for root in roots:
            victim = root / "bags" / WORK / rng.choice(sorted(intact))
            if victim.exists() and victim.name != master.name:
                victim.unlink()
        before = {str(bag): _digests(bag) for bag in _copies(archive, roots, WORK)}
        ledger = Ledger(archive / "ledger.sqlite")
        rows = {name: ledger.copy(WORK, name) for name in ("disk2", "nas")}
        process = subprocess.Popen(
            [sys.executable, "-m", "cifa_ingest.cli", "repair", WORK, "--archive", str(archive),
             "--quiet"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
        )  # fmt: skip
        time.sleep(rng.uniform(0.3, 2.5) if trial else 1.0)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        _state_is_never_worse(archive, roots, before, intact, rows)
        assert AuditLog(archive / "ledger.sqlite").verify() == []
    code, report, _ = _cifa(capsys, "repair", WORK, "--archive", str(archive))
    assert code == 0, report
    for bag in _copies(archive, roots, WORK):
        assert {p: d for p, d in _digests(bag).items() if not p.startswith(".")} == intact
        bagit.Bag(str(bag)).validate()
    assert not list((archive / "staging").glob(".repair/*"))


def test_a_repair_killed_at_a_random_moment_leaves_no_copy_worse(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _replicated(capsys, archive)
    _kill_repair_at_random(archive, two_locations, 2, capsys)


@pytest.mark.slow
def test_a_repair_killed_at_many_random_moments_leaves_no_copy_worse(
    archive: Path, two_locations: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _replicated(capsys, archive)
    _kill_repair_at_random(archive, two_locations, 8, capsys)


# ---------------------------------------------------------------------------------------------
# Restore


def test_restore_from_a_location_gives_a_valid_bag_and_refuses_what_it_must(
    archive: Path,
    tmp_path: Path,
    two_locations: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _replicated(capsys, archive)
    target = tmp_path / "restored"
    code, report, err = _cifa(
        capsys, "restore", WORK, "--to", str(target), "--from", "disk2", "--archive", str(archive)
    )
    assert code == 0, err
    assert report["from"] == "disk2" and report["ok"] is True and report["files"] > 0
    _assert_documented("## `cifa restore`", report)
    bagit.Bag(str(target)).validate()
    assert _digests(target) == _digests(archive / "bags" / WORK)

    # An existing folder that is not empty: bad usage, nothing written.
    code, _, err = _cifa(capsys, "restore", WORK, "--to", str(target), "--archive", str(archive))
    assert code == 2 and "not empty" in err

    # A copy that does not verify: exit 1, no half bag under the name, no debris beside it.
    _damage(_master(two_locations[1] / "bags" / WORK), 2000)
    elsewhere = tmp_path / "elsewhere"
    code, report, err = _cifa(
        capsys, "restore", WORK, "--to", str(elsewhere), "--from", "nas", "--archive", str(archive)
    )
    assert code == 1 and report["ok"] is False and "no copy verifies" in err
    assert not elsewhere.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".elsewhere")]
    # Without --from: the first copy that verifies.
    empty = tmp_path / "empty"
    empty.mkdir()
    code, report, _ = _cifa(capsys, "restore", WORK, "--to", str(empty), "--archive", str(archive))
    assert code == 0 and report["from"] == "primary"
    bagit.Bag(str(empty)).validate()
    code, _, err = _cifa(
        capsys, "restore", WORK, "--to", str(tmp_path / "x"), "--from", "tape",
        "--archive", str(archive),
    )  # fmt: skip
    assert code == 2 and "no copy named 'tape'" in err


# ---------------------------------------------------------------------------------------------
# S3 (a real SeaweedFS)


def test_an_object_deleted_in_s3_is_repaired_and_a_bag_restored_from_s3(
    archive: Path, tmp_path: Path, s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    location = s3_server.location(s3_server.create_bucket(), name="offsite", prefix="cifa/")
    store_archive = Archive(archive)
    assert replicate_archive(store_archive, [location]).ok
    store = open_store(location)
    key = next(o.key for o in store.list(f"bags/{WORK}/data/master/"))
    store.delete(key)
    assert store.stat(key) is None
    report = repair_work(store_archive, [WORK], [location])
    assert report.ok, report.problems
    assert [(r.location, r.path, str(r.was)) for r in report.repaired] == [
        ("offsite", key.removeprefix(f"bags/{WORK}/"), "copy_missing")
    ]
    assert store.stat(key) is not None
    copy = Ledger(archive / "ledger.sqlite").copy(WORK, "offsite")
    assert copy is not None and copy.state is CopyState.GOOD
    for secret in s3_env.values():
        if "SECRET" in secret:
            assert secret not in json.dumps(report.as_dict())
    restored = restore_work(store_archive, WORK, tmp_path / "from-s3", [location], source="offsite")
    assert restored.source == "offsite"
    bagit.Bag(str(tmp_path / "from-s3")).validate()
