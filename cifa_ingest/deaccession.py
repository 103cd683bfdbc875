"""Deaccession: a work's content removed from the archive and from every storage location, on
someone's word and for a stated reason, leaving a tombstone (issue 18).

No version is ever changed or removed but by this. What it keeps is the record: the tombstone is
the work's bag with no film in it (``data/DEACCESSIONED.txt`` says so, for a person who opens
it), its descriptive and permission records as they were, ``metadata/versions.json`` one entry
more (``deaccession``), ``metadata/deaccession.json`` (what was removed, version by version, file
by file with its size and sha512; when, why and on whose word) and ``metadata/premis.xml`` with
every earlier object and event kept and one ``deaccession`` event more (LoC event type).

Why the object is rewritten. An OCFL object never loses a file: a version whose content is gone
is an invalid object (OCFL 1.1 §3.5.3, every manifest entry must exist). So the work's object
is replaced by a new one whose only version is the tombstone, built whole in staging and
exchanged with the old object in one step (``renameat2``); the old object, and with it the
content of every version, is then removed. The tombstone's records are the history.

The order, safe to kill at any instant: the tombstone bag and its new object are built and
validated in staging; a journal (``staging/<id>.deaccession.json``) names the tombstone; the
objects are exchanged; ``bags/<id>`` becomes the tombstone; the ledger vouches for it (no
payload files; the work's copies ``pending``); the old object and bag are removed; the journal
too. :func:`finish` rolls forward whatever a crash left, from the journal; without a journal,
what is in staging is debris.

Then every storage location: every object under ``bags/<id>/`` and ``versions/<id>/`` is
removed. An object held under Object Lock (COMPLIANCE retention) cannot be, and is not: the
report names how many and where, and the copy stays ``pending`` with that said; running the
deaccession again after the retention ends removes them. The next replication copies the
tombstone to every location.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifa_ingest.archive.layout import Archive, exchange, fsync_dir, write_atomically
from cifa_ingest.archive.ledger import CopyState, Ledger
from cifa_ingest.bag import write as bagwrite
from cifa_ingest.bag.package import SOFTWARE_AGENT, validate_bag
from cifa_ingest.bag.revise import json_bytes, read_bag_info
from cifa_ingest.bag.write import tag_value
from cifa_ingest.config import Settings
from cifa_ingest.errors import ArchiveStateError, InputError
from cifa_ingest.metadata.versions_record import (
    VERSIONS_FILE,
    Version,
    VersionChange,
    read_versions,
    rfc3339,
    versions_document,
)
from cifa_ingest.revision import (
    placement_slot,
    reconcile,
    record_head,
    tag_manifest_digests,
    version_of_bag,
    version_user,
)
from cifa_ingest.storage import versions_copy
from cifa_ingest.storage.locations import FilesystemLocation, S3Location
from cifa_ingest.storage.store import LocationUnreachable
from cifa_ingest.storage.stores import open_store
from cifa_ingest.versions import StorageRoot, add_version
from cifa_ingest.versions.content import discard
from cifa_ingest.versions.export import DEACCESSION_RECORD, link_version
from cifa_ingest.versions.history import read_object

log = logging.getLogger(__name__)

RECORD = DEACCESSION_RECORD
NOTE = "data/DEACCESSIONED.txt"
#: The records a tombstone keeps from the bag it replaces (the rest described the content).
KEPT = ("metadata/descriptive.json", "metadata/descriptive.xml", "metadata/permission.json")
_PREMIS = "http://www.loc.gov/premis/v3"
_P = f"{{{_PREMIS}}}"


class DeaccessionRefused(InputError):
    """A deaccession that must not be made: no reason, no name, a work not preserved."""


@dataclass
class LocationRemoval:
    """What the deaccession did at one storage location."""

    location: str
    removed: int = 0
    #: Objects held under Object Lock: not removed (their keys).
    locked: list[str] = field(default_factory=list)
    #: Why the location could not be reached (nothing was removed there), or None.
    unreachable: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "removed": self.removed,
            "locked": len(self.locked),
            "unreachable": self.unreachable,
        }


@dataclass
class DeaccessionReport:
    work_id: str
    version: int
    files_removed: int
    bytes_removed: int
    locations: list[LocationRemoval]
    #: The content was removed here by an earlier run: this one only went to the locations.
    earlier: bool = False

    @property
    def ok(self) -> bool:
        return all(not loc.locked and loc.unreachable is None for loc in self.locations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "version": self.version,
            "files_removed": self.files_removed,
            "bytes_removed": self.bytes_removed,
            "locations": [loc.as_dict() for loc in self.locations],
            "ok": self.ok,
        }


def _journal(archive: Archive, work_id: str) -> Path:
    return archive.staging_dir / f"{work_id}.deaccession.json"


def _tombstone_root(archive: Archive, work_id: str) -> Path:
    return archive.staging_dir / f"{work_id}.tombstone-root"


def _tombstone_bag(archive: Archive, work_id: str) -> Path:
    return archive.staging_dir / f"{work_id}.tombstone"


def is_tombstone(bag_dir: Path) -> bool:
    """Whether the bag is a deaccessioned work's tombstone."""
    return read_versions(bag_dir)[-1].change is VersionChange.DEACCESSION


def _premis_with_event(previous: bytes, when: str, reason: str, agent: str, org: str) -> bytes:
    """The head's PREMIS with one ``deaccession`` event more, after the last event: every
    object, event and agent it had is kept (they are the record of what was removed)."""
    ET.register_namespace("premis", _PREMIS)
    ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    root = ET.fromstring(previous)
    children = list(root)
    events = [i for i, child in enumerate(children) if child.tag == f"{_P}event"]
    objects = [i for i, child in enumerate(children) if child.tag == f"{_P}object"]
    at = (events or objects or [-1])[-1] + 1
    event = ET.Element(f"{_P}event")
    ident = ET.SubElement(event, f"{_P}eventIdentifier")
    ET.SubElement(ident, f"{_P}eventIdentifierType").text = "UUID"
    ET.SubElement(ident, f"{_P}eventIdentifierValue").text = str(uuid.uuid4())
    ET.SubElement(event, f"{_P}eventType").text = "deaccession"
    ET.SubElement(event, f"{_P}eventDateTime").text = when
    detail = ET.SubElement(event, f"{_P}eventDetailInformation")
    ET.SubElement(detail, f"{_P}eventDetail").text = (
        f"the content of every version removed, on the word of {agent}: {reason}"
        f" (what was removed: {RECORD})"
    )
    outcome = ET.SubElement(event, f"{_P}eventOutcomeInformation")
    ET.SubElement(outcome, f"{_P}eventOutcome").text = "success"
    for value, role in ((SOFTWARE_AGENT, "executing program"), (org, "implementer")):
        link = ET.SubElement(event, f"{_P}linkingAgentIdentifier")
        ET.SubElement(link, f"{_P}linkingAgentIdentifierType").text = "local"
        ET.SubElement(link, f"{_P}linkingAgentIdentifierValue").text = value
        ET.SubElement(link, f"{_P}linkingAgentRole").text = role
    root.insert(at, event)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _removed_record(archive: Archive, work_id: str) -> tuple[list[dict[str, Any]], int, int]:
    """Every version of the object and its files (path, size, sha512): what is removed."""
    obj, inventory = read_object(StorageRoot(archive.objects_dir), work_id)
    versions = []
    sizes: dict[str, int] = {}
    for number in range(1, inventory.head + 1):
        files = []
        for path, digest in sorted(inventory.state(number).items()):
            if digest not in sizes:
                sizes[digest] = obj.content_file(inventory.content_path(digest)).stat().st_size
            files.append({"path": path, "size": sizes[digest], "sha512": digest})
        versions.append({"ocfl_version": number, "files": files})
    return versions, len(sizes), sum(sizes.values())


def _build_tombstone(
    archive: Archive, work_id: str, settings: Settings, reason: str, agent: str
) -> tuple[Path, int, int, int]:
    """The tombstone bag, validated, in staging; its number, and the files and bytes removed."""
    head_bag = archive.bag_path(work_id)
    history = read_versions(head_bag)
    when = rfc3339(dt.datetime.now(dt.UTC))
    version = Version(
        number=history[-1].number + 1,
        created=when,
        change=VersionChange.DEACCESSION,
        message=reason,
        agent=agent,
    )
    removed, files, size = _removed_record(archive, work_id)
    target = _tombstone_bag(archive, work_id)
    discard(target)
    target.mkdir(parents=True)
    (target / Path(NOTE).name).write_text(
        f"The content of {work_id} was removed from the archive on {when[:10]}"
        f" (deaccession, version {version.number}), on the word of {agent}.\n"
        f"Why: {reason}\nWhat was removed, file by file: {RECORD}\n",
        "utf-8",
    )
    # The head's bag-info fields, but those of the payload and the bagging: the bag writer's.
    info = {
        name: value
        for name, value in read_bag_info(head_bag).items()
        if name not in ("Payload-Oxum", "Bag-Size", "Bagging-Date", "Bag-Software-Agent")
    }
    bagwrite.make_bag_in_place(target, {"Bagging-Date": when[:10], **info})
    (target / "metadata").mkdir()
    for name in KEPT:
        if (head_bag / name).is_file():
            shutil.copyfile(head_bag / name, target / name)
    record = {
        "id": work_id,
        "version": version.number,
        "when": when,
        "reason": reason,
        "agent": agent,
        "organisation": settings.organisation.name,
        "files_removed": files,
        "bytes_removed": size,
        "locations": [location.name for location in settings.storage.locations],
        "removed": removed,
    }
    (target / RECORD).write_bytes(json_bytes(record))
    (target / VERSIONS_FILE).write_bytes(json_bytes(versions_document([*history, version])))
    premis = head_bag / "metadata" / "premis.xml"
    (target / "metadata" / "premis.xml").write_bytes(
        _premis_with_event(premis.read_bytes(), when, reason, agent, settings.organisation.name)
    )
    bagwrite.write_tag_manifests(target)  # again: over the records added since
    validate_bag(target)
    return target, version.number, files, size


def _write_journal(archive: Archive, work_id: str, tombstone: Path) -> None:
    journal = {"tagmanifests": tag_manifest_digests(tombstone)}
    write_atomically(_journal(archive, work_id), json.dumps(journal).encode("utf-8"), mode=0o600)


def _roll_forward(archive: Archive, ledger: Ledger, work_id: str) -> None:
    """From the journal on: the objects exchanged (where not yet), ``bags/<id>`` the tombstone,
    the ledger vouching for it, the old object and bag removed, the journal too."""
    journal = json.loads(_journal(archive, work_id).read_text("utf-8"))
    wanted = journal["tagmanifests"]
    store = StorageRoot(archive.objects_dir)
    aside = archive.staging_dir / f"{work_id}.object-replaced"
    if not store.object_path(work_id).exists() and aside.is_dir():
        os.rename(aside, store.object_path(work_id))  # killed between two renames: put back
    _obj, inventory = read_object(store, work_id)
    if {name: inventory.state().get(name) for name in wanted} != wanted:
        staged = StorageRoot(_tombstone_root(archive, work_id))
        _obj, tomb = read_object(staged, work_id)
        if {name: tomb.state().get(name) for name in wanted} != wanted:
            raise ArchiveStateError(f"{work_id}: the deaccession's journal names no object")
        if not exchange(store.object_path(work_id), staged.object_path(work_id)):
            os.rename(store.object_path(work_id), aside)
            os.rename(staged.object_path(work_id), store.object_path(work_id))
            os.rename(aside, staged.object_path(work_id))
        fsync_dir(archive.objects_dir)
    _obj, inventory = read_object(store, work_id)
    bag = archive.bag_path(work_id)
    if not bag.is_dir() or version_of_bag(bag, inventory) != inventory.head:
        tombstone = _tombstone_bag(archive, work_id)
        if not tombstone.is_dir() or version_of_bag(tombstone, inventory) != inventory.head:
            discard(tombstone)
            tombstone = link_version(store, work_id, None, tombstone)
        archive.replace_bag(tombstone, work_id)
    record = ledger.bag(work_id)
    if record is not None:
        record_head(ledger, record, bag, read_versions(bag)[-1].number)
    for debris in (
        _tombstone_root(archive, work_id),
        _tombstone_bag(archive, work_id),
        aside,
        archive.partials_dir / work_id,  # a failed fetch's partial downloads of the work
    ):
        discard(debris)
    _journal(archive, work_id).unlink(missing_ok=True)
    fsync_dir(archive.staging_dir)


def finish(archive: Archive, ledger: Ledger, work_id: str) -> bool:
    """Finish a deaccession a crash interrupted (from its journal), or clear what one left
    before its journal (debris); True when one was finished."""
    if _journal(archive, work_id).is_file():
        _roll_forward(archive, ledger, work_id)
        log.warning("%s: an interrupted deaccession finished", work_id)
        return True
    for debris in (_tombstone_root(archive, work_id), _tombstone_bag(archive, work_id)):
        discard(debris)
    return False


def _remove_at_locations(
    archive: Archive,
    ledger: Ledger,
    work_id: str,
    locations: list[FilesystemLocation | S3Location],
) -> list[LocationRemoval]:
    """Every object under ``bags/<id>/`` and ``versions/<id>/`` (the work's bag and its
    versions, :mod:`cifa_ingest.storage.versions_copy`) removed from every location that
    answers, but those Object Lock holds; the copy's ledger row says what is left."""
    done = []
    for location in locations:
        result = LocationRemoval(location.name)
        try:
            store = open_store(location)
            store.check()
            for prefix in (f"bags/{work_id}/", versions_copy.object_prefix(work_id)):
                removed, held = store.purge(prefix)
                result.removed += removed
                result.locked.extend(held)
        except LocationUnreachable as exc:
            result.unreachable = str(exc)
        if result.locked or result.unreachable:
            why = (
                f"{len(result.locked)} object(s) of the deaccessioned work held under Object"
                " Lock: removed once their retention ends (run cifa deaccession again)"
                if result.locked
                else "unreachable during the deaccession: run cifa deaccession again"
            )
            ledger.record_copy(work_id, location.name, CopyState.PENDING, software=SOFTWARE_AGENT,
                               detail=why)  # fmt: skip
        elif ledger.copy(work_id, location.name) is not None:
            ledger.record_copy(
                work_id, location.name, CopyState.PENDING, software=SOFTWARE_AGENT,
                detail="deaccessioned: its content removed; the tombstone is to be copied",
            )  # fmt: skip
        done.append(result)
    return done


def deaccession(
    archive: Archive, work_id: str, settings: Settings, *, reason: str, agent: str
) -> DeaccessionReport:
    """Remove the content of every version of ``work_id`` from the archive and from every
    storage location of ``settings`` (but what Object Lock holds), leaving the tombstone (the
    module says what it keeps, and in what order). Safe to run again: a work already a
    tombstone only has its locations visited again. Raises DeaccessionRefused for bad input,
    CifaError where the archive cannot be changed (nothing is then half-done)."""
    reason, agent = (reason or "").strip(), (agent or "").strip()
    for label, text in (("reason", reason), ("agent", agent)):
        if not text or tag_value(text) != text:
            raise DeaccessionRefused(
                f"--{label}: one line, no control characters, at most 1000 characters"
            )
    ledger = Ledger(archive.ledger_path)
    if ledger.bag(work_id) is None:
        raise DeaccessionRefused(f"{work_id}: not preserved in {archive.root}")
    store = StorageRoot(archive.objects_dir)
    with placement_slot(archive, settings).hold(work_id):
        finish(archive, ledger, work_id)
        if not store.object_path(work_id).is_dir():
            raise DeaccessionRefused(
                f"{work_id}: no versions recorded yet; run an ingest first (it records them)"
            )
        reconcile(archive, ledger, work_id)
        bag = archive.bag_path(work_id)
        earlier = bag.is_dir() and is_tombstone(bag)
        if earlier:
            record = json.loads((bag / RECORD).read_text("utf-8"))
            number, files, size = (
                record["version"],
                record["files_removed"],
                record["bytes_removed"],
            )
        else:
            tombstone, number, files, size = _build_tombstone(
                archive, work_id, settings, reason, agent
            )
            staged = StorageRoot(_tombstone_root(archive, work_id))
            discard(staged.path)
            try:
                add_version(
                    staged,
                    work_id,
                    tombstone,
                    message=f"deaccession: {reason}",
                    user=version_user(settings, agent),
                    staging_dir=archive.staging_dir,
                    link=True,
                )
            except BaseException:
                finish(archive, ledger, work_id)
                raise
            _write_journal(archive, work_id, tombstone)
            _roll_forward(archive, ledger, work_id)
            log.info("%s: deaccessioned (version %d): %s", work_id, number, reason)
    with archive.exclusive("replicate"):
        locations = _remove_at_locations(archive, ledger, work_id, list(settings.storage.locations))
    return DeaccessionReport(work_id, number, files, size, locations, earlier)
