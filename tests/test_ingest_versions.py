"""The ingest records each placed bag as the first version of its work (issue 18), in the OCFL
store ``ARCHIVE/objects/`` (cifa_ingest.versions), through ``preserve_work``, the path the CLI and
the flows take: a new bag at its placement, a bag placed before the archive kept versions at the
next run. Judged by ocfl-py's validator, which we did not write."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from pathlib import Path

import pytest

from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import Settings, load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.reports import ingest_report
from cifa_ingest.versions import StorageRoot, User, export, logical_state, versions
from cifa_ingest.versions.history import read_object
from tests.test_versions import assert_ocfl_valid

WORK_ID = "cifa-v-0001"


def _work(url: str) -> Work:
    return Work.model_validate(
        {
            "id": WORK_ID,
            "title": {"en": "Versions test", "zh": "版本测试"},
            "source": {"url": url},
            "permission": {"status": "granted", "granted_by": "Test"},
        }
    )


def _settings() -> Settings:
    """The default settings with a contact address: every version then names one (OCFL's
    user address, a mailto: URI)."""
    settings = load_settings()
    organisation = settings.organisation.model_copy(update={"contact_email": "ops@example.org"})
    return settings.model_copy(update={"organisation": organisation})


def _files(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_placed_bag_is_the_first_version_of_its_work_sharing_its_bytes(
    archive_dir: Path, film_server: LocalFileServer, tmp_path: Path
) -> None:
    archive, settings = Archive(archive_dir), _settings()
    report = preserve_work(
        _work(f"{film_server.base_url}/films/colour-bars.mkv"),
        archive,
        settings,
        allow_private_sources=True,
    )
    assert report.outcome is Outcome.PRESERVED, report.error
    # The run's report, its JSON and its page, name the work's version.
    assert report.version == 1 and report.as_dict()["version"] == 1
    page = ingest_report.render_html(ingest_report.build([report], archive))
    assert f"<span class='id'>{WORK_ID}</span> <span class='version'" in page
    assert ">v1</span>" in page
    bag = archive_dir / "bags" / WORK_ID
    [first] = versions(archive.objects_dir, WORK_ID)
    assert first.number == 1
    assert first.message == "ingestion: the work's bag as placed in the archive"
    assert first.user == User(settings.organisation.name, "mailto:ops@example.org")
    # Every file of the bag is in the version, and is the bag's own file: one inode, no copy.
    state = logical_state(archive.objects_dir, WORK_ID)
    assert sorted(state) == sorted(_files(bag))
    # (Identical files, such as the source's and the master's frame hashes, are one content
    # file: each is a link to one of the bag's copies.)
    obj, inventory = read_object(archive.objects_dir, WORK_ID)
    bag_inodes = {(bag / path).stat().st_ino for path in state}
    for path, digest in state.items():
        stored = obj.content_file(inventory.content_path(digest))
        assert stored.stat().st_ino in bag_inodes and stored.stat().st_nlink == 2, path
        assert stored.read_bytes() == (bag / path).read_bytes(), path
    assert_ocfl_valid(archive.objects_dir)
    # The version gives back the bag, byte for byte.
    exported = export(archive.objects_dir, WORK_ID, None, tmp_path / "exported")
    assert _files(exported) == _files(bag)
    assert not list(archive.staging_dir.iterdir())  # nothing left in staging


def test_an_archive_made_before_versions_gets_them_at_the_next_run(
    archive_dir: Path, film_server: LocalFileServer
) -> None:
    """A bag placed before the archive kept versions (objects/ removed, as an archive of the
    previous release has none) becomes version 1 of its work at the next run, dated by its
    placement, every digest verified; the bag itself is untouched."""
    archive, settings = Archive(archive_dir), _settings()
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    assert preserve_work(work, archive, settings, allow_private_sources=True).outcome == (
        Outcome.PRESERVED
    )
    shutil.rmtree(archive.objects_dir)
    bag = archive_dir / "bags" / WORK_ID
    before = _files(bag)
    record = Ledger(archive.ledger_path).bag(WORK_ID)
    assert record is not None

    report = preserve_work(work, archive, settings, allow_private_sources=True)
    assert report.outcome is Outcome.ALREADY_PRESERVED
    assert report.version == 1
    [first] = versions(archive.objects_dir, WORK_ID)
    assert (
        first.message == f"ingestion: the work's bag as placed in the archive on {record.placed_at}"
    )
    assert first.created == dt.datetime.fromisoformat(record.placed_at)
    assert _files(bag) == before
    assert_ocfl_valid(archive.objects_dir)
    # And once there, a later run leaves it as it is.
    assert preserve_work(work, archive, settings, allow_private_sources=True).outcome == (
        Outcome.ALREADY_PRESERVED
    )
    assert len(versions(archive.objects_dir, WORK_ID)) == 1


def test_a_later_bag_whose_versions_are_lost_is_not_made_a_false_version_1(
    preserved: tuple[Archive, Work], caplog: pytest.LogCaptureFixture
) -> None:
    """A bag that is version 2 whose object is gone is not recorded as version 1 (a false
    history, which replication would spread over the locations' true one): the run says to
    recover the versions, and the work stays preserved."""
    archive, work = preserved
    corrected = Work.model_validate(
        {**work.model_dump(mode="python"), "title": {"en": "Versions test", "zh": "版本測試"}}
    )
    assert preserve_work(corrected, archive, _settings()).outcome is Outcome.NEW_VERSION
    shutil.rmtree(archive.objects_dir / WORK_ID)

    with caplog.at_level(logging.WARNING):
        report = preserve_work(corrected, archive, _settings())

    assert report.outcome is Outcome.ALREADY_PRESERVED
    assert not (archive.objects_dir / WORK_ID).exists()
    assert "its bag is version 2 but the archive holds none of its versions" in caplog.text


def test_a_version_that_cannot_be_recorded_never_unpreserves_the_work(
    archive_dir: Path, film_server: LocalFileServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The store cannot be written (a file where objects/ should be): the work is preserved all
    the same, the failure is logged, and the next run records the version."""
    archive, settings = Archive(archive_dir), _settings()
    archive.ensure()
    archive.objects_dir.write_text("in the way", "utf-8")
    work = _work(f"{film_server.base_url}/films/colour-bars.mkv")
    with caplog.at_level(logging.WARNING):
        report = preserve_work(work, archive, settings, allow_private_sources=True)
    assert report.outcome is Outcome.PRESERVED, report.error
    assert report.version is None
    assert f"{WORK_ID}: its first version could not be recorded" in caplog.text
    assert (archive_dir / "bags" / WORK_ID).is_dir()

    archive.objects_dir.unlink()
    assert preserve_work(work, archive, settings, allow_private_sources=True).outcome == (
        Outcome.ALREADY_PRESERVED
    )
    assert [v.number for v in versions(StorageRoot(archive.objects_dir), WORK_ID)] == [1]
