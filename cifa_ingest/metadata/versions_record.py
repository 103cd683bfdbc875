"""A bag's version history (``metadata/versions.json``): what each version of the work changed,
when, and on whose word (issue 18).

A work is preserved once and then lives on as versions: a corrected title, a narrowed or
withdrawn permission, later a re-capture or a new master. Every version is a complete bag, and
each carries the whole history of the work up to itself in this tag file, one entry per version:

* ``number``: 1, 2, …, as the versions of the work's OCFL object (``v1``, ``v2``, …);
* ``created``: when the version was made, RFC 3339 in UTC to the second (``2026-11-27T21:04:56Z``);
* ``change``: what kind of change made it, a :class:`VersionChange`;
* ``message``: one line saying what changed (``descriptive title.zh: "和凤鸣" → "和鳳鳴"``, the
  catalogue drift's own words), never a personal detail: a permission's ``granted_by``,
  ``basis`` and ``notes`` are named, never shown (:mod:`cifa_ingest.catalogue.drift`);
* ``agent``: on whose word the version was made: the operator's name, or a label the caller gives;
* ``fields``: the fields it changed, as ``record.field`` (``descriptive.title.zh``,
  ``permission.status``), empty for the first version.

PREMIS (``metadata/premis.xml``, :mod:`cifa_ingest.metadata.premis`) records one event per
version after the first, from this file.

**The change vocabulary.** The values are the Library of Congress preservation event types
(id.loc.gov/vocabulary/preservation/eventType) wherever one fits: ``ingestion`` (version 1),
``metadata modification`` (a corrected description), ``capture`` (a changed source fetched
again), ``migration`` (a new master by the current policy), ``deaccession`` (the content removed,
a tombstone kept). LoC has no term for a change of rights or permission: its nearest,
``policy assignment``, is the archive assigning its own policies to objects, not a rights
holder's decision, and ``metadata modification`` says the truth (the bag's rights records,
``permission.json`` and the PREMIS rights statement, are what changes) but would lose the
difference that matters most to an archivist: a version made because a filmmaker narrowed or
withdrew permission. So this file says ``permission change`` (our word, the one value not
LoC's), and PREMIS, which should speak LoC's vocabulary, records such a version as a
``metadata modification`` whose detail begins ``rights:`` (:attr:`VersionChange.event_type`).

**Bags made before.** A bag without the file is a history of one version: version 1,
``ingestion``, at the time of its PREMIS ``ingestion`` event (the packaging time), or, when
that cannot be read, midnight UTC of its ``Bagging-Date``; the agent is the organisation that
made the bag (``Source-Organization``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cifa_ingest.errors import PackagingError

#: The tag file, relative to the bag.
VERSIONS_FILE = "metadata/versions.json"
#: What the first version of a bag made before this file was says it was.
INGESTION_MESSAGE = "ingested: the work captured, normalised and packaged as a BagIt bag"
#: A message longer than this is cut (a changed synopsis may be 20,000 characters long).
MAX_MESSAGE = 2000

_PREMIS = "{http://www.loc.gov/premis/v3}"


class VersionChange(StrEnum):
    """What made a version of a work (the values: LoC preservation event types, but one)."""

    INGESTION = "ingestion"
    METADATA_MODIFICATION = "metadata modification"
    PERMISSION_CHANGE = "permission change"
    CAPTURE = "capture"
    MIGRATION = "migration"
    DEACCESSION = "deaccession"

    @property
    def event_type(self) -> str:
        """The PREMIS eventType (LoC term) of a version made by this change."""
        if self is VersionChange.PERMISSION_CHANGE:
            return VersionChange.METADATA_MODIFICATION.value
        return self.value


def rfc3339(moment: dt.datetime) -> str:
    """``2026-11-27T21:04:56Z``: UTC, to the second (as OCFL's inventories write ``created``)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r}: a version's time needs its time zone")
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 date-time with its offset (``Z`` or ``+08:00``), or ValueError."""
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", text):
        raise ValueError(f"{text!r} is not an RFC 3339 date-time with its offset")
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def one_line(text: str) -> str:
    """``text`` as one line of at most :data:`MAX_MESSAGE` characters (line breaks folded)."""
    folded = re.sub(r"\s+", " ", text).strip()
    return folded if len(folded) <= MAX_MESSAGE else folded[: MAX_MESSAGE - 1] + "…"


@dataclass(frozen=True)
class Version:
    """One entry of ``metadata/versions.json``."""

    number: int
    created: str
    change: VersionChange
    message: str
    agent: str
    fields: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "created": self.created,
            "change": str(self.change),
            "message": self.message,
            "agent": self.agent,
            "fields": list(self.fields),
        }

    @classmethod
    def from_dict(cls, entry: Any, where: str) -> Version:
        if not isinstance(entry, dict):
            raise PackagingError(f"{where}: not an object")
        try:
            number = entry["number"]
            if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                raise ValueError(f"number {number!r} is not a version number")
            created = str(entry["created"])
            parse_time(created)
            fields = entry.get("fields") or []
            if not isinstance(fields, list):
                raise ValueError("fields is not a list")
            return cls(
                number=number,
                created=created,
                change=VersionChange(entry["change"]),
                message=str(entry["message"]),
                agent=str(entry["agent"]),
                fields=tuple(str(name) for name in fields),
            )
        except (KeyError, ValueError) as exc:
            raise PackagingError(f"{where}: {exc}") from None


def recorded_versions(bag_dir: Path) -> list[Version] | None:
    """The versions ``metadata/versions.json`` lists, or None when the bag has no such file.
    A file that cannot be read, or whose versions are not 1, 2, … in time order, is a
    PackagingError: a history is not guessed over a damaged record."""
    path = bag_dir / VERSIONS_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PackagingError(f"{VERSIONS_FILE} cannot be read: {exc}") from None
    entries = document.get("versions") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise PackagingError(f"{VERSIONS_FILE}: no 'versions' list")
    versions = [
        Version.from_dict(entry, f"{VERSIONS_FILE} versions[{index}]")
        for index, entry in enumerate(entries)
    ]
    for index, version in enumerate(versions):
        if version.number != index + 1:
            raise PackagingError(f"{VERSIONS_FILE}: version {version.number} at place {index + 1}")
        if index and parse_time(version.created) < parse_time(versions[index - 1].created):
            raise PackagingError(
                f"{VERSIONS_FILE}: version {version.number} predates the one before"
            )
    return versions


def _ingestion_time(bag_dir: Path) -> str | None:
    """The time of the PREMIS ``ingestion`` event of a bag made before versions.json."""
    try:
        root = ET.parse(bag_dir / "metadata" / "premis.xml").getroot()
    except (OSError, ET.ParseError):
        return None
    for event in root.iter(f"{_PREMIS}event"):
        if event.findtext(f"{_PREMIS}eventType") == "ingestion":
            try:
                return rfc3339(parse_time(event.findtext(f"{_PREMIS}eventDateTime") or ""))
            except ValueError:
                return None
    return None


def _bag_info_field(bag_dir: Path, name: str) -> str | None:
    try:
        text = (bag_dir / "bag-info.txt").read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    match = re.search(rf"^{re.escape(name)}\s*:\s*(.*?)\s*$", text, re.MULTILINE)
    return match.group(1) if match else None


def first_version(bag_dir: Path) -> Version:
    """Version 1 of a bag made before versions.json: its ingestion, as the bag records it."""
    created = _ingestion_time(bag_dir)
    if created is None:
        date = _bag_info_field(bag_dir, "Bagging-Date") or ""
        if not re.fullmatch(r"\d{4}-\d\d-\d\d", date):
            raise PackagingError(
                f"{bag_dir.name}: neither a PREMIS ingestion event nor a Bagging-Date says when"
                " the bag was made"
            )
        created = f"{date}T00:00:00Z"
    agent = _bag_info_field(bag_dir, "Source-Organization") or "not recorded"
    return Version(1, created, VersionChange.INGESTION, INGESTION_MESSAGE, agent)


def read_versions(bag_dir: Path) -> list[Version]:
    """A bag's history: versions.json's entries, or for a bag made before it, its one version."""
    recorded = recorded_versions(bag_dir)
    return recorded if recorded is not None else [first_version(bag_dir)]


def versions_document(versions: list[Version]) -> dict[str, Any]:
    """versions.json's content."""
    return {"versions": [version.as_dict() for version in versions]}
