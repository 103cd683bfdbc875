"""Standards in every bag: PREMIS 3.0 valid against the official schema, Dublin Core in both
languages, and the CIFA BagIt profile, checked on a bag the real pipeline made."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import bagit
import bagit_profile
import pytest
import xmlschema

from cifa_ingest.archive.layout import Archive
from cifa_ingest.bag.package import (
    NOT_RECORDED,
    PROFILE_IDENTIFIER,
    bag_info,
    human_size,
    make_bag,
    write_json,
)
from cifa_ingest.catalogue.model import Work
from cifa_ingest.config import OrganisationSettings, load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.errors import PackagingError
from cifa_ingest.metadata.premis import write_premis
from cifa_ingest.preserve import Outcome, preserve_work
from tests.helpers import (
    BAGIT_PROFILE,
    PREMIS_XSD,
    assert_follows_profile,
    assert_valid_preserved_bag,
    dublin_core,
    premis_schema,
)

P = "{http://www.loc.gov/premis/v3}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def _work(url: str | None) -> Work:
    return Work.model_validate(
        {
            "id": "cifa-std-0001",
            "title": {"en": "Bumming in Beijing", "zh": "流浪北京"},
            "director": {"en": "Wu Wenguang", "zh": "吴文光"},
            "year": 1990,
            "kind": "documentary",
            "synopsis": "Five artists adrift in Beijing.",
            "source": {"url": url, "platform": "CIFA YouTube channel"},
            "permission": {
                "status": "granted",
                "covers": ["preservation", "access"],
                "granted_by": "Wu Wenguang (director)",
                "basis": "Email of 1 May 2019 to the archive",
                "date": "2019-05-01",
            },
        }
    )


@pytest.fixture(scope="module")
def bag_dir(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One work preserved by the real pipeline (yt-dlp from a local server, ffmpeg, bagit)."""
    archive_dir = tmp_path_factory.mktemp("standards") / "archive"
    with LocalFileServer(served_root) as server:
        work = _work(f"{server.base_url}/films/colour-bars.mkv")
        report = preserve_work(
            work, Archive(archive_dir), load_settings(), "Test collection",
            allow_private_sources=True,
        )  # fmt: skip
    assert report.outcome is Outcome.PRESERVED, report.error
    yield archive_dir / "bags" / work.id


def _premis(bag_dir: Path) -> ET.Element:
    return ET.parse(bag_dir / "metadata" / "premis.xml").getroot()


def test_preserved_bag_passes_every_check(bag_dir: Path) -> None:
    assert_valid_preserved_bag(bag_dir, "cifa-std-0001")


def test_the_premis_schema_is_the_official_one_and_loads_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The repository's copy is the unmodified LoC schema (tests/data/standards/premis/README.md),
    and it needs nothing but itself: no import (xlink was dropped in 3.0), no network."""
    data = PREMIS_XSD.read_bytes()
    assert len(data) == 52_845
    assert (
        hashlib.sha256(data).hexdigest()
        == "03b8a77a20b32b882ad799e12262671d07ad18210c60233f4e613a1289491cba"
    )

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the PREMIS schema must load without the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    # allow="none": no resource may be read at all, not even a local file beside it.
    schema = xmlschema.XMLSchema(data.decode("utf-8"), allow="none")
    assert schema.target_namespace == "http://www.loc.gov/premis/v3"
    assert not schema.imports and not schema.includes
    assert premis_schema().target_namespace == schema.target_namespace


def test_premis_validates_against_the_official_schema(bag_dir: Path) -> None:
    premis_schema().validate(str(bag_dir / "metadata" / "premis.xml"))


def test_the_schema_check_is_real(bag_dir: Path, tmp_path: Path) -> None:
    """A PREMIS file with an element out of order is refused: the validation is not a formality."""
    root = _premis(bag_dir)
    first = root.find(f"{P}object")
    assert first is not None
    root.remove(first)
    root.append(first)  # objects must come before events
    broken = tmp_path / "premis.xml"
    ET.ElementTree(root).write(broken, encoding="utf-8")
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        premis_schema().validate(str(broken))


def test_premis_describes_every_payload_file_with_the_manifest_digests(bag_dir: Path) -> None:
    root = _premis(bag_dir)
    assert root.tag == f"{P}premis" and root.get("version") == "3.0"
    entries = bagit.Bag(str(bag_dir)).payload_entries()
    objects = {
        o.findtext(f"{P}objectIdentifier/{P}objectIdentifierValue"): o
        for o in root.iter(f"{P}object")
    }
    assert set(objects) == set(entries)
    for path, obj in objects.items():
        assert obj.get(XSI_TYPE) == "premis:file"
        digests = {
            f.findtext(f"{P}messageDigestAlgorithm"): f.findtext(f"{P}messageDigest")
            for f in obj.iter(f"{P}fixity")
        }
        assert digests == entries[path]
        assert obj.findtext(f"{P}objectCharacteristics/{P}size") == str(
            (bag_dir / path).stat().st_size
        )
    master = objects["data/master/cifa-std-0001.mkv"]
    formats = [
        (
            f.findtext(f"{P}formatDesignation/{P}formatName"),
            f.findtext(f"{P}formatDesignation/{P}formatVersion"),
            f.findtext(f"{P}formatRegistry/{P}formatRegistryKey"),
        )
        for f in master.iter(f"{P}format")
    ]
    assert formats[0] == ("Matroska", "4", "fmt/569")
    ffv1 = [version for name, version, _ in formats if "FFV1" in (name or "")]
    assert ffv1 == ["3"], formats
    access = objects["data/access/cifa-std-0001.mp4"]
    assert (
        access.findtext(
            f"{P}objectCharacteristics/{P}format/{P}formatRegistry/{P}formatRegistryKey"
        )
        == "fmt/199"
    )
    for derivative in (master, access):
        relationship = derivative.find(f"{P}relationship")
        assert relationship is not None
        assert relationship.findtext(f"{P}relationshipType") == "derivation"
        assert (
            relationship.findtext(f"{P}relatedObjectIdentifier/{P}relatedObjectIdentifierValue")
            == "data/original/cifa-std-0001.mkv"
        )
    assert objects["data/original/cifa-std-0001.mkv"].find(f"{P}relationship") is None


def test_premis_events_agents_and_rights(bag_dir: Path) -> None:
    root = _premis(bag_dir)
    events = list(root.iter(f"{P}event"))
    types = [e.findtext(f"{P}eventType") for e in events]
    assert set(types) == {
        "capture",
        "message digest calculation",
        "normalization",
        "validation",
        "format identification",
        "metadata extraction",
        "ingestion",
    }
    agents = {
        a.findtext(f"{P}agentIdentifier/{P}agentIdentifierValue"): a for a in root.iter(f"{P}agent")
    }
    names = {a.findtext(f"{P}agentName") for a in agents.values()}
    assert {
        "cifa-ingest",
        "yt-dlp",
        "ffmpeg",
        "MediaConch",
        "Chinese Independent Film Archive",
    } <= names
    assert all(
        a.findtext(f"{P}agentVersion")
        for a in agents.values()
        if a.findtext(f"{P}agentType") == "software"
    )
    ids = set()
    for event in events:
        ids.add(event.findtext(f"{P}eventIdentifier/{P}eventIdentifierValue"))
        assert event.findtext(f"{P}eventDateTime")
        assert event.findtext(f"{P}eventOutcomeInformation/{P}eventOutcome") in {"success", "pass"}
        linked = [v.text for v in event.iter(f"{P}linkingAgentIdentifierValue")]
        assert linked and set(linked) <= set(agents)
        assert list(event.iter(f"{P}linkingObjectIdentifierValue"))
    assert len(ids) == len(events)
    proof = [e for e in events if "lossless proof" in (e.findtext(f".//{P}eventDetail") or "")]
    assert len(proof) == 1
    assert "frames identical" in (proof[0].findtext(f".//{P}eventOutcomeDetailNote") or "")
    capture = events[types.index("capture")]
    assert "server Date" in (capture.findtext(f".//{P}eventDetail") or "")
    capture_json = json.loads((bag_dir / "metadata" / "capture.json").read_text("utf-8"))
    assert capture.findtext(f"{P}eventDateTime") == capture_json["event"]["date_time"]

    statement = root.find(f"{P}rights/{P}rightsStatement")
    assert statement is not None
    assert statement.findtext(f"{P}rightsBasis") == "License"
    assert "Wu Wenguang (director)" in (statement.findtext(f".//{P}licenseTerms") or "")
    acts = [g.findtext(f"{P}act") for g in statement.iter(f"{P}rightsGranted")]
    assert acts == ["preserve", "disseminate"]
    assert statement.findtext(f".//{P}termOfGrant/{P}startDate") == "2019-05-01"
    grantor = statement.find(f"{P}linkingAgentIdentifier")
    assert grantor is not None and grantor.findtext(f"{P}linkingAgentRole") == "grantor"
    assert grantor.findtext(f"{P}linkingAgentIdentifierValue") in agents


def test_descriptive_xml_is_dublin_core_in_both_languages(bag_dir: Path) -> None:
    dc = dublin_core(bag_dir)
    assert dc[("title", "zh")] == ["流浪北京"]
    assert dc[("title", "en")] == ["Bumming in Beijing"]
    assert dc[("creator", "zh")] == ["吴文光"]
    assert dc[("date", None)] == ["1990"]
    assert "MovingImage" in dc[("type", None)]
    assert dc[("identifier", None)] == ["cifa-std-0001"]
    assert dc[("source", None)][0].endswith("/films/colour-bars.mkv")
    assert "Wu Wenguang (director)" in dc[("rights", "en")][0]
    assert dc[("description", "en")] == ["Five artists adrift in Beijing."]


def test_bag_follows_the_cifa_bagit_profile(bag_dir: Path) -> None:
    profile = json.loads(BAGIT_PROFILE.read_text("utf-8"))
    assert profile["BagIt-Profile-Info"]["BagIt-Profile-Identifier"] == PROFILE_IDENTIFIER
    assert_follows_profile(bag_dir)
    info = bagit.Bag(str(bag_dir)).info
    for field, config in profile["Bag-Info"].items():
        if config.get("required"):
            assert info[field], field
    assert info["Bag-Group-Identifier"] == "Test collection"
    assert info["Title-Zh"] == "流浪北京"
    assert info["Contact-Email"] == NOT_RECORDED  # the test settings have no contact address


def test_a_bag_without_premis_does_not_follow_the_profile(bag_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bag"
    shutil.copytree(bag_dir, copy)
    (copy / "metadata" / "premis.xml").unlink()
    profile = bagit_profile.Profile(PROFILE_IDENTIFIER, profile=BAGIT_PROFILE.read_text("utf-8"))
    assert not profile.validate(bagit.Bag(str(copy)))
    assert "premis.xml" in str(profile.report)


def test_missing_catalogue_fields_are_written_as_not_recorded() -> None:
    work = Work.model_validate(
        {"id": "cifa-0002", "title": {"en": "Untitled"}, "source": {"url": None},
         "permission": {"status": "not-sought"}}
    )  # fmt: skip
    info = bag_info(work, OrganisationSettings(), None)
    for field in ("Title-Zh", "Director", "Year", "Contact-Email", "Organization-Address"):
        assert info[field] == NOT_RECORDED
    assert info["Bag-Group-Identifier"] == "CIFA"
    assert info["BagIt-Profile-Identifier"] == PROFILE_IDENTIFIER


@pytest.mark.parametrize(
    ("size", "expected"),
    [(10, "10 bytes"), (1500, "1.5 KB"), (535_069, "535.1 KB"), (2_400_000_000, "2.4 GB")],
)
def test_bag_size_is_human_readable(size: int, expected: str) -> None:
    assert human_size(size) == expected


def test_an_original_that_changed_since_capture_is_refused(tmp_path: Path) -> None:
    """PREMIS records the capture digests; a bag whose original differs is not written."""
    bag = tmp_path / "bag"
    (bag / "original").mkdir(parents=True)
    (bag / "original" / "film.mkv").write_bytes(b"changed bytes")
    metadata = tmp_path / "metadata"
    write_json(
        metadata / "capture.json",
        {"sources": [{"index": 1, "url": "https://example.org/f", "files": [
            {"name": "film.mkv", "sha256": "0" * 64, "sha512": "0" * 128}]}]},
    )  # fmt: skip
    with pytest.raises(PackagingError, match="differs from the digest taken at capture"):
        make_bag(
            bag, {}, metadata, {},
            lambda d: {"premis.xml": write_premis(d, OrganisationSettings(), "2026-01-01")},
        )  # fmt: skip
