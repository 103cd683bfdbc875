"""A work's next version made from its bag (cifa_ingest.bag.revise, issue 18): a title fix, a
withdrawn and a narrowed permission, each a complete bag valid for bagit-python and the CIFA
profile, its payload hard links to the head's, its PREMIS telling the whole history with the
first version's dates unchanged, and the head bag byte for byte what it was."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bagit
import pytest

from cifa_ingest.archive.layout import Archive
from cifa_ingest.bag import revise as revise_module
from cifa_ingest.bag.revise import RevisionRefused, revise
from cifa_ingest.catalogue.model import PermissionStatus, Work
from cifa_ingest.config import load_settings
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.metadata.premis import build_premis, version_event_identifier
from cifa_ingest.metadata.versions_record import (
    VersionChange,
    first_version,
    read_versions,
    recorded_versions,
)
from cifa_ingest.preserve import Outcome, preserve_work
from tests.helpers import assert_follows_profile, assert_premis_valid, dublin_core

P = "{http://www.loc.gov/premis/v3}"
GRANTOR = "Wu Wenguang (director)"
BASIS = "Email of 1 May 2019 to the archive"
ENTRY: dict[str, Any] = {
    "id": "cifa-rev-0001",
    "title": {"en": "Fengming, a Chinese Memoir", "zh": "和凤鸣"},
    "director": {"en": "Wang Bing", "zh": "王兵"},
    "year": 2007,
    "source": {"url": None},
    "permission": {
        "status": "granted",
        "covers": ["preservation", "access"],
        "granted_by": GRANTOR,
        "basis": BASIS,
        "date": "2019-05-01",
    },
}
ORGANISATION = load_settings().organisation


def work(url: str | None = None, **changes: Any) -> Work:
    return Work.model_validate({**ENTRY, "source": {"url": url}, **changes})


@pytest.fixture(scope="module")
def head(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One work preserved by the real pipeline and placed (its files read-only): version 1."""
    archive_dir = tmp_path_factory.mktemp("revise") / "archive"
    with LocalFileServer(served_root) as server:
        report = preserve_work(
            work(f"{server.base_url}/films/colour-bars.mkv"),
            Archive(archive_dir),
            load_settings(),
            "CIFA",
            allow_private_sources=True,
        )
    assert report.outcome is Outcome.PRESERVED, report.error
    yield archive_dir / "bags" / ENTRY["id"]


def catalogue_entry(head: Path, **changes: Any) -> Work:
    """The catalogue's entry as preserved (its address as the bag has it), with ``changes``."""
    sources = json.loads((head / "metadata" / "descriptive.json").read_text("utf-8"))["sources"]
    return work(sources[0]["url"], **changes)


def snapshot(bag: Path) -> dict[str, tuple[str, int, int]]:
    """Every file of a bag: its sha256, inode and mode."""
    return {
        path.relative_to(bag).as_posix(): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_ino,
            path.stat().st_mode,
        )
        for path in sorted(bag.rglob("*"))
        if path.is_file()
    }


def events(bag: Path) -> list[dict[str, Any]]:
    root = ET.parse(bag / "metadata" / "premis.xml").getroot()
    return [
        {
            "id": e.findtext(f"{P}eventIdentifier/{P}eventIdentifierValue"),
            "type": e.findtext(f"{P}eventType"),
            "date": e.findtext(f"{P}eventDateTime"),
            "detail": e.findtext(f".//{P}eventDetail"),
            "roles": [
                (
                    link.findtext(f"{P}linkingAgentIdentifierValue"),
                    link.findtext(f"{P}linkingAgentRole"),
                )
                for link in e.iter(f"{P}linkingAgentIdentifier")
            ],
        }
        for e in root.iter(f"{P}event")
    ]


def rights(bag: Path) -> ET.Element:
    statement = ET.parse(bag / "metadata" / "premis.xml").getroot().find(f".//{P}rightsStatement")
    assert statement is not None
    return statement


def assert_valid_version(bag: Path) -> None:
    bagit.Bag(str(bag)).validate()
    assert_follows_profile(bag)
    assert_premis_valid(bag)


def test_a_title_fix_is_a_complete_new_bag_linking_the_head_payload(
    head: Path, tmp_path: Path
) -> None:
    before = snapshot(head)
    v1_events = events(head)
    corrected = catalogue_entry(head, title={"en": ENTRY["title"]["en"], "zh": "和鳳鳴"})

    new = revise(
        head, tmp_path / "staging", corrected, "CIFA", ORGANISATION,
        agent="Archivist on duty", created="2030-11-27T21:00:00Z",
    )  # fmt: skip

    assert new == tmp_path / "staging" / "cifa-rev-0001.v2"
    assert_valid_version(new)
    assert json.loads((new / "metadata/descriptive.json").read_text("utf-8"))["title"] == {
        "en": ENTRY["title"]["en"],
        "zh": "和鳳鳴",
    }
    assert dublin_core(new)[("title", "zh")] == ["和鳳鳴"]
    info = bagit.Bag(str(new)).info
    assert info["Title-Zh"] == "和鳳鳴"
    assert info["Bagging-Date"] == "2030-11-27"
    assert info["Payload-Oxum"] == bagit.Bag(str(head)).info["Payload-Oxum"]
    # The payload and its manifests: the head's files themselves (hard links), not copies.
    after = snapshot(new)
    payload = [p for p in before if p.startswith("data/") or p.startswith("manifest-")]
    assert payload and all(after[p][1] == before[p][1] for p in payload)
    changed = {p for p in after if p not in before or after[p][1] != before[p][1]}
    assert changed == {
        "bag-info.txt",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha512.txt",
        "metadata/descriptive.json",
        "metadata/descriptive.xml",
        "metadata/permission.json",
        "metadata/premis.xml",
        "metadata/versions.json",
    }
    # The history: two versions, the first dated as the head's PREMIS ingestion.
    [v1, v2] = recorded_versions(new) or []
    ingestion = next(e for e in v1_events if e["type"] == "ingestion")
    assert (v1.number, v1.change, v1.fields) == (1, VersionChange.INGESTION, ())
    assert v1.created == ingestion["date"].replace("+00:00", "Z")
    assert (v2.number, v2.created, v2.change) == (
        2,
        "2030-11-27T21:00:00Z",
        VersionChange.METADATA_MODIFICATION,
    )
    assert v2.message == 'descriptive title.zh: "和凤鸣" → "和鳳鳴"'
    assert (v2.agent, v2.fields) == ("Archivist on duty", ("descriptive.title.zh",))
    # PREMIS: every event of version 1 as it was (identifier, date), one event more.
    v2_events = events(new)
    assert v2_events[: len(v1_events)] == v1_events
    [modification] = v2_events[len(v1_events) :]
    assert modification["type"] == "metadata modification"
    assert modification["date"] == "2030-11-27T21:00:00Z"
    assert modification["id"] == version_event_identifier("cifa-rev-0001", 2)
    assert "和鳳鳴" in modification["detail"]
    roles = dict((role, agent) for agent, role in modification["roles"])
    assert roles["authorizer"] == "Archivist on duty"
    assert roles["executing program"].startswith("cifa-ingest")
    assert roles["implementer"] == ORGANISATION.name
    # The head: byte for byte, inode for inode, mode for mode what it was, and still valid.
    assert snapshot(head) == before
    bagit.Bag(str(head)).validate()
    assert "versions.json" not in {p.name for p in (head / "metadata").iterdir()}


def test_a_rebuilt_record_does_not_redate_the_first_version(head: Path, tmp_path: Path) -> None:
    """Without the previous record, PREMIS is rebuilt from the bag: the first version's events
    keep their times (from versions.json and the bag's files), whatever today is."""
    new = revise(
        head, tmp_path, catalogue_entry(head, year=2009), "CIFA", ORGANISATION,
        agent="Archivist", created="2030-01-01T00:00:00Z",
    )  # fmt: skip
    rebuilt = build_premis(new, ORGANISATION).getroot()
    dated = [
        (e.findtext(f"{P}eventType"), e.findtext(f"{P}eventDateTime") or "")
        for e in rebuilt.iter(f"{P}event")
    ]
    original = [(e["type"], e["date"]) for e in events(head)]
    assert len(dated) == len(original) + 1
    for (kind, date), (was_kind, was_date) in zip(dated, original, strict=False):
        assert kind == was_kind and instant(date) == instant(was_date), (kind, date, was_date)
    assert dated[-1] == ("metadata modification", "2030-01-01T00:00:00Z")


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_withdrawal_is_a_permission_change_without_grants(head: Path, tmp_path: Path) -> None:
    withdrawn = catalogue_entry(head, permission={**ENTRY["permission"], "status": "withdrawn"})
    assert not withdrawn.access_permitted and not withdrawn.is_permitted
    new = revise(
        head, tmp_path, withdrawn, "CIFA", ORGANISATION,
        agent="Head of collections", created="2030-12-01T09:30:00Z",
    )  # fmt: skip
    assert_valid_version(new)
    permission = json.loads((new / "metadata/permission.json").read_text("utf-8"))
    assert permission["status"] == PermissionStatus.WITHDRAWN
    assert permission["granted_by"] == GRANTOR  # the full record stays in the bag
    [_, v2] = read_versions(new)
    assert v2.change is VersionChange.PERMISSION_CHANGE
    assert v2.fields == ("permission.status",)
    assert v2.message == 'permission status: "granted" → "withdrawn"'
    statement = rights(new)
    assert list(statement.iter(f"{P}rightsGranted")) == []
    notes = [n.text or "" for n in statement.iter(f"{P}licenseNote")]
    assert any("withdrawn" in n and "2030-12-01T09:30:00Z" in n for n in notes), notes
    assert statement.findtext(f".//{P}licenseApplicableDates/{P}endDate") == "2030-12-01"
    last = events(new)[-1]
    assert last["type"] == "metadata modification"  # LoC has no term for a rights change
    assert "rights:" in last["detail"] and "withdrawn" in last["detail"]
    assert "Permission withdrawn" in dublin_core(new)[("rights", "en")][0]


def test_a_narrowed_permission_grants_only_what_it_still_covers(head: Path, tmp_path: Path) -> None:
    narrowed = catalogue_entry(head, permission={**ENTRY["permission"], "covers": ["preservation"]})
    assert catalogue_entry(head).access_permitted
    assert not narrowed.access_permitted and narrowed.is_permitted
    research = catalogue_entry(
        head, permission={**ENTRY["permission"], "covers": ["preservation", "research"]}
    )
    assert not research.access_permitted
    new = revise(head, tmp_path, narrowed, "CIFA", ORGANISATION, agent="Archivist")
    assert_valid_version(new)
    acts = [g.findtext(f"{P}act") for g in rights(new).iter(f"{P}rightsGranted")]
    assert acts == ["preserve"]
    [_, v2] = read_versions(new)
    assert v2.change is VersionChange.PERMISSION_CHANGE
    assert v2.message == 'permission covers: ["preservation", "access"] → ["preservation"]'


def test_personal_details_never_reach_the_history(head: Path, tmp_path: Path) -> None:
    changed = catalogue_entry(
        head,
        permission={**ENTRY["permission"], "granted_by": "Another Person", "basis": "A letter"},
    )
    new = revise(head, tmp_path, changed, "CIFA", ORGANISATION, agent="Archivist")
    text = (new / "metadata/versions.json").read_text("utf-8")
    for detail in (GRANTOR, BASIS, "Another Person", "A letter"):
        assert detail not in text
    [_, v2] = read_versions(new)
    assert v2.message == "permission basis changed; permission granted_by changed"
    # The bag itself has the full record, and PREMIS names the new grantor.
    assert "Another Person" in (new / "metadata/permission.json").read_text("utf-8")
    assert "Another Person" in (new / "metadata/premis.xml").read_text("utf-8")
    # A message that would carry one is refused.
    with pytest.raises(RevisionRefused, match="personal details"):
        revise(
            head, tmp_path / "again", changed, "CIFA", ORGANISATION,
            agent="Archivist", message=f"now granted by Another Person, was {GRANTOR}",
        )  # fmt: skip


def test_no_difference_is_refused_and_leaves_nothing(head: Path, tmp_path: Path) -> None:
    with pytest.raises(RevisionRefused, match="nothing to revise"):
        revise(head, tmp_path, catalogue_entry(head), "CIFA", ORGANISATION, agent="Archivist")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RevisionRefused, match="not yet supported"):
        revise(
            head, tmp_path, catalogue_entry(head, year=2008), "CIFA", ORGANISATION,
            agent="Archivist", change=VersionChange.CAPTURE,
        )  # fmt: skip
    with pytest.raises(RevisionRefused, match="permission change"):
        revise(
            head, tmp_path, catalogue_entry(head, permission={**ENTRY["permission"],
            "covers": ["preservation"]}), "CIFA", ORGANISATION, agent="Archivist",
            change=VersionChange.METADATA_MODIFICATION,
        )  # fmt: skip
    with pytest.raises(RevisionRefused, match="before version 1"):
        revise(
            head, tmp_path, catalogue_entry(head, year=2008), "CIFA", ORGANISATION,
            agent="Archivist", created="2001-01-01T00:00:00Z",
        )  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_third_version_keeps_the_second_event_once(head: Path, tmp_path: Path) -> None:
    corrected = catalogue_entry(head, title={"en": ENTRY["title"]["en"], "zh": "和鳳鳴"})
    v2 = revise(
        head, tmp_path, corrected, "CIFA", ORGANISATION,
        agent="Archivist", created="2030-11-28T10:00:00Z",
    )  # fmt: skip
    v2_snapshot = snapshot(v2)
    withdrawn = corrected.model_copy(
        update={
            "permission": corrected.permission.model_copy(
                update={"status": PermissionStatus.WITHDRAWN}
            )
        }
    )
    v3 = revise(
        v2, tmp_path, withdrawn, "CIFA", ORGANISATION,
        agent="Head of collections", created="2030-11-29T10:00:00Z",
    )  # fmt: skip
    assert v3.name == "cifa-rev-0001.v3"
    assert_valid_version(v3)
    assert snapshot(v2) == v2_snapshot
    assert [v.change for v in read_versions(v3)] == [
        VersionChange.INGESTION,
        VersionChange.METADATA_MODIFICATION,
        VersionChange.PERMISSION_CHANGE,
    ]
    found = events(v3)
    assert found[: len(events(v2))] == events(v2)
    assert [e["id"] for e in found].count(version_event_identifier("cifa-rev-0001", 2)) == 1
    assert found[-1]["date"] == "2030-11-29T10:00:00Z"
    assert "2030-11-29T10:00:00Z" in "".join(
        n.text or "" for n in rights(v3).iter(f"{P}licenseNote")
    )


def test_across_file_systems_files_are_copied_and_the_log_says_so(
    head: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_link(*_args: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(revise_module.os, "link", no_link)
    caplog.set_level(logging.WARNING, logger="cifa_ingest.bag.revise")
    new = revise(head, tmp_path, catalogue_entry(head, year=2008), "CIFA", ORGANISATION,
                 agent="Archivist")  # fmt: skip
    bagit.Bag(str(new)).validate()
    assert "copied, not linked" in caplog.text
    master = next((new / "data" / "master").iterdir())
    assert master.stat().st_ino != (head / "data" / "master" / master.name).stat().st_ino


def test_a_bag_made_before_versions_json_is_version_1_at_its_ingestion(head: Path) -> None:
    assert recorded_versions(head) is None
    [v1] = read_versions(head)
    assert v1 == first_version(head)
    assert v1.change is VersionChange.INGESTION and v1.agent == ORGANISATION.name
    assert os.stat(head / "bag-info.txt").st_mode & 0o222 == 0  # placed read-only


def test_a_writable_head_is_not_written_through_its_links(head: Path, tmp_path: Path) -> None:
    """Read-only files would refuse a write through a link anyway (but not to root): with the
    head's files writable, every replaced file is still a new file, the head unchanged."""
    writable = tmp_path / "head" / head.name
    shutil.copytree(head, writable)
    for path in writable.rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    before = snapshot(writable)
    new = revise(
        writable, tmp_path / "staging", catalogue_entry(head, kind="documentary"), "CIFA",
        ORGANISATION, agent="Archivist",
    )  # fmt: skip
    assert snapshot(writable) == before
    bagit.Bag(str(writable)).validate()
    assert (new / "data").stat().st_ino != (writable / "data").stat().st_ino
    assert json.loads((new / "metadata/descriptive.json").read_text("utf-8"))["kind"] == (
        "documentary"
    )


def test_an_explicit_change_with_a_message_needs_no_catalogue_difference(
    head: Path, tmp_path: Path
) -> None:
    """The records re-written with nothing changed in the catalogue (a newer Dublin Core
    writer, say) is a version when asked for by name and with a reason."""
    new = revise(
        head, tmp_path, catalogue_entry(head), "CIFA", ORGANISATION, agent="Archivist",
        change=VersionChange.METADATA_MODIFICATION, message="records re-written\nby 0.2",
    )  # fmt: skip
    [_, v2] = read_versions(new)
    assert (v2.message, v2.fields) == ("records re-written by 0.2", ())
    assert_valid_version(new)


@pytest.mark.parametrize("agent", ["", "  ", "Two\nlines", "bidi \u202eevil"])
def test_a_version_needs_a_one_line_agent(head: Path, tmp_path: Path, agent: str) -> None:
    with pytest.raises(RevisionRefused, match="on the word of"):
        revise(head, tmp_path, catalogue_entry(head, year=2008), "CIFA", ORGANISATION, agent=agent)
    assert list(tmp_path.iterdir()) == []


def test_a_director_who_granted_permission_can_still_be_corrected(
    head: Path, tmp_path: Path
) -> None:
    """Filmmakers often grant permission themselves: a corrected director whose name is also the
    grantor's is a correction like any other (drift's message shows no permission detail)."""
    director = {"en": "Wu Wenguang (director)", "zh": "王兵"}
    new = revise(
        head, tmp_path, catalogue_entry(head, director=director), "CIFA", ORGANISATION,
        agent="Archivist",
    )  # fmt: skip
    [_, v2] = read_versions(new)
    assert v2.fields == ("descriptive.director.en",)


def test_the_reference_lists_every_change_and_every_key_of_versions_json(head: Path) -> None:
    page = (Path(__file__).parent.parent / "docs/reference/bags.md").read_text("utf-8")
    section = page.split("## Versions of a work", 1)[1].split("\n## ", 1)[0]
    tables = re.findall(r"\n\| (?:key|value) \|.*\n\| --- \|.*\n((?:\|.*\n)+)", section)
    keys, changes = ([re.match(r"\| `([^`]+)`", row).group(1) for row in t.splitlines()]
                     for t in tables)  # fmt: skip
    assert changes == [str(change) for change in VersionChange]
    assert keys == list(read_versions(head)[0].as_dict())
