"""The fixity audit checks every version of every work (issue 18): each work's OCFL object in
``ARCHIVE/objects/<id>/``, with its bag, every byte of every version read once, and each kind of
damage named with the object, the content path, every version it damages and its evidence.

The archives are made as the ingest makes them, without a film: a bag by bagit-python placed in
``bags/`` and registered in the ledger, its versions recorded by the versions store
(:func:`cifa_ingest.versions.add_version`, as the ingest and revision call it); one work goes
through the real ingest (``preserve_work``), for the bytes read once. tests/test_audit.py's
archives, made by the real ingest, have their objects audited too."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cifa_ingest.archive.audit_log import AuditLog
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import BagRecord, Ledger
from cifa_ingest.audit.fixity_audit import AuditReport, Problem, ProblemKind, audit_archive, table
from cifa_ingest.bag import fixity
from cifa_ingest.bag.package import payload_files
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.reports.audit_report import build, render_html
from cifa_ingest.versions import User, add_version, versions
from cifa_ingest.versions.history import read_object
from tests.test_versions import assert_ocfl_valid, descriptive, make_bag, rewrite

WORK = "cifa-0001"
ARCHIVIST = User("Li Wei", "mailto:li.wei@example.org")
MASTER = b"\x1a\x45\xdf\xa3" + os.urandom(400_000)


def _register(archive: Archive, work_id: str = WORK) -> None:
    """The bag at bags/<id> registered as the ingest registers it: its manifests' digests and
    each payload file's size and digests."""
    bag = archive.bag_path(work_id)
    digests = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in bag.glob("*manifest-*.txt")
    }
    oxum = next(
        line.split(":", 1)[1].strip()
        for line in (bag / "bag-info.txt").read_text("utf-8").splitlines()
        if line.startswith("Payload-Oxum")
    )
    record = BagRecord(
        work_id, f"bags/{work_id}", "2026-11-01T09:00:00+00:00", oxum, digests, [], "test"
    )
    Ledger(archive.ledger_path).register_bag(record, payload_files(bag))


def _add(archive: Archive, bag: Path, message: str, day: int, *, link: bool = False) -> None:
    add_version(
        archive.objects_dir, WORK, bag, message=message, user=ARCHIVIST,
        staging_dir=archive.staging_dir, created=dt.datetime(2026, 11, day, 9, tzinfo=dt.UTC),
        link=link,
    )  # fmt: skip


def _new_bag(folder: Path) -> Path:
    return make_bag(
        folder,
        {"master/film.mkv": MASTER, "access/film.mp4": os.urandom(100_000)},
        {"descriptive.xml": descriptive("Beijing Bastard"), "premis.xml": b"<premis/>\n"},
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of one work with three versions: v1 the bag as ingested (its content copied,
    not linked: its files can be damaged apart from the bag's), v2 a corrected title, v3 a file
    added to the payload; bags/<id> is v3, registered."""
    root = tmp_path_factory.mktemp("versions-audit") / "archive"
    archive = Archive(root)
    archive.ensure()
    bag = _new_bag(root / "work")
    _add(archive, bag, "ingestion", 1)
    rewrite(bag, metadata={"descriptive.xml": descriptive("Beijing Bastards")})
    _add(archive, bag, "title corrected", 2)
    rewrite(bag, payload={"original/notes.txt": b"the director's notes\n"})
    _add(archive, bag, "notes added", 3)
    os.rename(bag, archive.bag_path(WORK))
    _register(archive)
    return root


@pytest.fixture
def archive(pristine: Path, tmp_path: Path) -> Iterator[Archive]:
    """A copy of the archive for a test to damage (every file writable: an insider's damage)."""
    copy = tmp_path / "archive"
    shutil.copytree(pristine, copy)
    for path in copy.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield Archive(copy)


def _object(archive: Archive) -> Path:
    return archive.objects_dir / WORK


def _inventory(archive: Archive) -> Any:
    return read_object(archive.objects_dir, WORK)[1]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _problems(report: AuditReport) -> list[Problem]:
    return sorted(report.problems, key=lambda p: (p.kind, p.path or ""))


def test_a_multi_version_object_audits_clean_and_is_reported(archive: Archive) -> None:
    assert_ocfl_valid(archive.objects_dir)  # the fixture is an object ocfl-py finds valid
    report = audit_archive(archive)
    assert report.ok, report.problems
    [checked] = report.bags
    assert checked.object is not None and checked.object.versions == 3
    document = report.as_dict()
    assert document["objects"] == [
        {
            "bag": WORK,
            "object": f"objects/{WORK}",
            "versions": 3,
            "bytes_read": checked.object.bytes_read,
            "bytes_reused": checked.object.bytes_reused,
            "note": None,
        }
    ]
    # The fixture's content is copied, not linked: the object's bytes are read for it.
    content = sum(p.stat().st_size for p in _object(archive).glob("v*/content/**/*") if p.is_file())
    assert checked.object.bytes_read + checked.object.bytes_reused >= content
    [record] = AuditLog(archive.ledger_path).history(WORK)
    assert record.outcome == "intact" and record.bytes_read == checked.bytes_read
    assert "3 versions" in table(report)
    view = build(report, archive)
    assert view.as_dict()["bags"][0]["versions"] == 3  # type: ignore[index]
    page = render_html(view)
    assert "<td class='num versions'>3</td>" in page


def test_a_work_without_versions_is_no_problem_but_is_said(archive: Archive) -> None:
    shutil.rmtree(_object(archive))
    report = audit_archive(archive)
    assert report.ok
    [entry] = report.as_dict()["objects"]
    assert entry["versions"] is None and entry["object"] is None
    assert "no versions recorded yet" in entry["note"]
    assert "no versions yet" in render_html(build(report, archive))


def test_a_damaged_file_of_version_1_kept_to_version_3_damages_all_three(
    archive: Archive,
) -> None:
    inventory = _inventory(archive)
    digest = inventory.state(1)["data/master/film.mkv"]
    assert inventory.content_path(digest) == "v1/content/data/master/film.mkv"
    target = _object(archive) / "v1/content/data/master/film.mkv"
    _flip(target)
    report = audit_archive(archive)
    [problem] = _problems(report)
    assert problem.kind == ProblemKind.VERSION_CHECKSUM_MISMATCH
    assert (problem.bag, problem.object, problem.path) == (
        WORK, f"objects/{WORK}", "v1/content/data/master/film.mkv"
    )  # fmt: skip
    assert problem.versions == ["v1", "v2", "v3"]
    assert (problem.algorithm, problem.expected) == ("sha512", digest)
    assert problem.found == hashlib.sha512(target.read_bytes()).hexdigest()
    assert "data/master/film.mkv" in (problem.detail or "")
    # The report and the terminal say where, and which versions.
    assert f"in objects/{WORK} (versions: v1, v2, v3)" in table(report)
    page = render_html(build(report, archive))
    assert "versions: v1, v2, v3" in page and "version_checksum_mismatch" in page
    # Each check of the object is in the hash-chained audit log, with its evidence.
    [record] = AuditLog(archive.ledger_path).history(WORK)
    assert record.outcome == "damaged"
    assert record.problems[0]["versions"] == ["v1", "v2", "v3"]
    assert record.problems[0]["object"] == f"objects/{WORK}"
    assert AuditLog(archive.ledger_path).verify() == []


def test_a_damaged_file_of_version_2_alone_damages_version_2(archive: Archive) -> None:
    inventory = _inventory(archive)
    digest = inventory.state(2)["tagmanifest-sha256.txt"]
    assert inventory.content_path(digest) == "v2/content/tagmanifest-sha256.txt"
    assert inventory.state(3)["tagmanifest-sha256.txt"] != digest
    _flip(_object(archive) / "v2/content/tagmanifest-sha256.txt")
    [problem] = _problems(audit_archive(archive))
    assert problem.kind == "version_checksum_mismatch"
    assert (problem.path, problem.versions) == ("v2/content/tagmanifest-sha256.txt", ["v2"])
    assert problem.expected == digest


def test_a_version_problem_alone_asks_no_repair_of_the_bag(archive: Archive) -> None:
    """A damaged file of an earlier version is not the bag's: the audit's repair leaves the
    work alone (repair per version is not built), rather than re-hash a sound bag for nothing."""
    from cifa_ingest.audit import repairs

    _flip(_object(archive) / "v2/content/tagmanifest-sha256.txt")
    report = audit_archive(archive)
    assert [p.kind for p in _problems(report)] == ["version_checksum_mismatch"]
    assert repairs.affected(report) == []


def test_a_content_file_gone_is_named_with_its_versions(archive: Archive) -> None:
    digest = _inventory(archive).state(2)["metadata/descriptive.xml"]
    (_object(archive) / "v2/content/metadata/descriptive.xml").unlink()
    [problem] = _problems(audit_archive(archive))
    assert problem.kind == "version_missing_file"
    assert problem.path == "v2/content/metadata/descriptive.xml"
    assert problem.versions == ["v2", "v3"]  # v3 changed the payload, not the title
    assert (problem.algorithm, problem.expected, problem.found) == ("sha512", digest, None)


def test_a_stray_file_in_a_versions_content_is_named(archive: Archive) -> None:
    (_object(archive) / "v2/content/data").mkdir(parents=True)
    (_object(archive) / "v2/content/data/stowaway.bin").write_bytes(b"?")
    [problem] = _problems(audit_archive(archive))
    assert problem.kind == "version_unexpected_file"
    assert (problem.path, problem.versions) == ("v2/content/data/stowaway.bin", ["v2"])
    assert problem.object == f"objects/{WORK}"


def test_an_inventory_that_does_not_match_its_digest_file_is_named(archive: Archive) -> None:
    sidecar = _object(archive) / "inventory.json.sha512"
    actual = hashlib.sha512((_object(archive) / "inventory.json").read_bytes()).hexdigest()
    sidecar.write_text(f"{'0' * 128}  inventory.json\n", "ascii")
    [problem] = _problems(audit_archive(archive))
    assert problem.kind == "version_inventory_invalid"
    assert (problem.path, problem.versions) == ("inventory.json", [])
    assert (problem.algorithm, problem.expected, problem.found) == ("sha512", "0" * 128, actual)
    assert "E060" in (problem.detail or "")
    # What the auditors' guide says to do: a reader of the object (cifa history) runs the
    # recovery, which puts the newest version's copy back; the audit then finds it whole.
    assert len(versions(archive.objects_dir, WORK)) == 3
    assert audit_archive(archive).ok


def test_a_versions_inventory_that_does_not_match_is_named_and_the_rest_still_checked(
    archive: Archive,
) -> None:
    """v2's inventory damaged, and a content file of v1: both found (the content is checked
    against the root inventory, which is intact)."""
    inventory = _object(archive) / "v2/inventory.json"
    inventory.write_bytes(inventory.read_bytes().replace(b"Li Wei", b"Li Wie"))
    _flip(_object(archive) / "v1/content/data/access/film.mp4")
    problems = _problems(audit_archive(archive))
    assert [(p.kind, p.path, p.versions) for p in problems] == [
        ("version_checksum_mismatch", "v1/content/data/access/film.mp4", ["v1", "v2", "v3"]),
        ("version_inventory_invalid", "v2/inventory.json", ["v2"]),
    ]


def test_a_bag_that_is_not_the_head_version_is_named(archive: Archive, tmp_path: Path) -> None:
    """The store holds a v4 that bags/<id> is not (a revision killed between recording the
    version and putting its bag in place): the bag, intact and as registered, is v3."""
    bag = shutil.copytree(archive.bag_path(WORK), tmp_path / "v4")
    rewrite(bag, metadata={"descriptive.xml": descriptive("北京杂种")})
    _add(archive, bag, "Chinese title", 4)
    problems = _problems(audit_archive(archive))
    assert {p.kind for p in problems} == {ProblemKind.HEAD_MISMATCH}
    changed = {p.path for p in problems}
    assert "metadata/descriptive.xml" in changed and "tagmanifest-sha512.txt" in changed
    for problem in problems:
        assert problem.versions == ["v4"] and problem.object == f"objects/{WORK}"
        assert f"bags/{WORK} is v3, not the head v4" in (problem.detail or "")
        assert problem.algorithm == "sha512" and problem.expected != problem.found
    state = _inventory(archive).state(4)
    [title] = [p for p in problems if p.path == "metadata/descriptive.xml"]
    assert title.expected == state["metadata/descriptive.xml"]


def _linked(tmp_path: Path) -> Archive:
    """An archive of one work whose version 1 is the placed bag's files, as the ingest makes it."""
    archive = Archive(tmp_path / "archive")
    archive.ensure()
    bag = _new_bag(archive.bag_path(WORK))
    _add(archive, bag, "ingestion", 1, link=True)
    _register(archive)
    return archive


def test_a_file_changed_after_the_bags_check_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bag's check found the shared file intact; it is rewritten before the object is
    checked (its change time moves, whatever its size and modification time say): the object's
    check does not take the bag check's digests for it, reads it, and finds the damage."""
    from cifa_ingest.audit import fixity_audit

    archive = _linked(tmp_path)
    access = archive.bag_path(WORK) / "data/access/film.mp4"
    real = fixity_audit.bagcheck.validate

    def validate_then_damage(bag: Path, **kwargs: Any) -> Any:
        checked = real(bag, **kwargs)
        before = access.stat()
        access.chmod(0o644)
        _flip(access)
        os.utime(access, ns=(before.st_atime_ns, before.st_mtime_ns))
        return checked

    monkeypatch.setattr(fixity_audit.bagcheck, "validate", validate_then_damage)
    problems = _problems(audit_archive(archive))
    # (The bag, found intact before, is then no longer the head version either: said too.)
    assert [(p.kind, p.path) for p in problems] == [
        ("head_mismatch", "data/access/film.mp4"),
        ("version_checksum_mismatch", "v1/content/data/access/film.mp4"),
    ]
    actual = hashlib.sha512(access.read_bytes()).hexdigest()
    assert problems[0].found == problems[1].found == actual


def test_each_byte_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 1 recorded as the ingest records it (hard links to the placed bag's files): the
    audit reads every byte of the bag once, and none of the object's again."""
    archive = _linked(tmp_path)
    bag = archive.bag_path(WORK)
    files = [p for p in bag.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)

    hashed: list[int] = []  # every file the fixity engine reads, by inode
    for name in ("_hash_sequentially", "_hash_side_by_side"):
        real = getattr(fixity, name)

        def counting(path: Path, algorithms: list[str], real: Any = real) -> fixity.Digests:
            hashed.append(path.stat().st_ino)
            return real(path, algorithms)

        monkeypatch.setattr(fixity, name, counting)

    report = audit_archive(archive)
    assert report.ok, report.problems
    [checked] = report.bags
    assert len(hashed) == len(set(hashed)) == len(files)  # each file once, bag and object
    assert checked.bytes_read == size == report.as_dict()["bytes_read"]
    assert checked.object is not None and checked.object.versions == 1
    tag_manifests = sum(p.stat().st_size for p in bag.glob("tagmanifest-*.txt"))
    assert checked.object.bytes_reused == size - tag_manifests
    assert checked.object.bytes_read == tag_manifests  # no manifest lists them: read here

    # Damage to the shared file is damage to both, each named once, each read once.
    hashed.clear()
    access = bag / "data/access/film.mp4"
    access.chmod(0o644)
    _flip(access)
    problems = _problems(audit_archive(archive))
    assert [(p.kind, p.path, p.versions) for p in problems] == [
        ("checksum_mismatch", "data/access/film.mp4", None),
        ("version_checksum_mismatch", "v1/content/data/access/film.mp4", ["v1"]),
    ]
    assert "the same file as the bag's data/access/film.mp4" in (problems[1].detail or "")
    assert problems[1].found == hashlib.sha512(access.read_bytes()).hexdigest()
    assert len(hashed) == len(set(hashed)) == len(files)


def test_the_json_of_an_audit_keeps_its_keys_and_adds_the_versions(archive: Archive) -> None:
    _flip(_object(archive) / "v1/content/data/master/film.mkv")
    document = json.loads(json.dumps(audit_archive(archive).as_dict()))
    assert {
        "archive", "location", "check", "mode", "started", "finished", "checked", "intact",
        "problems", "not_reached", "repaired", "repair_refused", "bytes_read", "seconds", "ok",
    } < set(document)  # fmt: skip
    [problem] = document["problems"]
    assert problem["versions"] == ["v1", "v2", "v3"] and problem["object"] == f"objects/{WORK}"
    assert document["objects"][0]["versions"] == 3


def test_an_object_inventory_a_version_behind_is_named_and_the_newest_checked(
    archive: Archive,
) -> None:
    """A version add killed between its one rename and the root's inventory (the recovery, not
    run by the audit, would complete it): named, and v3's content still checked."""
    for name in ("inventory.json", "inventory.json.sha512"):
        shutil.copyfile(_object(archive) / "v2" / name, _object(archive) / name)
    (_object(archive) / "v3/content/data/original/notes.txt").write_bytes(b"forged notes\n")
    problems = _problems(audit_archive(archive))
    assert [(p.kind, p.path, p.versions) for p in problems] == [
        ("version_checksum_mismatch", "v3/content/data/original/notes.txt", ["v3"]),
        ("version_inventory_invalid", "inventory.json", ["v3"]),
    ]
    assert "interrupted" in (problems[1].detail or "") and "E064" in (problems[1].detail or "")


def test_a_version_folder_gone_is_named_with_its_files(archive: Archive) -> None:
    stored = [
        p.relative_to(_object(archive)).as_posix()
        for p in (_object(archive) / "v3").rglob("*")
        if p.is_file() and "content" in p.parts
    ]
    shutil.rmtree(_object(archive) / "v3")
    problems = _problems(audit_archive(archive))
    assert ("version_inventory_invalid", "v3/inventory.json", ["v3"]) in [
        (p.kind, p.path, p.versions) for p in problems
    ]
    assert sorted(str(p.path) for p in problems if p.kind == "version_missing_file") == sorted(
        stored
    )


def test_a_version_made_while_the_audit_reads_is_no_head_mismatch(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revision records v4 and puts its bag in place while the audit reads the object (after
    the bag's check, before the comparison): the bag is not compared with a head that is no
    longer the head, and the audit says so."""
    from cifa_ingest.audit import versions_audit

    real = versions_audit._Checker.content

    def content_then_a_revision(self: Any, *args: Any) -> None:
        real(self, *args)
        bag = shutil.copytree(archive.bag_path(WORK), tmp_path / "v4")
        rewrite(bag, metadata={"descriptive.xml": descriptive("北京杂种")})
        _add(archive, bag, "Chinese title", 4)
        os.rename(archive.bag_path(WORK), tmp_path / "v3-aside")
        os.rename(bag, archive.bag_path(WORK))

    monkeypatch.setattr(versions_audit._Checker, "content", content_then_a_revision)
    report = audit_archive(archive)
    assert report.ok, report.problems
    [entry] = report.as_dict()["objects"]
    assert entry["versions"] == 3 and "v4 was made while the audit ran" in entry["note"]


def test_a_work_ingested_for_real_is_audited_reading_each_byte_once(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    """Through preserve_work, as the CLI and the flows ingest: version 1 is hard links to the
    placed bag's files, and the audit reads every byte of the bag once, the object's none
    again."""
    from cifa_ingest.config import load_settings
    from cifa_ingest.preserve import Outcome, preserve_work
    from tests.test_ingest_versions import _work

    archive = Archive(archive_dir)
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    report = preserve_work(work, archive, load_settings(), allow_private_sources=True)
    assert report.outcome is Outcome.PRESERVED, report.error
    bag = archive.bag_path(work.id)
    size = sum(p.stat().st_size for p in bag.rglob("*") if p.is_file())
    audit = audit_archive(archive)
    assert audit.ok, audit.problems
    [checked] = audit.bags
    assert checked.object is not None and checked.object.versions == 1
    assert checked.bytes_read == size
    tag_manifests = sum(p.stat().st_size for p in bag.glob("tagmanifest-*.txt"))
    assert checked.object.bytes_read == tag_manifests


def test_a_damaged_stored_file_is_mended_from_the_bags_verified_bytes(archive: Archive) -> None:
    """v1's master (stored apart from the bag's) damaged: the audit's repair mends it from the
    bag, whose master has the same sha512 (read and verified first), in one rename; the work
    audits clean again, and the stored file is the bag's own again (one inode)."""
    from cifa_ingest.audit.repairs import repair_found
    from cifa_ingest.storage.repair import PRIMARY_VERSIONS

    stored = _object(archive) / "v1/content/data/master/film.mkv"
    _flip(stored)
    report = audit_archive(archive)
    assert [p.kind for p in _problems(report)] == ["version_checksum_mismatch"]

    repair_found(archive, report, [])  # no storage location: the bag is the verified source

    assert report.problems == []
    [done] = report.repaired
    assert (done["location"], done["path"], done["was"]) == (
        PRIMARY_VERSIONS,
        "v1/content/data/master/film.mkv",
        "version_checksum_mismatch",
    )
    assert done["source"] == f"bags/{WORK}/data/master/film.mkv"
    assert stored.read_bytes() == MASTER
    assert stored.stat().st_ino == (archive.bag_path(WORK) / "data/master/film.mkv").stat().st_ino
    assert audit_archive(archive).ok
    assert_ocfl_valid(archive.objects_dir)


def test_an_earlier_versions_own_file_is_not_mended_and_says_why(archive: Archive) -> None:
    _flip(_object(archive) / "v2/content/tagmanifest-sha256.txt")
    report = audit_archive(archive)
    from cifa_ingest.audit.repairs import repair_found

    repair_found(archive, report, [])
    [problem] = report.problems
    assert problem.kind == "version_checksum_mismatch" and report.repaired == []
    assert problem.detail is not None and "no verified copy of it" in problem.detail


def test_a_shared_file_damaged_is_repaired_in_the_bag_then_in_the_versions(
    tmp_path: Path,
) -> None:
    """The ingest's layout: version 1's files are the bag's (one inode). A bit flipped there is
    damage to both; the audit's repair replaces the bag's file from a storage location (a new
    file), then mends the version's from it: both sound, one inode again."""
    from cifa_ingest.audit.repairs import repair_found
    from cifa_ingest.storage.locations import FilesystemLocation
    from cifa_ingest.storage.replicate import replicate_archive

    archive = _linked(tmp_path)
    (tmp_path / "disk2").mkdir()
    location = FilesystemLocation(name="disk2", zone="z", path=str(tmp_path / "disk2"))
    assert replicate_archive(archive, [location]).ok
    master = archive.bag_path(WORK) / "data/access/film.mp4"
    stored = _object(archive) / "v1/content/data/access/film.mp4"
    good = master.read_bytes()
    assert master.stat().st_ino == stored.stat().st_ino
    master.chmod(0o644)
    _flip(master)
    report = audit_archive(archive)
    assert {p.kind for p in report.problems} >= {"checksum_mismatch"}

    repair_found(archive, report, [location])

    assert report.problems == [], report.problems
    assert {(d["location"], d["path"], d["source"]) for d in report.repaired} == {
        ("primary", "data/access/film.mp4", "disk2"),
        ("primary (versions)", "v1/content/data/access/film.mp4",
         f"bags/{WORK}/data/access/film.mp4"),
    }  # fmt: skip
    assert master.read_bytes() == good and stored.read_bytes() == good
    assert master.stat().st_ino == stored.stat().st_ino
    assert audit_archive(archive).ok
    assert_ocfl_valid(archive.objects_dir)
