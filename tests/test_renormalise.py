"""`cifa renormalise ID`: a preserved work's new master by the format policy now in force, proved
lossless against its originals, as a new version (a PREMIS ``migration``) that keeps the earlier
master (issue 18). Run through ``cifa_ingest.cli.main`` as a user runs it, on a work preserved
by the real ingest; judged by ocfl-py's validator, bagit-python and the PREMIS 3.0 schema, which
we did not write.

The policy change: the work was preserved by the ``default`` profile (its H.264 decoded to FFV1);
the archive then chose ``storage-saving``, which remuxes H.264 bit for bit into Matroska."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import bagit
import pytest

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.audit.fixity_audit import audit_archive
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import Settings
from cifa_ingest.metadata.versions_record import VersionChange, read_versions
from cifa_ingest.normalise import proof
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.versions import versions
from tests.helpers import assert_premis_valid, run_cli
from tests.test_docs import _assert_documented
from tests.test_ingest_versions import WORK_ID, _settings
from tests.test_versions import assert_ocfl_valid

P = "{http://www.loc.gov/premis/v3}"
MASTER = f"data/master/{WORK_ID}.mkv"


@pytest.fixture
def archive(preserved: tuple[Archive, Work]) -> Archive:
    return preserved[0]


def _with_profile(monkeypatch: pytest.MonkeyPatch, profile: str) -> Settings:
    """The settings ``cifa`` loads from now on: the test's, with the format policy's ``profile``."""
    settings = _settings()
    normalise = settings.normalise.model_copy(update={"profile": profile})
    settings = settings.model_copy(update={"normalise": normalise})
    monkeypatch.setattr(cli, "load_settings", lambda: settings)
    return settings


def _sha512(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


def _inodes(bag: Path, folder: str) -> dict[str, int]:
    return {
        p.relative_to(bag).as_posix(): p.stat().st_ino
        for p in sorted((bag / "data" / folder).rglob("*"))
        if p.is_file()
    }


def _objects(event: ET.Element) -> list[tuple[str | None, str | None]]:
    return [
        (link.findtext(f"{P}linkingObjectIdentifierValue"), link.findtext(f"{P}linkingObjectRole"))
        for link in event.findall(f"{P}linkingObjectIdentifier")
    ]


def test_a_new_policy_makes_a_proved_master_as_a_new_version_keeping_the_old(
    preserved: tuple[Archive, Work],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    archive, work = preserved
    bag = archive.bag_path(WORK_ID)
    old_master = _sha512(bag / MASTER)
    originals = _inodes(bag, "original")
    _with_profile(monkeypatch, "storage-saving")

    code, out, err = run_cli(
        capsys, "renormalise", WORK_ID, "--archive", str(archive.root), "--agent", "Li Wei",
        "--json",
    )  # fmt: skip

    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    _assert_documented("## `cifa renormalise`", document)
    assert document["ok"] is True and document["version"] == 2
    assert document["change"] == "migration" and document["agent"] == "Li Wei"
    assert document["profile"] == "storage-saving"
    [action] = document["actions"]
    assert (action["stem"], action["before"], action["now"]) == (WORK_ID, "ffv1", "remux")
    assert document["replaced"] == [MASTER] and MASTER in document["made"]
    assert "storage-saving" in document["message"] and "ffv1 → remux" in document["message"]
    # bags/<id> is version 2: a new master, proved; the originals the same files (inodes).
    history = read_versions(bag)
    assert [(v.number, v.change) for v in history] == [
        (1, VersionChange.INGESTION),
        (2, VersionChange.MIGRATION),
    ]
    assert history[-1].agent == "Li Wei" and history[-1].message == document["message"]
    assert _sha512(bag / MASTER) != old_master
    assert _inodes(bag, "original") == originals
    record = json.loads((bag / "metadata" / "normalisation.json").read_text("utf-8"))
    [group] = record["groups"]
    assert group["action"] == "remux" and group["proof"]["passed"] is True
    assert any(
        e["type"] == "validation" and e["outcome"] == "pass" and "lossless proof" in e["detail"]
        for e in record["events"]
    )
    technical = json.loads((bag / "metadata" / "technical.json").read_text("utf-8"))
    assert technical[MASTER.removeprefix("data/")]["streams"][0]["codec_name"] == "h264"
    bagit.Bag(str(bag)).validate()
    # PREMIS: the earlier objects and events kept, the new master an object of its own, one
    # migration event from the old master to the new, with the proof's validation before it.
    assert_premis_valid(bag)
    root = ET.parse(bag / "metadata" / "premis.xml").getroot()
    objects = {
        o.findtext(f"{P}objectIdentifier/{P}objectIdentifierValue"): o
        for o in root.iter(f"{P}object")
    }
    assert {MASTER, f"{MASTER}@v2"} <= set(objects)
    fixity = {
        f.findtext(f"{P}messageDigestAlgorithm"): f.findtext(f"{P}messageDigest")
        for f in objects[f"{MASTER}@v2"].iter(f"{P}fixity")
    }
    assert fixity["sha512"] == _sha512(bag / MASTER)
    events = root.findall(f"{P}event")
    [migration] = [e for e in events if e.findtext(f"{P}eventType") == "migration"]
    assert _objects(migration) == [(MASTER, "source"), (f"{MASTER}@v2", "outcome")]
    assert "version 2: " in (migration.findtext(f"{P}eventDetailInformation/{P}eventDetail") or "")
    proofs = [
        e
        for e in events
        if e.findtext(f"{P}eventType") == "validation"
        and "lossless proof" in (e.findtext(f"{P}eventDetailInformation/{P}eventDetail") or "")
    ]
    assert len(proofs) == 2  # the ingest's, and the migration's
    assert (f"{MASTER}@v2", "source") in _objects(proofs[-1])
    assert [e.findtext(f"{P}eventType") for e in events].count("ingestion") == 1
    # The store holds both masters; v1 still exports with its own; ocfl-py is content.
    assert [v.number for v in versions(archive.objects_dir, WORK_ID)] == [1, 2]
    assert_ocfl_valid(archive.objects_dir)
    for number in (1, 2):
        target = tmp_path / f"v{number}"
        code, _out, err = run_cli(
            capsys, "export", WORK_ID, "--version", str(number), "--to", str(target),
            "--archive", str(archive.root),
        )  # fmt: skip
        assert code == 0, err
        bagit.Bag(str(target)).validate()
    assert _sha512(tmp_path / "v1" / MASTER) == old_master
    assert _sha512(tmp_path / "v2" / MASTER) == _sha512(bag / MASTER)
    assert not list(archive.staging_dir.iterdir())
    audit = audit_archive(archive)  # the bag, and every version of the object, every byte
    assert audit.ok, audit.problems
    # The same policy again: the master is already the current one.
    code, _out, err = run_cli(capsys, "renormalise", WORK_ID, "--archive", str(archive.root))
    assert code == 1 and "already the current policy's master" in err
    assert [v.number for v in versions(archive.objects_dir, WORK_ID)] == [1, 2]
    # A corrected title after it: version 3 carries the migration's record on, and names the
    # master by its newest object.
    corrected = Work.model_validate(
        {**work.model_dump(mode="python"), "title": {"en": "Versions test", "zh": "版本測試"}}
    )
    report = preserve_work(corrected, archive, _settings())
    assert report.outcome is Outcome.NEW_VERSION and report.version == 3, report.error
    assert_premis_valid(bag)
    root = ET.parse(bag / "metadata" / "premis.xml").getroot()
    [third] = [
        e
        for e in root.findall(f"{P}event")
        if e.findtext(f"{P}eventType") == "metadata modification"
    ]
    assert (f"{MASTER}@v2", "source") in _objects(third)
    assert (
        len([e for e in root.findall(f"{P}event") if e.findtext(f"{P}eventType") == "migration"])
        == 1
    )
    assert_ocfl_valid(archive.objects_dir)


def test_the_policy_in_force_gives_the_same_master_and_nothing_is_made(
    archive: Archive, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = archive.bag_path(WORK_ID)
    before = {p.relative_to(bag).as_posix(): p.stat().st_ino for p in bag.rglob("*")}
    _with_profile(monkeypatch, "default")

    code, out, err = run_cli(
        capsys, "renormalise", WORK_ID, "--archive", str(archive.root), "--json"
    )

    assert code == 1
    assert "already the current policy's master" in err and "cifa: renormalise refused" in err
    assert json.loads(out)["ok"] is False
    assert {p.relative_to(bag).as_posix(): p.stat().st_ino for p in bag.rglob("*")} == before
    assert [v.number for v in versions(archive.objects_dir, WORK_ID)] == [1]
    assert not list(archive.staging_dir.iterdir())


def test_a_master_that_fails_its_proof_makes_nothing(
    archive: Archive, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_profile(monkeypatch, "storage-saving")
    compare = proof.compare

    def failing(source: Path, master: Path, method: str) -> proof.Proof:
        found = compare(source, master, method)
        found.passed, found.first_difference = False, "stream 0 (video) frame 3: content differs"
        return found

    monkeypatch.setattr(proof, "compare", failing)
    code, _out, err = run_cli(capsys, "renormalise", WORK_ID, "--archive", str(archive.root))
    assert code == 1 and "not lossless" in err
    assert [v.number for v in versions(archive.objects_dir, WORK_ID)] == [1]
    assert [v.number for v in read_versions(archive.bag_path(WORK_ID))] == [1]
    assert not list(archive.staging_dir.iterdir())


def test_a_work_the_archive_does_not_hold_is_bad_input(
    archive: Archive, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_profile(monkeypatch, "storage-saving")
    for work_id, said in (("cifa-9999", "no such work"), ("../etc", "not a work id")):
        code, _out, err = run_cli(capsys, "renormalise", work_id, "--archive", str(archive.root))
        assert code == 2 and said in err, err
    assert [v.number for v in versions(archive.objects_dir, WORK_ID)] == [1]
