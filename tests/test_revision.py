"""A preserved work whose catalogue entry changes gets a new version at the next run (issue 18),
through ``preserve_work``, the path ``cifa ingest``, ``cifa preserve`` and the flows take: a
corrected title costs kilobytes, a withdrawn permission is recorded and withholds the access
copies, nothing is ever overwritten, and a crash at any step leaves the work at one version or
the next. Judged by ocfl-py's validator and bagit-python, which we did not write."""

from __future__ import annotations

import html
import json
import os
import shutil
from pathlib import Path

import bagit
import pytest

from cifa_ingest import revision
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.audit.fixity_audit import audit_archive
from cifa_ingest.bag import package
from cifa_ingest.bag.revise import revise
from cifa_ingest.catalogue.model import Work
from cifa_ingest.metadata.versions_record import read_versions
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.reports import ingest_report
from cifa_ingest.versions import add_version, export, logical_state, versions
from tests.helpers import run_cli
from tests.test_ingest_versions import WORK_ID, _settings
from tests.test_versions import assert_ocfl_valid


def _changed(work: Work, **update: object) -> Work:
    return Work.model_validate({**work.model_dump(mode="python"), **update})


def _disk_use(folder: Path) -> int:
    """Bytes the tree holds on disk, each inode counted once (hard links share their bytes)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in folder.rglob("*"):
        info = path.lstat()
        if path.is_file() and (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def _contents(bag: Path) -> dict[str, bytes]:
    return {p.relative_to(bag).as_posix(): p.read_bytes() for p in bag.rglob("*") if p.is_file()}


def _payload_inodes(bag: Path) -> dict[str, int]:
    return {
        p.relative_to(bag).as_posix(): p.stat().st_ino
        for p in sorted((bag / "data").rglob("*"))
        if p.is_file()
    }


def test_a_corrected_title_is_a_new_version_of_kilobytes(
    preserved: tuple[Archive, Work], tmp_path: Path
) -> None:
    archive, work = preserved
    settings = _settings()
    bag = archive.bag_path(WORK_ID)
    ledger = Ledger(archive.ledger_path)
    ledger.record_copy(WORK_ID, "offsite", CopyState.GOOD, software="test")
    inodes, use = _payload_inodes(bag), _disk_use(archive.root)
    corrected = _changed(work, title={"en": "Versions test", "zh": "版本測試"})

    report = preserve_work(corrected, archive, settings)

    assert report.outcome is Outcome.NEW_VERSION, report.error
    assert report.version == 2
    assert report.change == 'metadata modification: descriptive title.zh: "版本测试" → "版本測試"'
    assert report.as_dict()["change"] == report.change
    assert report.access_withheld == "permission does not cover access (preservation)"
    # bags/<id> is the new version: the corrected title, its history, the same payload files.
    assert "版本測試" in (bag / "metadata" / "descriptive.xml").read_text("utf-8")
    assert [v.number for v in read_versions(bag)] == [1, 2]
    assert _payload_inodes(bag) == inodes
    # Kilobytes: the archive grew by less than 1 MB (its report files included).
    assert _disk_use(archive.root) - use < 1_000_000
    # The store holds both, each exports as a bag bagit-python validates, ocfl-py is content.
    [_first, second] = versions(archive.objects_dir, WORK_ID)
    assert second.message == f"metadata modification: {report.change.split(': ', 1)[1]}"
    assert second.user is not None and second.user.name == settings.organisation.name
    assert_ocfl_valid(archive.objects_dir)
    for number in (1, 2):
        exported = export(archive.objects_dir, WORK_ID, number, tmp_path / f"v{number}")
        bagit.Bag(str(exported)).validate()
    assert "版本测试" in (tmp_path / "v1" / "metadata" / "descriptive.xml").read_text("utf-8")
    # The ledger vouches for the new bag; the copy elsewhere holds version 1: pending again.
    record = ledger.bag(WORK_ID)
    assert record is not None
    assert record.manifest_digests == package.summarise_bag(bag).manifest_digests
    copy = ledger.copy(WORK_ID, "offsite")
    assert copy is not None and copy.state is CopyState.PENDING
    assert "version 2" in copy.detail
    # The fixity audit finds the archive as it should be.
    audit = audit_archive(archive)
    assert audit.ok, audit.problems
    assert not list(archive.staging_dir.iterdir())
    # The next run: nothing changed, nothing made.
    again = preserve_work(corrected, archive, settings)
    assert again.outcome is Outcome.ALREADY_PRESERVED and again.version == 2
    assert len(versions(archive.objects_dir, WORK_ID)) == 2


def test_a_withdrawn_permission_is_a_version_that_withholds_access_and_removes_nothing(
    preserved: tuple[Archive, Work], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, work = preserved

    def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        return run_cli(capsys, *args, "--archive", str(archive.root))

    bag = archive.bag_path(WORK_ID)
    work = _changed(
        work,
        permission={
            "status": "granted",
            "granted_by": "Test",
            "covers": ["preservation", "access"],
        },
    )
    report = preserve_work(work, archive, _settings())
    assert report.outcome is Outcome.NEW_VERSION and report.access_withheld is None
    inodes = _payload_inodes(bag)
    # Access permitted: the export meant for access gives the access copies and the record.
    code, _out, err = _cli(capsys, "export", WORK_ID, "--for-access", "--to", str(tmp_path / "a"))
    assert code == 0, err
    given = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*"))
    assert "descriptive.json" in given and "access" in given
    assert not [name for name in given if name.startswith(("original", "master", "permission"))]
    for name in given:
        if name.startswith("access/"):
            assert (tmp_path / "a" / name).read_bytes() == (bag / "data" / name).read_bytes()
    withdrawn = _changed(
        work,
        permission={"status": "withdrawn", "granted_by": "Test", "notes": "Asked on 2026-11-20"},
    )

    report = preserve_work(withdrawn, archive, _settings())

    assert report.outcome is Outcome.NEW_VERSION, report.error
    assert report.version == 3
    assert report.change is not None and report.change.startswith("permission change: ")
    assert "Asked on" not in report.change  # personal details named, never shown
    assert report.access_withheld == "permission withdrawn"
    # The report says so, on the work's row.
    page = ingest_report.render_html(ingest_report.build([report], archive))
    assert "access copies withheld: permission withdrawn" in page
    assert f"v3: {html.escape(report.change)}</p>" in page
    # Every export meant for access is refused, nothing written; the archive's own export of
    # the version still holds everything.
    code, _out, err = _cli(capsys, "export", WORK_ID, "--for-access", "--to", str(tmp_path / "b"))
    assert code == 1 and not (tmp_path / "b").exists()
    assert "access copies withheld (permission withdrawn, as v3 records)" in err
    code, _out, err = _cli(
        capsys, "export", WORK_ID, "--for-access", "--version", "2", "--to", str(tmp_path / "c")
    )
    assert code == 2 and "newest version only" in err and not (tmp_path / "c").exists()
    code, _out, err = _cli(capsys, "export", WORK_ID, "--to", str(tmp_path / "d"))
    assert code == 0, err
    assert sorted(_contents(tmp_path / "d")) == sorted(_contents(bag))
    premis = (bag / "metadata" / "premis.xml").read_text("utf-8")
    assert "withdrawn" in premis.lower()
    permission = json.loads((bag / "metadata" / "permission.json").read_text("utf-8"))
    assert permission["status"] == "withdrawn"
    # Nothing removed: every payload file is where it was, the same file.
    assert _payload_inodes(bag) == inodes
    assert any(path.startswith("data/access/") for path in inodes)
    head_state = logical_state(archive.objects_dir, WORK_ID)
    first_state = logical_state(archive.objects_dir, WORK_ID, 1)
    assert set(head_state) == set(first_state) | {"metadata/versions.json"}
    assert all(head_state[path] == first_state[path] for path in inodes)
    assert_ocfl_valid(archive.objects_dir)
    # A later run: still preserved, still withheld, no version more.
    again = preserve_work(withdrawn, archive, _settings())
    assert again.outcome is Outcome.ALREADY_PRESERVED
    assert again.access_withheld == "permission withdrawn" and again.version == 3


def test_a_run_killed_after_the_version_was_recorded_finishes_it(
    preserved: tuple[Archive, Work],
) -> None:
    """Killed between the store's rename and the exchange of bags/<id>: the store has version
    2, bags/<id> is version 1. The next run makes bags/<id> version 2 from the store, the
    ledger vouches for it, and no version 3 is made."""
    archive, work = preserved
    settings = _settings()
    corrected = _changed(work, title={"en": "Versions test, corrected"})
    staged = revise(
        archive.bag_path(WORK_ID),
        archive.staging_dir,
        corrected,
        None,
        settings.organisation,
        agent="test",
    )
    add_version(
        archive.objects_dir,
        WORK_ID,
        staged,
        message="metadata modification: test",
        user=revision.version_user(settings),
        staging_dir=archive.staging_dir,
        link=True,
    )
    assert read_versions(archive.bag_path(WORK_ID))[-1].number == 1

    report = preserve_work(corrected, archive, settings)

    assert report.outcome is Outcome.ALREADY_PRESERVED, report.error
    assert report.version == 2
    bag = archive.bag_path(WORK_ID)
    assert read_versions(bag)[-1].number == 2
    assert "corrected" in (bag / "metadata" / "descriptive.json").read_text("utf-8")
    ledger = Ledger(archive.ledger_path)
    record = ledger.bag(WORK_ID)
    assert record is not None
    assert record.manifest_digests == package.summarise_bag(bag).manifest_digests
    assert audit_archive(archive).ok
    assert not list(archive.staging_dir.iterdir())  # the revised bag left there is gone


def test_a_run_killed_between_the_two_renames_finds_the_bag_again(
    preserved: tuple[Archive, Work],
) -> None:
    """Where names cannot be exchanged in one step, the bag is renamed aside first; killed
    then, bags/<id> is absent, and the next run makes it again from the store's head."""
    archive, work = preserved
    settings = _settings()
    corrected = _changed(work, title={"en": "Versions test, corrected"})
    assert preserve_work(corrected, archive, settings).outcome is Outcome.NEW_VERSION
    bag = archive.bag_path(WORK_ID)
    expected = _contents(bag)
    os.rename(bag, archive.staging_dir / f"{WORK_ID}.replaced")

    report = preserve_work(corrected, archive, settings)

    assert report.outcome is Outcome.ALREADY_PRESERVED, report.error
    assert _contents(bag) == expected
    assert audit_archive(archive).ok
    assert not list(archive.staging_dir.iterdir())


def test_a_bag_whose_manifests_are_no_version_is_not_vouched_for(
    preserved: tuple[Archive, Work],
) -> None:
    """A bag in bags/ rewritten with its manifests (a forgery, an unrecorded change) is not
    taken for a version the store lost: the run fails, naming it, and nothing is recorded."""
    archive, work = preserved
    bag = archive.bag_path(WORK_ID)
    forged = bag / "tagmanifest-sha256.txt"
    forged.chmod(0o644)
    forged.write_text(forged.read_text("utf-8") + "", "utf-8")
    with forged.open("a", encoding="utf-8") as out:
        out.write("0" * 64 + "  extra.txt\n")
    report = preserve_work(_changed(work, title={"en": "Changed"}), archive, _settings())
    assert report.outcome is Outcome.FAILED
    assert report.error is not None
    assert "neither the ledger's nor those of any version" in report.error
    assert len(versions(archive.objects_dir, WORK_ID)) == 1


def test_the_exchange_of_two_folders_is_one_step(tmp_path: Path) -> None:
    from cifa_ingest.archive.layout import exchange

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one").write_text("1")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two").write_text("2")
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.fail("renameat2(RENAME_EXCHANGE) is not available on this system's file system")
    assert (tmp_path / "a" / "two").is_file() and (tmp_path / "b" / "one").is_file()
    shutil.rmtree(tmp_path / "a")


def test_a_new_version_from_a_new_address_makes_its_source_the_works_too(
    preserved: tuple[Archive, Work], tmp_path: Path
) -> None:
    """A re-capture from a new address: the ledger knows the new source as the work's (a second
    copy of it under another id is then refused), and the old one stays the work's."""
    from cifa_ingest.fetch.capture import captured_source_keys

    archive, _work = preserved
    ledger = Ledger(archive.ledger_path)
    record = ledger.bag(WORK_ID)
    assert record is not None
    [old_key] = record.source_keys
    bag = tmp_path / "bag"
    shutil.copytree(archive.bag_path(WORK_ID), bag)
    capture_file = bag / "metadata" / "capture.json"
    capture_file.chmod(0o644)
    capture = json.loads(capture_file.read_text("utf-8"))
    for source in capture["sources"]:
        source["url"] = source["address"] = "https://films.example.org/moved/colour-bars.mkv"
    capture_file.write_text(json.dumps(capture), "utf-8")
    [new_key] = captured_source_keys(bag)
    assert new_key != old_key

    revision.record_head(ledger, record, bag, 2)

    held = ledger.bag(WORK_ID)
    assert held is not None and held.source_keys == [old_key, new_key]
    assert ledger.work_for_source(new_key) == WORK_ID
    assert ledger.work_for_source(old_key) == WORK_ID


def test_a_new_version_reaches_every_location_before_its_copies_are_good_again(
    preserved: tuple[Archive, Work], tmp_path: Path
) -> None:
    """Its copies are pending from the moment the version is made; the next replication sends
    what changed, verifies the whole copy, and only then records it good."""
    from cifa_ingest.storage.locations import FilesystemLocation
    from cifa_ingest.storage.replicate import replicate_archive

    archive, work = preserved
    (tmp_path / "disk2").mkdir()
    disk2 = FilesystemLocation(name="disk2", zone="z", path=str(tmp_path / "disk2"))
    assert replicate_archive(archive, [disk2]).ok
    ledger = Ledger(archive.ledger_path)
    corrected = _changed(work, title={"en": "Versions test", "zh": "版本測試"})
    assert preserve_work(corrected, archive, _settings()).outcome is Outcome.NEW_VERSION
    copy = ledger.copy(WORK_ID, "disk2")
    assert copy is not None and copy.state is CopyState.PENDING

    report = replicate_archive(archive, [disk2])

    assert report.ok
    [done] = report.copies
    assert done.outcome == "copied" and 0 < done.files_copied < done.files_present
    copy = ledger.copy(WORK_ID, "disk2")
    assert copy is not None and copy.state is CopyState.GOOD
    there = tmp_path / "disk2" / "bags" / WORK_ID / "metadata" / "descriptive.xml"
    assert "版本測試" in there.read_text("utf-8")
