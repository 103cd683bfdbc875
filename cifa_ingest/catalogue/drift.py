"""Where the catalogue and a preserved work's bag no longer agree (issue 18).

A work is preserved once, but its catalogue entry lives on: a Chinese title or a director's name
is corrected, a filmmaker narrows or withdraws permission. The bag keeps the records written when
it was made (``metadata/descriptive.json`` and ``metadata/permission.json``); this module says,
field by field, where the catalogue now says something else. Nothing here changes the archive:
a difference is what a new version of the work records (a PREMIS *metadata modification*, or a
rights change), and what an archivist is shown until then.

The comparison is of the records as the packager writes them (:func:`descriptive_record`,
:meth:`~cifa_ingest.catalogue.model.Permission.record`), so a field means the same on both sides.
Source addresses are left out: a changed address is a matter for a re-capture, which proves the
new bytes, not for a metadata fix (and the demo's server answers on a new port every run).

A permission record holds personal details (who granted it, on what basis, notes: see
:class:`~cifa_ingest.catalogue.model.Permission`). A difference in them is reported by its field
only, with both values :data:`~cifa_ingest.catalogue.model.WITHHELD`, so that it can go to a log,
a report or Prefect's database; the bag's new version gets the full record from the catalogue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cifa_ingest.bag.package import descriptive_record
from cifa_ingest.catalogue.model import WITHHELD, Work

#: Fields of the descriptive record not compared: a changed address is a re-capture's business.
_NOT_COMPARED = frozenset({"sources"})
#: Fields of the permission record that may hold personal details (Permission's serialiser).
_PERSONAL = frozenset({"granted_by", "basis", "notes"})


class Record(StrEnum):
    """The bag's records a catalogue entry is compared with."""

    DESCRIPTIVE = "descriptive"  # metadata/descriptive.json
    PERMISSION = "permission"  # metadata/permission.json

    @property
    def file(self) -> str:
        return f"metadata/{self.value}.json"


@dataclass(frozen=True)
class Difference:
    """One field the catalogue now says otherwise than the bag: ``record`` and ``field`` (dotted:
    ``title.zh``), the bag's value and the catalogue's (None where one side has no such field;
    :data:`WITHHELD` for personal details)."""

    record: Record
    field: str
    preserved: Any
    catalogue: Any

    def __str__(self) -> str:
        if self.preserved == self.catalogue == WITHHELD:
            return f"{self.record} {self.field} changed"
        return (
            f"{self.record} {self.field}: {json.dumps(self.preserved, ensure_ascii=False)}"
            f" → {json.dumps(self.catalogue, ensure_ascii=False)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "field": self.field,
            "preserved": self.preserved,
            "catalogue": self.catalogue,
        }


class UnreadableRecord(ValueError):
    """A bag's record that is missing or not a JSON object: the comparison cannot be made."""


def _flat(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"title": {"zh": …}}`` as ``{"title.zh": …}``; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _read(bag_dir: Path, record: Record) -> dict[str, Any]:
    try:
        document = json.loads((bag_dir / record.file).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableRecord(f"{record.file} cannot be read: {exc}") from None
    if not isinstance(document, dict):
        raise UnreadableRecord(f"{record.file} is not a JSON object")
    return document


def _compare(
    record: Record, preserved: dict[str, Any], catalogue: dict[str, Any]
) -> list[Difference]:
    old, new = _flat(preserved), _flat(catalogue)
    found = []
    for field in sorted(old.keys() | new.keys()):
        if field.split(".")[0] in (_NOT_COMPARED if record is Record.DESCRIPTIVE else ()):
            continue
        if old.get(field) == new.get(field):
            continue
        if record is Record.PERMISSION and field in _PERSONAL:
            found.append(Difference(record, field, WITHHELD, WITHHELD))
        else:
            found.append(Difference(record, field, old.get(field), new.get(field)))
    return found


def differences(work: Work, collection: str | None, bag_dir: Path) -> list[Difference]:
    """Where ``work`` (as the catalogue ``collection`` now has it) differs from the records of
    its preserved bag ``bag_dir``; empty when they agree. Raises :class:`UnreadableRecord` when
    the bag's records cannot be read (an audit's business, not a catalogue change)."""
    return _compare(
        Record.DESCRIPTIVE,
        _read(bag_dir, Record.DESCRIPTIVE),
        descriptive_record(work, collection),
    ) + _compare(Record.PERMISSION, _read(bag_dir, Record.PERMISSION), work.permission.record())
