"""`cifa recapture ID` and `cifa watch --recapture`: a preserved work's changed source fetched again
by the ingest's own steps (completeness proof, degraded check, normalisation and its lossless
proof), as the work's next version, a PREMIS ``capture`` that keeps the earlier capture (issue
18). Films served by a real HTTP server on 127.0.0.1, replaced by another demo film at the same
address; run through ``cifa_ingest.cli.main`` as a user runs it; judged by ocfl-py's validator,
bagit-python and the PREMIS 3.0 schema, which we did not write."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit
import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.archive.layout import Archive
from cifa_ingest.archive.ledger import Ledger
from cifa_ingest.audit.fixity_audit import audit_archive
from cifa_ingest.catalogue.model import Work
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.metadata.versions_record import VersionChange, read_versions
from cifa_ingest.preserve import Outcome, preserve_work
from cifa_ingest.versions import versions
from tests.helpers import assert_premis_valid, run_cli
from tests.test_docs import _assert_documented
from tests.test_ingest_versions import _settings
from tests.test_versions import assert_ocfl_valid

P = "{http://www.loc.gov/premis/v3}"
FILM = "films/recaptured.mp4"  # a direct file: three-days-day-1.mp4, then day 2 over it
STREAM = "films/recaptured-hls"  # an HLS stream: hls, then hls-split (picture and sound apart)
WORK_ID, HLS_ID = "cifa-r-0001", "cifa-r-0002"
ORIGINAL = f"data/original/{WORK_ID}.mp4"
MASTER = f"data/master/{WORK_ID}.mkv"


def _work(work_id: str, url: str, **permission: Any) -> Work:
    return Work.model_validate(
        {
            "id": work_id,
            "title": {"en": "Recaptured", "zh": "重新采集"},
            "source": {"url": url},
            "permission": {"status": "granted", "granted_by": "Test", **permission},
        }
    )


def _serve_originals(root: Path, served_root: Path) -> None:
    """The site as it was when the works were preserved."""
    (root / "films").mkdir(parents=True, exist_ok=True)
    shutil.copy(served_root / "films" / "three-days-day-1.mp4", root / FILM)
    shutil.rmtree(root / STREAM, ignore_errors=True)
    shutil.copytree(served_root / "films" / "hls", root / STREAM)


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, served_root: Path
) -> Iterator[tuple[Path, LocalFileServer]]:
    root = tmp_path_factory.mktemp("site")
    _serve_originals(root, served_root)
    with LocalFileServer(root) as server:
        yield root, server


@pytest.fixture(scope="module")
def _preserved_once(
    tmp_path_factory: pytest.TempPathFactory, site: tuple[Path, LocalFileServer]
) -> tuple[Path, list[Work]]:
    """Two works preserved by the real ingest, once for the module: a direct file, a stream."""
    _root, server = site
    archive_dir = tmp_path_factory.mktemp("preserved") / "archive"
    works = [
        _work(WORK_ID, f"{server.base_url}/{FILM}"),
        _work(HLS_ID, f"{server.base_url}/{STREAM}/stream.m3u8"),
    ]
    for work in works:
        report = preserve_work(work, Archive(archive_dir), _settings(), allow_private_sources=True)
        assert report.outcome is Outcome.PRESERVED, report.error
    return archive_dir, works


@pytest.fixture
def preserved(
    _preserved_once: tuple[Path, list[Work]],
    archive_dir: Path,
    site: tuple[Path, LocalFileServer],
    served_root: Path,
    tmp_path: Path,
) -> tuple[Archive, Path]:
    """A copy of the preserved archive (``cp -a``, hard links kept), the site as it was, and a
    catalogue of the two works."""
    template, works = _preserved_once
    subprocess.run(["cp", "-a", str(template), str(archive_dir)], check=True)
    _serve_originals(site[0], served_root)
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(
        yaml.safe_dump({"works": [work.model_dump(mode="json") for work in works]}), "utf-8"
    )
    return Archive(archive_dir), catalogue


@pytest.fixture(autouse=True)
def _contact(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings ``cifa`` loads: the test's, with a contact address (every version then
    names one, as OCFL asks)."""
    monkeypatch.setattr(cli, "load_settings", _settings)


def _sha512(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


def _events(bag: Path, kind: str) -> list[ET.Element]:
    root = ET.parse(bag / "metadata" / "premis.xml").getroot()
    return [e for e in root.findall(f"{P}event") if e.findtext(f"{P}eventType") == kind]


def _objects(event: ET.Element) -> list[tuple[str | None, str | None]]:
    return [
        (link.findtext(f"{P}linkingObjectIdentifierValue"), link.findtext(f"{P}linkingObjectRole"))
        for link in event.findall(f"{P}linkingObjectIdentifier")
    ]


def test_a_changed_source_is_a_new_version_keeping_both_captures(
    preserved: tuple[Archive, Path],
    site: tuple[Path, LocalFileServer],
    served_root: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    archive, catalogue = preserved
    bag = archive.bag_path(WORK_ID)
    first_original, first_master = _sha512(bag / ORIGINAL), _sha512(bag / MASTER)
    shutil.copy(served_root / "films" / "three-days-day-2.mp4", site[0] / FILM)  # a re-upload

    code, out, err = run_cli(
        capsys, "recapture", WORK_ID, str(catalogue), "--archive", str(archive.root),
        "--agent", "Li Wei", "--message", "the maker re-uploaded the film",
        "--allow-private-sources", "--json",
    )  # fmt: skip

    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    _assert_documented("## `cifa recapture`", document)
    assert document["ok"] is True and document["version"] == 2
    assert document["change"] == "capture" and document["agent"] == "Li Wei"
    assert document["message"] == "the maker re-uploaded the film"
    assert document["outcome"] == "new-version"
    assert ORIGINAL in document["originals"] and ORIGINAL in document["replaced"]
    assert {ORIGINAL, MASTER} <= set(document["made"])
    assert len(document["proof"]) == 1
    # bags/<id> is version 2: the new original, its own master, proved.
    history = read_versions(bag)
    assert [(v.number, v.change, v.agent) for v in history] == [
        (1, VersionChange.INGESTION, history[0].agent),
        (2, VersionChange.CAPTURE, "Li Wei"),
    ]
    assert _sha512(bag / ORIGINAL) == _sha512(served_root / "films" / "three-days-day-2.mp4")
    assert _sha512(bag / MASTER) != first_master
    record = json.loads((bag / "metadata" / "normalisation.json").read_text("utf-8"))
    assert [g["proof"]["passed"] for g in record["groups"]] == [True]
    capture = json.loads((bag / "metadata" / "capture.json").read_text("utf-8"))
    assert capture["sources"][0]["files"][0]["sha512"] == _sha512(bag / ORIGINAL)
    # Both versions export whole, each with its own capture, master and passed proof.
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
        assert_premis_valid(target)
        proved = json.loads((target / "metadata" / "normalisation.json").read_text("utf-8"))
        assert [g["proof"]["passed"] for g in proved["groups"]] == [True]
    assert _sha512(tmp_path / "v1" / ORIGINAL) == first_original
    assert _sha512(tmp_path / "v1" / MASTER) == first_master
    assert _sha512(tmp_path / "v2" / ORIGINAL) != first_original
    assert not (tmp_path / "v1" / "metadata" / "versions.json").exists() or [
        v.number for v in read_versions(tmp_path / "v1")
    ] == [1]
    # PREMIS: the earlier objects and events kept; the new files objects of their own; two
    # capture events, the second the version's, its outcome the new original.
    assert_premis_valid(bag)
    root = ET.parse(bag / "metadata" / "premis.xml").getroot()
    objects = {
        o.findtext(f"{P}objectIdentifier/{P}objectIdentifierValue") for o in root.iter(f"{P}object")
    }
    assert {ORIGINAL, MASTER, f"{ORIGINAL}@v2", f"{MASTER}@v2"} <= objects
    first, second = _events(bag, "capture")
    assert (ORIGINAL, "outcome") in _objects(first)
    assert _objects(second) == [(f"{ORIGINAL}@v2", "outcome")]
    assert "version 2: the maker re-uploaded the film" in (
        second.findtext(f"{P}eventDetailInformation/{P}eventDetail") or ""
    )
    proofs = [
        e
        for e in _events(bag, "validation")
        if "lossless proof" in (e.findtext(f"{P}eventDetailInformation/{P}eventDetail") or "")
    ]
    assert len(proofs) == 2  # the ingest's, and the re-capture's
    assert {(f"{ORIGINAL}@v2", "source"), (f"{MASTER}@v2", "source")} <= set(_objects(proofs[1]))
    assert len(_events(bag, "ingestion")) == 1
    assert not list(archive.staging_dir.iterdir())
    audit = audit_archive(archive)  # the bag, and every version of the object, every byte
    assert audit.ok, audit.problems
    # A corrected title after it: version 3 carries the capture's record on, and names the
    # files by their newest objects.
    entry = yaml.safe_load(catalogue.read_text("utf-8"))["works"][0]
    corrected = Work.model_validate({**entry, "title": {"en": "Recaptured", "zh": "重新採集"}})
    report = preserve_work(corrected, archive, _settings())
    assert report.outcome is Outcome.NEW_VERSION and report.version == 3, report.error
    assert_premis_valid(bag)
    assert len(_events(bag, "capture")) == 2
    [third] = _events(bag, "metadata modification")
    assert {(f"{ORIGINAL}@v2", "source"), (f"{MASTER}@v2", "source")} <= set(_objects(third))
    assert_ocfl_valid(archive.objects_dir)


def test_a_source_that_gives_the_same_bytes_makes_nothing(
    preserved: tuple[Archive, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    archive, catalogue = preserved
    bag = archive.bag_path(WORK_ID)
    before = {p.relative_to(bag).as_posix(): p.stat().st_ino for p in bag.rglob("*")}

    code, out, err = run_cli(
        capsys, "recapture", WORK_ID, str(catalogue), "--archive", str(archive.root),
        "--allow-private-sources", "--json",
    )  # fmt: skip

    assert code == 1
    assert err.count("the source gives the same bytes as version 1") == 1, err  # said once
    document = json.loads(out)
    assert document["ok"] is False and document["version"] == 1
    assert "the same bytes as version 1" in document["error"]
    assert {p.relative_to(bag).as_posix(): p.stat().st_ino for p in bag.rglob("*")} == before
    assert [v.number for v in versions(archive.objects_dir, WORK_ID)] == [1]
    assert not list(archive.staging_dir.iterdir())
    assert Ledger(archive.ledger_path).failing_works() == []  # still preserved, not "failed"


def test_watch_recapture_makes_a_version_of_each_changed_source_only(
    preserved: tuple[Archive, Path],
    site: tuple[Path, LocalFileServer],
    served_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive, catalogue = preserved
    root = site[0]
    # The stream's address now serves another film (picture and sound apart); the file is gone.
    shutil.rmtree(root / STREAM)
    shutil.copytree(served_root / "films" / "hls-split", root / STREAM)
    shutil.copy(root / STREAM / "master.m3u8", root / STREAM / "stream.m3u8")
    (root / FILM).unlink()

    code, out, err = run_cli(
        capsys, "watch", str(catalogue), "--recapture", "--agent", "the watch",
        "--archive", str(archive.root), "--allow-private-sources", "--json",
    )  # fmt: skip

    assert code == 1, err  # a source is gone: the watch says so
    document = json.loads(out)
    _assert_documented("## `cifa watch`", document)
    statuses = {s["id"]: s["status"] for s in document["sources"]}
    assert statuses == {WORK_ID: "gone", HLS_ID: "changed"}
    [done] = document["recaptures"]  # the gone source is never fetched again
    assert (done["id"], done["ok"], done["version"], done["change"]) == (
        HLS_ID,
        True,
        2,
        "capture",
    )
    assert "watch found 'changed' on" in done["message"] and "formats" in done["message"]
    assert done["agent"] == "the watch"
    assert [v.number for v in versions(archive.objects_dir, HLS_ID)] == [1, 2]
    assert [v.number for v in versions(archive.objects_dir, WORK_ID)] == [1]
    hls_bag = archive.bag_path(HLS_ID)
    assert_premis_valid(hls_bag)
    assert len(_events(hls_bag, "capture")) == 2
    assert_ocfl_valid(archive.objects_dir)
    # The next watch finds the stream as its newest capture has it.
    code, out, _err = run_cli(
        capsys, "watch", "--only", HLS_ID, "--archive", str(archive.root),
        "--allow-private-sources", "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["sources"][0]["status"] == "present"


def test_bad_input_is_said_before_any_request(
    preserved: tuple[Archive, Path],
    site: tuple[Path, LocalFileServer],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    archive, catalogue = preserved
    server = site[1]
    before = len(server.requests)
    withdrawn = tmp_path / "withdrawn.yaml"
    withdrawn.write_text(
        yaml.safe_dump(
            {
                "works": [
                    _work(WORK_ID, f"{server.base_url}/{FILM}", status="withdrawn").model_dump(
                        mode="json"
                    )
                ]
            }
        ),
        "utf-8",
    )
    where = ["--archive", str(archive.root)]
    private = [*where, "--allow-private-sources"]
    cases = [
        (["recapture", "../etc", str(catalogue), *where], "not a work id"),
        (["recapture", "cifa-r-0404", str(catalogue), *where], "no such work"),
        (["recapture", WORK_ID, str(tmp_path / "none.yaml"), *where], "no such catalogue"),
        (["recapture", WORK_ID, str(withdrawn), *private], "withdrawn"),
        (["recapture", WORK_ID, str(catalogue), *where], "source.url"),  # loopback refused
        (["recapture", WORK_ID, str(catalogue), *private, "--agent", " "], "the name of whoever"),
        (["watch", "--agent", "x", *where], "--agent: only with --recapture"),
        (["recapture", WORK_ID, str(catalogue), "--archive", str(tmp_path / "nowhere")], ""),
    ]
    for args, said in cases:
        code, _out, err = run_cli(capsys, *args)
        assert code == 2 and said in err, (args, err)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"works": []}), "utf-8")
    code, _out, err = run_cli(capsys, "recapture", WORK_ID, str(other), *where)
    assert code == 2 and "not in the catalogues" in err
    assert len(server.requests) == before
    assert [v.number for v in versions(archive.objects_dir, WORK_ID)] == [1]
