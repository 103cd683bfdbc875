"""Deaccession (issue 18): a work's content removed from the archive and from every storage
location, on someone's word and for a reason, leaving a tombstone that records what was removed;
a location under Object Lock keeps what it must and is named. Judged by bagit-python, ocfl-py,
the official PREMIS schema and a real S3 server (SeaweedFS) with Object Lock."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bagit
import pytest

from cifa_ingest import deaccession
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.audit.fixity_audit import audit_archive
from cifa_ingest.bag import package
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import Settings
from cifa_ingest.metadata.versions_record import VersionChange, read_versions
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.storage.locations import FilesystemLocation, StorageSettings
from cifa_ingest.storage.replicate import replicate_archive
from cifa_ingest.storage.stores import open_store
from cifa_ingest.versions import add_version, versions
from tests.helpers import assert_premis_valid, run_cli
from tests.s3server import S3Server, s3_env, s3_server
from tests.test_docs import _assert_documented
from tests.test_ingest_versions import WORK_ID, _settings
from tests.test_versions import assert_ocfl_valid

__all__ = ["s3_env", "s3_server"]  # the fixtures, imported for pytest

REASON = "The director asked for the film's removal (letter of 2026-11-20)"


def _with_locations(*locations: object) -> Settings:
    settings = _settings()
    listed = [location.model_dump() for location in locations]  # type: ignore[attr-defined]
    storage = StorageSettings.model_validate({"locations": listed})
    return settings.model_copy(update={"storage": storage})


def _digests(folder: Path) -> set[str]:
    return {
        hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def test_a_deaccession_removes_every_version_everywhere_but_what_object_lock_holds(
    preserved: tuple[Archive, Work],
    tmp_path: Path,
    s3_server: S3Server,
    s3_env: dict[str, str],
) -> None:
    archive, work = preserved
    (tmp_path / "offsite").mkdir()
    offsite = FilesystemLocation(name="offsite", zone="z", path=str(tmp_path / "offsite"))
    vault = s3_server.location(
        s3_server.create_bucket(object_lock=True), name="vault", object_lock_days=1
    )
    settings = _with_locations(offsite, vault)
    # A second version first: the deaccession removes the content of every version.
    corrected = Work.model_validate(
        {**work.model_dump(mode="python"), "title": {"en": "Versions test, corrected"}}
    )
    assert preserve_work(corrected, archive, settings).outcome is Outcome.NEW_VERSION
    assert replicate_archive(archive, [offsite, vault]).ok
    bag = archive.bag_path(WORK_ID)
    payload = {p.relative_to(bag).as_posix() for p in (bag / "data").rglob("*") if p.is_file()}
    film = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (bag / "data").rglob("*.mkv")}
    assert film and film <= _digests(archive.root)
    # Its bag and, beside it, its versions (version 1's own records among them).
    at_offsite = sum(
        len(list(open_store(offsite).list(prefix)))
        for prefix in (f"bags/{WORK_ID}/", f"versions/{WORK_ID}/")
    )
    assert (
        open_store(offsite).stat(f"versions/{WORK_ID}/v1/content/metadata/descriptive.json")
        is not None
    )

    report = deaccession.deaccession(archive, WORK_ID, settings, reason=REASON, agent="Li Wei")

    # The archive: no byte of the film anywhere; the tombstone, whole and valid.
    assert not film & _digests(archive.root)
    assert report.files_removed >= len(payload) and report.bytes_removed > 0
    assert [p.relative_to(bag).as_posix() for p in (bag / "data").rglob("*")] == [
        "data/DEACCESSIONED.txt"
    ]
    bagit.Bag(str(bag)).validate()
    assert_premis_valid(bag)
    premis = (bag / "metadata" / "premis.xml").read_text("utf-8")
    assert "<premis:eventType>deaccession</premis:eventType>" in premis
    assert "Li Wei" in premis and REASON in premis
    last = read_versions(bag)[-1]
    assert (last.number, last.change, last.message, last.agent) == (
        3,
        VersionChange.DEACCESSION,
        REASON,
        "Li Wei",
    )
    record = json.loads((bag / "metadata" / "deaccession.json").read_text("utf-8"))
    assert record["reason"] == REASON and record["agent"] == "Li Wei"
    assert [v["ocfl_version"] for v in record["removed"]] == [1, 2]
    removed = {f["path"] for v in record["removed"] for f in v["files"]}
    assert payload <= removed
    assert (
        "versions test, corrected"
        in (bag / "metadata" / "descriptive.json").read_text("utf-8").lower()
    )
    # The object: one version, the tombstone; valid for ocfl-py.
    [tombstone] = versions(archive.objects_dir, WORK_ID)
    assert tombstone.message == f"deaccession: {REASON}"
    assert tombstone.user is not None and tombstone.user.name == "Li Wei"  # on whose word
    assert_ocfl_valid(archive.objects_dir)
    # The ledger vouches for the tombstone; the audit finds the archive sound.
    ledger = Ledger(archive.ledger_path)
    held = ledger.bag(WORK_ID)
    assert held is not None
    assert held.manifest_digests == package.summarise_bag(bag).manifest_digests
    assert [f[0] for f in ledger.bag_files(WORK_ID)] == ["data/DEACCESSIONED.txt"]
    audit = audit_archive(archive)
    assert audit.ok
    # The audit's page says the work is deaccessioned, so that its small payload is no alarm.
    from cifa_ingest.reports import audit_report

    view = audit_report.build(audit, archive)
    assert view.facts[WORK_ID].deaccessioned == record["when"]
    page = audit_report.render_html(view)
    assert "deaccessioned: the tombstone" in page
    # The locations: the disk's copy removed; the vault's held under Object Lock, and said.
    by_name = {where.location: where for where in report.locations}
    assert by_name["offsite"].removed == at_offsite and not by_name["offsite"].locked
    assert by_name["vault"].removed == 0 and len(by_name["vault"].locked) == at_offsite
    assert not report.ok
    assert list(open_store(offsite).list(f"bags/{WORK_ID}/")) == []
    assert list(open_store(offsite).list(f"versions/{WORK_ID}/")) == []
    copies = {c.location: c for c in ledger.copies(work_id=WORK_ID)}
    assert copies["vault"].state is CopyState.PENDING and "Object Lock" in copies["vault"].detail
    assert copies["offsite"].state is CopyState.PENDING
    # Replication brings the tombstone to the disk.
    replicate_archive(archive, [offsite, vault])
    copied = sorted(o.key for o in open_store(offsite).list(f"bags/{WORK_ID}/"))
    assert f"bags/{WORK_ID}/data/DEACCESSIONED.txt" in copied
    assert not [key for key in copied if "/data/original/" in key]
    # Run again: nothing more here; the vault still holds what it must.
    again = deaccession.deaccession(archive, WORK_ID, settings, reason=REASON, agent="Li Wei")
    assert again.earlier and again.version == 3
    assert not again.ok
    # The next ingest: nothing fetched, nothing made, access withheld.
    later = preserve_work(corrected, archive, settings)
    assert later.outcome is Outcome.ALREADY_PRESERVED
    assert later.access_withheld == "deaccessioned"


def test_deaccession_on_the_command_line(
    preserved: tuple[Archive, Work],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive, _work = preserved
    where = ["--archive", str(archive.root)]

    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(capsys, *args, *where)

    code, _out, err = run("deaccession", "cifa-nope-0001", "--reason", REASON)
    assert code == 2 and "not preserved" in err
    code, _out, err = run("deaccession", "../etc", "--reason", REASON)
    assert code == 2 and "not a work id" in err
    code, _out, err = run("deaccession", WORK_ID, "--reason", "two\nlines")
    assert code == 2 and "--reason" in err
    assert read_versions(archive.bag_path(WORK_ID))[-1].number == 1

    code, out, err = run("deaccession", WORK_ID, "--reason", REASON, "--agent", "Li Wei", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {"id", "version", "files_removed", "bytes_removed", "locations", "ok"}
    assert document["version"] == 2 and document["ok"] is True
    code, out, err = run("history", WORK_ID, "--json")
    assert code == 0, err
    history = json.loads(out)
    _assert_documented("## `cifa history`", history)
    assert [v["message"] for v in history["versions"]] == [f"deaccession: {REASON}"]
    assert history["deaccessioned"]["reason"] == REASON
    assert history["deaccessioned"]["agent"] == "Li Wei"
    assert [v["number"] for v in history["deaccessioned"]["earlier"]] == [1]
    code, out, err = run("history", WORK_ID)
    assert code == 0 and f"{WORK_ID} was deaccessioned on " in out
    assert "  v1  " in out and "ingestion" in out
    code, _out, err = run("export", WORK_ID, "--for-access", "--to", str(tmp_path / "a"))
    assert code == 1 and "access copies withheld (deaccessioned, as v1 records)" in err


def test_a_deaccession_killed_after_its_journal_is_finished_by_the_next_run(
    preserved: tuple[Archive, Work],
) -> None:
    """Killed after the tombstone's object was built and the journal written, before the
    exchange: the next run's triage finishes it; nothing of the film is left."""
    archive, work = preserved
    settings = _settings()
    bag = archive.bag_path(WORK_ID)
    film = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (bag / "data").rglob("*.mkv")}
    tombstone, _number, _files, _size = deaccession._build_tombstone(
        archive, WORK_ID, settings, REASON, "Li Wei"
    )
    staged = deaccession._tombstone_root(archive, WORK_ID)
    from cifa_ingest.revision import version_user
    from cifa_ingest.versions import StorageRoot

    add_version(
        StorageRoot(staged),
        WORK_ID,
        tombstone,
        message=f"deaccession: {REASON}",
        user=version_user(settings),
        staging_dir=archive.staging_dir,
        link=True,
    )
    deaccession._write_journal(archive, WORK_ID, tombstone)

    report = preserve_work(work, archive, settings)

    assert report.outcome is Outcome.ALREADY_PRESERVED, report.error
    assert report.access_withheld == "deaccessioned"
    assert deaccession.is_tombstone(bag)
    assert not film & _digests(archive.root)
    assert_ocfl_valid(archive.objects_dir)
    assert audit_archive(archive).ok
    assert not list(archive.staging_dir.iterdir())
