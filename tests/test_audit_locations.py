"""Audits of storage locations (issue 16), on real bags made by the pipeline and replicated by
``cifa replicate``: a cheap check (listing, sizes, the store's own checksums, retention) and a
deep one (every byte, sha256 and sha512), on a filesystem location and on a real S3 server
(SeaweedFS); an unreachable location is reported, never marked damaged."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cifa_ingest import cli
from cifa_ingest.archive.audit_log import AuditLog, EventOutcome, EventType
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.audit.copies import audit_location
from cifa_ingest.audit.fixity_audit import ProblemKind
from cifa_ingest.storage.locations import S3Location
from cifa_ingest.storage.replicate import replicate_archive
from cifa_ingest.storage.store import Store
from cifa_ingest.storage.stores import open_store
from tests.conftest import REPO, TEST_CONFIG
from tests.helpers import archive_of_films, fresh_copy
from tests.s3server import S3Server, s3_env, s3_server
from tests.test_docs import _assert_documented

__all__ = ["s3_env", "s3_server"]  # the fixtures, imported for pytest

WORKS = {"cifa-l-0001": "colour-bars.mkv", "cifa-l-0002": "three-days-day-1.mp4"}


@pytest.fixture(scope="module")
def pristine(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of two real bags, made once for this module."""
    title = {"en": "Location audit test", "zh": "副本审计测试"}
    return archive_of_films(tmp_path_factory.mktemp("audit-locations"), served_root, title, WORKS)


@pytest.fixture
def archive(pristine: Path, tmp_path: Path) -> Path:
    return fresh_copy(pristine, tmp_path)


@pytest.fixture
def disk(archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A filesystem location ``disk2`` in the settings, holding a good copy of every bag."""
    root = tmp_path / "disk2"
    root.mkdir()
    text = TEST_CONFIG.read_text("utf-8") + (
        f'\n[[storage.locations]]\nname = "disk2"\nkind = "filesystem"\npath = "{root}"\n'
        'zone = "zone-2"\naudit_every_days = 30\n'
    )
    config = tmp_path / "cifa.toml"
    config.write_text(text, "utf-8")
    monkeypatch.setenv("CIFA_CONFIG", str(config))
    assert cli.main(["replicate", "--archive", str(archive), "--quiet"]) == 0
    return root


def _audit(capsys: pytest.CaptureFixture[str], archive: Path, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(["audit", "--archive", str(archive), "--json", "--quiet", *args])
    return code, json.loads(capsys.readouterr().out)


def _kinds(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p["bag"], p["kind"]) for p in report["problems"]}


def _states(archive: Path, location: str) -> dict[str, CopyState]:
    return {c.work_id: c.state for c in Ledger(archive / "ledger.sqlite").copies(location=location)}


def _master(root: Path, work: str) -> Path:
    return next((root / "bags" / work / "data" / "master").iterdir())


def _flip_a_byte_keeping_size_and_mtime(path: Path) -> None:
    before = path.stat()
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(before.st_mode & 0o777)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert path.stat().st_mtime_ns == before.st_mtime_ns


# ---------------------------------------------------------------------------------------------
# A filesystem location


def test_a_clean_location_passes_both_checks_and_the_deep_one_renews_verified_at(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {c.work_id: c.verified_at for c in Ledger(archive / "ledger.sqlite").copies()}
    code, cheap = _audit(capsys, archive, "--location", "disk2")
    assert code == 0, cheap
    assert (cheap["location"], cheap["check"], cheap["repaired"]) == ("disk2", "cheap", [])
    assert cheap["checked"] == cheap["intact"] == 2 and cheap["bytes_read"] == 0
    after_cheap = {c.work_id: c.verified_at for c in Ledger(archive / "ledger.sqlite").copies()}
    assert after_cheap == before  # a cheap check verified no byte: nothing recorded
    time.sleep(1.1)  # verified_at is to the second
    code, deep = _audit(capsys, archive, "--location", "disk2", "--deep")
    assert code == 0, deep
    assert deep["check"] == "deep" and deep["checked"] == 2 and deep["bytes_read"] > 0
    for copy in Ledger(archive / "ledger.sqlite").copies():
        assert copy.state is CopyState.GOOD
        assert copy.verified_at and copy.verified_at > (before[copy.work_id] or "")
    # The location's own reports, beside the primary's latest page, which stays the primary's.
    reports = archive / "reports"
    assert (reports / "audit-disk2-latest.html").is_file()
    assert not (reports / "audit-latest.html").exists()
    assert "location <span id='location'>disk2</span>" in (
        reports / "audit-disk2-latest.html"
    ).read_text("utf-8")


def test_a_flipped_byte_with_size_and_mtime_kept_cheap_cannot_see_it_the_deep_check_does(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = sorted(WORKS)[0]
    damaged = _master(disk, work)
    _flip_a_byte_keeping_size_and_mtime(damaged)
    code, cheap = _audit(capsys, archive, "--location", "disk2")
    assert code == 0 and cheap["problems"] == []  # a disk keeps no checksum: no byte was read
    assert _states(archive, "disk2")[work] is CopyState.GOOD

    code, deep = _audit(capsys, archive, "--location", "disk2", "--deep", "--no-repair")
    assert code == 1 and deep["repaired"] == []
    [problem] = deep["problems"]
    assert (problem["bag"], problem["kind"]) == (work, "copy_damaged")
    assert problem["path"] == damaged.relative_to(disk / "bags" / work).as_posix()
    assert problem["algorithm"] == "sha256" and problem["expected"] != problem["found"]
    assert _states(archive, "disk2") == {work: CopyState.DAMAGED, sorted(WORKS)[1]: CopyState.GOOD}
    copy = Ledger(archive / "ledger.sqlite").copy(work, "disk2")
    assert copy is not None and "copy_damaged" in copy.detail
    # The deep check is a fixity check of that copy in the chain of preservation events.
    [event] = [e for e in AuditLog(archive / "ledger.sqlite").events(work) if e.location == "disk2"
               and e.event_type is EventType.FIXITY_CHECK]  # fmt: skip
    assert event.outcome is EventOutcome.FAILURE and event.detail["damaged"] == [problem["path"]]
    assert AuditLog(archive / "ledger.sqlite").verify() == []
    # The primary is not what was damaged: its own audit is clean.
    assert _audit(capsys, archive)[0] == 0
    # A cheap check cannot clear what a deep one found: the problem remains.
    code, again = _audit(capsys, archive, "--location", "disk2", "--no-repair")
    assert code == 1 and _kinds(again) == {(work, "copy_damaged")}
    # In words, for people.
    capsys.readouterr()
    assert cli.main(["audit", "--archive", str(archive), "--quiet", "--location", "disk2",
                     "--no-repair"]) == 1  # fmt: skip
    out = capsys.readouterr().out
    assert f"{work}: copy_damaged" in out and "disk2 (cheap check)" in out


def test_a_file_deleted_from_a_copy_is_copy_missing_to_the_cheap_check(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = sorted(WORKS)[1]
    gone = disk / "bags" / work / "bag-info.txt"
    gone.unlink()
    code, report = _audit(capsys, archive, "--location", "disk2", "--no-repair")
    assert code == 1
    [problem] = report["problems"]
    assert (problem["bag"], problem["kind"], problem["path"]) == (
        work,
        "copy_missing",
        "bag-info.txt",
    )
    assert _states(archive, "disk2")[work] is CopyState.MISSING


def test_an_absent_location_is_unreachable_and_nothing_is_marked(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk.rename(disk.with_name("disk2-elsewhere"))  # a disk not mounted: no mount point at all
    for deep in ((), ("--deep",)):
        code, report = _audit(capsys, archive, "--location", "disk2", *deep)
        assert code == 1
        [problem] = report["problems"]
        assert (problem["bag"], problem["kind"]) == ("disk2", "location_unreachable")
        assert "does not exist" in problem["detail"]
        assert report["checked"] == 0 and report["not_reached"] == sorted(WORKS)
        assert set(_states(archive, "disk2").values()) == {CopyState.GOOD}
    assert not disk.exists()  # never created


def test_an_unknown_location_and_bad_combinations_are_usage_errors(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cifa_ingest.cli", "audit", "--archive", str(archive),
         "--location", "offsite"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 2
    assert "no location named 'offsite'" in result.stderr and "disk2" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for args in (["--deep"], ["--location", "disk2", "--max-age", "30"]):
        capsys.readouterr()
        assert cli.main(["audit", "--archive", str(archive), "--quiet", *args]) == 2
        assert "Traceback" not in capsys.readouterr().err


def test_a_rolling_deep_audit_takes_the_copies_least_recently_verified_within_its_budget(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first = _audit(capsys, archive, "--location", "disk2", "--deep", "--budget", "1KB")
    assert code == 0 and first["checked"] == 1 and len(first["not_reached"]) == 1
    assert first["mode"] == "full"
    code, second = _audit(
        capsys, archive, "--location", "disk2", "--deep", "--max-age", "1", "--budget", "1KB"
    )
    assert code == 0 and second["mode"] == "rolling (max age 1 days)"
    # Both copies were verified when replicated, minutes ago: nothing is due.
    assert second["checked"] == 0 and second["not_reached"] == []


# ---------------------------------------------------------------------------------------------
# An S3 location (a real SeaweedFS)


def _s3_copies(archive: Path, location: S3Location) -> None:
    report = replicate_archive(Archive(archive), [location])
    assert report.ok, [c.detail for c in report.problems]


def _key(location: S3Location, work: str, path: str) -> str:
    return f"{location.prefix}bags/{work}/{path}"


def test_s3_an_object_deleted_or_overwritten_is_found(
    archive: Path, s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    bucket = s3_server.create_bucket(versioning=True)
    location = s3_server.location(bucket, name="offsite", prefix="cifa/")
    _s3_copies(archive, location)
    report = audit_location(Archive(archive), location)
    assert report.ok and len(report.bags) == 2
    # Each object whose stored SHA-256 was confirmed is remembered with its listing's
    # fingerprint: unchanged, it is not looked up again; rewritten, it is.
    cache = json.loads((archive / ".cache" / "location-offsite.json").read_text("utf-8"))
    assert (cache["bucket"], cache["prefix"]) == (bucket, "cifa/")
    assert len(cache["objects"]) == sum(
        1 for prefix in ("bags/", "versions/") for _ in open_store(location).list(prefix)
    )
    assert audit_location(Archive(archive), location).ok

    gone_work, changed_work = sorted(WORKS)
    client = s3_server.client()
    client.delete_object(Bucket=bucket, Key=_key(location, gone_work, "bagit.txt"))
    # Overwritten with other bytes of the same size: a new version, with its own checksum.
    changed = "data/" + next(
        o.key.split("/data/", 1)[1]
        for o in open_store(location).list(f"bags/{changed_work}/data/master/")
    )
    key = _key(location, changed_work, changed)
    size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    client.put_object(Bucket=bucket, Key=key, Body=b"\0" * size, ChecksumAlgorithm="SHA256")

    cheap = audit_location(Archive(archive), location)
    found = {(p.bag, p.kind, p.path, p.algorithm) for p in cheap.problems}
    assert found == {
        (gone_work, ProblemKind.COPY_MISSING, "bagit.txt", None),
        (changed_work, ProblemKind.COPY_DAMAGED, changed, "sha256"),  # the store's checksum
    }
    assert _states(archive, "offsite") == {
        gone_work: CopyState.MISSING, changed_work: CopyState.DAMAGED
    }  # fmt: skip
    deep = audit_location(Archive(archive), location, deep=True)
    by_kind = {(p.bag, p.kind, p.path) for p in deep.problems}
    assert by_kind == {
        (gone_work, ProblemKind.COPY_MISSING, "bagit.txt"),
        (changed_work, ProblemKind.COPY_DAMAGED, changed),
    }
    [damaged] = [p for p in deep.problems if p.kind is ProblemKind.COPY_DAMAGED]
    assert damaged.algorithm == "sha256" and damaged.found != damaged.expected  # by hashing
    assert not any(
        s3_env["AWS_SECRET_ACCESS_KEY"] in json.dumps(r.as_dict()) for r in (cheap, deep)
    )


class _StopsTheServer:
    """The location's real store; the server is stopped after the first object is read."""

    def __init__(self, store: Store, server: S3Server) -> None:
        self.store, self.server, self.name = store, server, store.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[Any]:
        with self.store.open(key) as reader:
            yield reader
        self.server.stop()


def test_s3_a_server_stopped_during_a_deep_audit_is_unreachable_and_nothing_is_damaged(
    archive: Path, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    with S3Server.start(tmp_path / "s3") as server:
        location = server.location(server.create_bucket(), name="offsite")
        _s3_copies(archive, location)
        report = audit_location(
            Archive(archive), location, deep=True,
            stores=lambda loc: _StopsTheServer(open_store(loc), server),  # type: ignore[arg-type,return-value]
        )  # fmt: skip
        assert not server.running
    assert [p.kind for p in report.problems] == [ProblemKind.LOCATION_UNREACHABLE]
    assert report.not_reached == sorted(WORKS) and report.bags == []
    assert set(_states(archive, "offsite").values()) == {CopyState.GOOD}
    cheap = audit_location(Archive(archive), location)  # and before it begins, too
    assert [p.kind for p in cheap.problems] == [ProblemKind.LOCATION_UNREACHABLE]
    assert set(_states(archive, "offsite").values()) == {CopyState.GOOD}


def test_s3_an_object_without_the_retention_the_settings_ask_for_is_reported(
    archive: Path, s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    bucket = s3_server.create_bucket(object_lock=True)
    location = s3_server.location(bucket, name="vault", object_lock_days=1)
    _s3_copies(archive, location)
    assert audit_location(Archive(archive), location).ok
    work = sorted(WORKS)[0]
    key = _key(location, work, "bag-info.txt")
    client = s3_server.client()
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256")  # no lock
    report = audit_location(Archive(archive), location)
    assert [(p.bag, p.kind, p.path) for p in report.problems] == [
        (work, ProblemKind.COPY_UNLOCKED, "bag-info.txt")
    ]
    assert not report.ok
    assert set(_states(archive, "vault").values()) == {CopyState.GOOD}  # the bytes are right


# ---------------------------------------------------------------------------------------------
# The Prefect flow of a location's deployment


def test_the_flow_of_a_locations_deployment_audits_its_copies_as_tasks(
    archive: Path, disk: Path
) -> None:
    """``fixity-audit/location-disk2`` runs the flow with these parameters: each copy an
    ``audit-copy`` task, the run Failed when a copy is damaged, and Failed (nothing marked) when
    the location does not answer."""
    from cifa_ingest.pipelines.flows import fixity_audit

    parameters = {"location": "disk2", "deep": True, "max_age_days": 30.0}
    state = fixity_audit(str(archive), **parameters, return_state=True)
    assert state.is_completed(), state.message  # nothing due: both verified when copied
    state = fixity_audit(str(archive), location="disk2", deep=True, return_state=True)
    assert state.is_completed(), state.message
    work = sorted(WORKS)[0]
    _flip_a_byte_keeping_size_and_mtime(_master(disk, work))
    state = fixity_audit(str(archive), location="disk2", deep=True, repair=False,
                         return_state=True)  # fmt: skip
    assert state.is_failed() and "copy_damaged" in (state.message or "")
    assert _states(archive, "disk2")[work] is CopyState.DAMAGED
    assert (archive / "reports" / "audit-disk2-latest.html").is_file()
    disk.rename(disk.with_name("elsewhere"))
    state = fixity_audit(str(archive), location="disk2", deep=True, return_state=True)
    assert state.is_failed() and "location_unreachable" in (state.message or "")
    assert _states(archive, "disk2")[work] is CopyState.DAMAGED  # as it was
    state = fixity_audit(str(archive), location="nowhere", return_state=True)
    assert state.is_failed() and "no storage location named 'nowhere'" in (state.message or "")


class _CountingStore:
    """The location's real store, counting the objects looked up one by one (HEAD)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.name = store.name
        self.looked_up: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def stat(self, key: str) -> Any:
        self.looked_up.append(key)
        return self._store.stat(key)


def test_s3_the_first_cheap_audit_after_replication_needs_only_the_listing(
    archive: Path, s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    """Replication confirmed every object it wrote (the server checked the ledger's SHA-256, a
    HEAD read back what it kept): it remembers them, so the cheap audit right after it looks
    none up; an object rewritten since, even with bytes of the same size, is looked up and
    found."""
    bucket = s3_server.create_bucket(versioning=True)
    location = s3_server.location(bucket, name="offsite", prefix="cifa/")
    _s3_copies(archive, location)
    objects = sorted(
        o.key for prefix in ("bags/", "versions/") for o in open_store(location).list(prefix)
    )
    cache = json.loads((archive / ".cache" / "location-offsite.json").read_text("utf-8"))
    assert sorted(cache["objects"]) == objects  # every object written, remembered

    counted: list[_CountingStore] = []

    def counting(where: Any) -> Store:
        counted.append(_CountingStore(open_store(where)))
        return counted[-1]  # type: ignore[return-value]

    report = audit_location(Archive(archive), location, stores=counting)
    assert report.ok and len(report.bags) == 2
    assert counted[-1].looked_up == []  # the listing's fingerprints are the writes' own

    work = sorted(WORKS)[0]
    key = _key(location, work, "bag-info.txt")
    client = s3_server.client()
    size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    client.put_object(Bucket=bucket, Key=key, Body=b"x" * size, ChecksumAlgorithm="SHA256")
    report = audit_location(Archive(archive), location, stores=counting)
    assert counted[-1].looked_up == [f"bags/{work}/bag-info.txt"]
    assert {(p.bag, p.kind, p.path) for p in report.problems} == {
        (work, ProblemKind.COPY_DAMAGED, "bag-info.txt")
    }


# ---------------------------------------------------------------------------------------------
# What an audit finds, repaired (unless --no-repair)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_deep_audit_repairs_a_damaged_copy_from_a_verified_one_unless_told_only_to_look(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = sorted(WORKS)[0]
    damaged = _master(disk, work)
    path = damaged.relative_to(disk / "bags" / work).as_posix()
    intact = _master(archive, work).read_bytes()
    _flip_a_byte_keeping_size_and_mtime(damaged)
    rotten = damaged.read_bytes()

    # Only looking: the problem is named, nothing is changed.
    code, looked = _audit(capsys, archive, "--location", "disk2", "--deep", "--no-repair")
    assert code == 1 and looked["repaired"] == [] and looked["repair_refused"] is None
    assert _kinds(looked) == {(work, "copy_damaged")}
    assert damaged.read_bytes() == rotten
    assert _states(archive, "disk2")[work] is CopyState.DAMAGED

    # By default: repaired from the primary, which verifies; the copy good again, bytes restored.
    code, report = _audit(capsys, archive, "--location", "disk2", "--deep")
    assert code == 0, report
    assert report["ok"] is True and report["problems"] == []
    assert report["repaired"] == [
        {"id": work, "location": "disk2", "path": path, "source": "primary",
         "sha256": hashlib.sha256(intact).hexdigest(), "was": "copy_damaged"}
    ]  # fmt: skip
    _assert_documented("## `cifa audit`", report)  # docs/reference/json.md
    assert damaged.read_bytes() == intact
    assert _states(archive, "disk2") == dict.fromkeys(WORKS, CopyState.GOOD)
    events = [(e.event_type, e.location, e.outcome)
              for e in AuditLog(archive / "ledger.sqlite").events(work)]  # fmt: skip
    assert (EventType.REPLICATION, "disk2", EventOutcome.SUCCESS) in events
    assert (EventType.RECOVERY, "disk2", EventOutcome.SUCCESS) in events
    assert AuditLog(archive / "ledger.sqlite").verify() == []
    page = (archive / "reports" / "audit-disk2-latest.html").read_text("utf-8")
    assert "id='repaired'" in page and path in page and "1 file repaired" in page
    # Nothing left to find.
    assert _audit(capsys, archive, "--location", "disk2", "--deep")[1]["repaired"] == []
    # In words, for people.
    _flip_a_byte_keeping_size_and_mtime(damaged)
    capsys.readouterr()
    assert cli.main(["audit", "--archive", str(archive), "--quiet", "--location", "disk2",
                     "--deep"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert f"{work} @ disk2: {path} (copy_damaged) repaired from primary" in out
    assert "1 file repaired" in out.splitlines()[-1]


def test_a_file_damaged_in_every_copy_is_not_overwritten_and_the_problem_stays(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = sorted(WORKS)[0]
    copies = [_master(archive, work), _master(disk, work)]
    for number, master in enumerate(copies):
        state = master.stat()
        master.chmod(0o644)
        data = bytearray(master.read_bytes())
        data[1000 + 97 * number] ^= 1 << number
        master.write_bytes(bytes(data))
        master.chmod(state.st_mode & 0o777)
    before = [_sha256(master) for master in copies]
    code, report = _audit(capsys, archive, "--location", "disk2", "--deep")
    assert code == 1 and report["repaired"] == []
    [problem] = report["problems"]
    assert (problem["bag"], problem["kind"]) == (work, "copy_damaged")
    assert "no_good_copy" in problem["detail"] and "nothing was overwritten" in problem["detail"]
    assert [_sha256(master) for master in copies] == before
    assert _states(archive, "disk2")[work] is CopyState.DAMAGED
    # The primary's own audit: the same, from its side.
    code, primary = _audit(capsys, archive)
    assert code == 1 and primary["repaired"] == []
    assert {(p["bag"], p["kind"]) for p in primary["problems"]} == {(work, "checksum_mismatch")}
    assert [_sha256(master) for master in copies] == before
    # The page says why, beside the evidence: repair found no good copy and overwrote nothing.
    page = (archive / "reports" / "audit-latest.html").read_text("utf-8")
    assert "<span class='detail repair'>not repaired: no_good_copy" in page
    assert "nothing was overwritten" in page


def test_a_damaged_primary_is_repaired_by_its_audit_from_the_replica(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = sorted(WORKS)[1]
    master = _master(archive, work)
    path = master.relative_to(archive / "bags" / work).as_posix()
    intact = master.read_bytes()
    _flip_a_byte_keeping_size_and_mtime(master)
    code, report = _audit(capsys, archive)
    assert code == 0, report
    assert report["problems"] == [] and report["checked"] == report["intact"] == 2
    assert [(r["id"], r["location"], r["path"], r["source"], r["was"]) for r in report["repaired"]
            ] == [(work, "primary", path, "disk2", "copy_damaged")]  # fmt: skip
    assert master.read_bytes() == intact and master.stat().st_mode & 0o777 == 0o444
    # Checked again once repaired: the audit log's last word on the bag is that it is intact.
    history = AuditLog(archive / "ledger.sqlite").history(work)
    assert [c.outcome for c in history[-2:]] == ["damaged", "intact"]
    page = (archive / "reports" / "audit-latest.html").read_text("utf-8")
    assert "id='repaired'" in page and "intact (repaired)" in page
    assert _audit(capsys, archive)[1]["repaired"] == []


def test_a_ledger_whose_chain_is_broken_stops_the_audits_repair(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _audit(capsys, archive)[0] == 0  # fixity records to forge
    with contextlib.closing(sqlite3.connect(archive / "ledger.sqlite")) as conn:
        conn.execute("UPDATE fixity_checks SET outcome = 'damaged' WHERE id = 1")
        conn.commit()
    work = sorted(WORKS)[0]
    damaged = _master(disk, work)
    _flip_a_byte_keeping_size_and_mtime(damaged)
    rotten = damaged.read_bytes()
    capsys.readouterr()
    code = cli.main(["audit", "--archive", str(archive), "--json", "--quiet", "--location",
                     "disk2", "--deep"])  # fmt: skip
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 1 and report["repaired"] == []
    assert "hash chain is broken" in report["repair_refused"]
    assert "cifa: repair refused:" in err and "Traceback" not in err
    assert _kinds(report) == {(work, "copy_damaged")}
    assert damaged.read_bytes() == rotten


def test_the_flow_repairs_what_its_audit_finds_and_fails_when_told_only_to_look(
    archive: Path, disk: Path
) -> None:
    from cifa_ingest.pipelines.flows import fixity_audit

    work = sorted(WORKS)[0]
    gone = disk / "bags" / work / "bag-info.txt"
    gone.unlink()
    state = fixity_audit(str(archive), location="disk2", deep=True, repair=False,
                         return_state=True)  # fmt: skip
    assert state.is_failed() and "copy_missing" in (state.message or "")
    assert not gone.exists()
    state = fixity_audit(str(archive), location="disk2", deep=True, return_state=True)
    assert state.is_completed(), state.message
    assert "1 file repaired" in (state.message or "")
    report = state.result()
    assert [(r["id"], r["path"], r["was"]) for r in report.repaired] == [
        (work, "bag-info.txt", "copy_missing")
    ]
    assert gone.read_bytes() == (archive / "bags" / work / "bag-info.txt").read_bytes()
    assert _states(archive, "disk2") == dict.fromkeys(WORKS, CopyState.GOOD)


def test_s3_an_object_deleted_is_put_back_after_a_cheap_audit(
    archive: Path, s3_server: S3Server, s3_env: dict[str, str]
) -> None:
    from cifa_ingest.audit.repairs import repair_found

    bucket = s3_server.create_bucket()
    location = s3_server.location(bucket, name="offsite", prefix="cifa/")
    _s3_copies(archive, location)
    work = sorted(WORKS)[1]
    client = s3_server.client()
    client.delete_object(Bucket=bucket, Key=_key(location, work, "bagit.txt"))
    report = audit_location(Archive(archive), location)
    assert [(p.bag, p.kind, p.path) for p in report.problems] == [
        (work, ProblemKind.COPY_MISSING, "bagit.txt")
    ]
    repair_found(Archive(archive), report, [location])
    assert report.ok, report.problems
    assert [(r["id"], r["location"], r["path"], r["was"]) for r in report.repaired] == [
        (work, "offsite", "bagit.txt", "copy_missing")
    ]
    body = client.get_object(Bucket=bucket, Key=_key(location, work, "bagit.txt"))["Body"].read()
    assert body == (archive / "bags" / work / "bagit.txt").read_bytes()
    assert _states(archive, "offsite") == dict.fromkeys(WORKS, CopyState.GOOD)
    assert audit_location(Archive(archive), location).ok
