"""A work's versions as people read them: when, why, who, what changed, what it cost to keep.

Read from the object's inventory only (after the recovery, under the object's lock): the inventory
records every version's files by digest, so what a version added, changed or removed is the
difference between its state and the one before; what it stored is what its ``content/`` holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cifa_ingest.errors import NoSuchVersion, ObjectDamaged
from cifa_ingest.versions.inventory import Inventory, User, version_name
from cifa_ingest.versions.object import OcflObject
from cifa_ingest.versions.recovery import recover_locked
from cifa_ingest.versions.storage_root import StorageRoot


@dataclass(frozen=True)
class VersionInfo:
    """One version of a work. ``added``, ``changed``, ``removed``: logical paths (paths in the
    bag) against the version before; ``stored_files`` and ``stored_bytes``: what this version
    put in the object (files no earlier version had), the rest being named, not stored again."""

    work_id: str
    number: int
    created: dt.datetime
    message: str
    user: User
    files: int
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    stored_files: int
    stored_bytes: int


def describe(obj: OcflObject, inventory: Inventory, number: int) -> VersionInfo:
    """Version ``number`` of ``inventory`` (the object's)."""
    block = inventory.versions[number]
    state = inventory.state(number)
    before = inventory.state(number - 1) if number > 1 else {}
    prefix = f"{version_name(number)}/"
    stored = [p for paths in inventory.manifest.values() for p in paths if p.startswith(prefix)]
    try:
        stored_bytes = sum(obj.content_file(p).stat().st_size for p in stored)
    except FileNotFoundError as exc:
        raise ObjectDamaged(f"{obj.id}: {exc.filename} is missing") from None
    return VersionInfo(
        work_id=obj.id,
        number=number,
        created=dt.datetime.fromisoformat(block.created),
        message=block.message,
        user=block.user,
        files=len(state),
        added=tuple(sorted(state.keys() - before.keys())),
        changed=tuple(sorted(p for p in state.keys() & before.keys() if state[p] != before[p])),
        removed=tuple(sorted(before.keys() - state.keys())),
        stored_files=len(stored),
        stored_bytes=stored_bytes,
    )


def read_object(root: StorageRoot | Path | str, work_id: str) -> tuple[OcflObject, Inventory]:
    """A work's object and its inventory for a reader: the storage root must exist, the object
    is recovered first (under its lock), and one that does not exist is NoSuchVersion."""
    store = root if isinstance(root, StorageRoot) else StorageRoot(root)
    store.existing()
    obj = OcflObject(store, work_id)
    with store.locked(work_id):
        recover_locked(store, work_id, None)
        if not obj.exists():
            raise NoSuchVersion(f"{work_id}: no versions of this work in {store.path}")
        return obj, obj.inventory()


def checked_number(inventory: Inventory, version: int | None) -> int:
    """``version`` if the object has it, the head for None; else NoSuchVersion saying which
    versions there are."""
    number = inventory.head if version is None else version
    if isinstance(number, bool) or not isinstance(number, int) or number not in inventory.versions:
        raise NoSuchVersion(
            f"{inventory.id} has no version {version!r}: its versions are v1 to"
            f" {version_name(inventory.head)}"
        )
    return number


def versions(root: StorageRoot | Path | str, work_id: str) -> list[VersionInfo]:
    """Every version of a work, oldest first."""
    obj, inventory = read_object(root, work_id)
    return [describe(obj, inventory, n) for n in sorted(inventory.versions)]


def logical_state(
    root: StorageRoot | Path | str, work_id: str, version: int | None = None
) -> dict[str, str]:
    """A version's files (the head's by default): each path in the bag with its sha512."""
    _obj, inventory = read_object(root, work_id)
    return inventory.state(checked_number(inventory, version))


def head(root: StorageRoot | Path | str, work_id: str) -> int | None:
    """The number of a work's newest version; None where the work has no object. An object's
    folder only ever appears whole, with one rename: where there is none there is no version,
    and nothing is locked or made to say so (not even a lock file for an id someone typed)."""
    store = root if isinstance(root, StorageRoot) else StorageRoot(root)
    if not store.declared or not store.object_path(work_id).is_dir():
        return None
    try:
        return read_object(store, work_id)[1].head
    except NoSuchVersion:
        return None
