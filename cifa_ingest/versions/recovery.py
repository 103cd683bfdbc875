"""Recovery: what a crash can leave of a version being made, put right before any read or write.

A version is made in staging and renamed into the object at once; only then is the object's root
inventory replaced by the new version's copy (:mod:`cifa_ingest.versions.new_version`). A crash
(power cut, SIGKILL) can therefore leave, besides debris in staging:

* nothing of the new version in the object: the object is at its previous version;
* the new version's folder in place and the root inventory still the previous one, or replaced
  but not its digest file: the version is complete (its folder was renamed whole, after it was
  flushed), so the recovery *rolls forward*: it checks the folder's inventory against its digest
  file and puts both at the root, each atomically.

Never in between: the object is at its previous version or complete at the new one. Every reader
and writer of an object runs this first, holding the object's lock, so nothing ever reads an
object mid-change, and re-running an interrupted add is always safe. What cannot be explained by
a crash (a version folder missing between others, a version's inventory that does not match its
digest file) is damage, not debris: ObjectDamaged, and nothing is changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifa_ingest.errors import ObjectDamaged
from cifa_ingest.versions.content import discard
from cifa_ingest.versions.inventory import INVENTORY, SIDECAR, Inventory, version_name
from cifa_ingest.versions.object import OcflObject
from cifa_ingest.versions.storage_root import StorageRoot, replace_file


@dataclass(frozen=True)
class Recovery:
    """What the recovery did: the version whose inventory it put at the object's root (None: the
    root was right), and the debris it removed."""

    rolled_forward: int | None
    removed: tuple[str, ...]


def staging_name(work_id: str, number: int) -> str:
    """The staging folder of a work's version being made: ``<id>.ocfl-v<N>``. The dot keeps it
    apart from the ingest's own ``staging/<id>/`` (a work id has no dot)."""
    return f"{work_id}.ocfl-{version_name(number)}"


def roll_forward(obj: OcflObject) -> int | None:
    """Put the newest version's inventory and digest file at the object's root if they are not
    there already (a crash between a version's placement and the root's update); the version's
    number if it did. The object's lock must be held."""
    numbers = obj.version_numbers()
    if numbers != list(range(1, len(numbers) + 1)):
        found = ", ".join(version_name(n) for n in numbers) or "none"
        raise ObjectDamaged(f"{obj.id}: version folders {found}, not v1 to the newest")
    head = numbers[-1]
    data, recorded = obj.read_inventory_files(obj.version_path(head))
    inventory = Inventory.from_bytes(data, f"{obj.id}/{version_name(head)}")
    if inventory.id != obj.id or inventory.head != head:
        raise ObjectDamaged(
            f"{obj.id}/{version_name(head)}/{INVENTORY}: the inventory of"
            f" {inventory.id} {version_name(inventory.head)}"
        )
    root_files = [obj.path / INVENTORY, obj.path / SIDECAR]
    if [_read(p) for p in root_files] == [data, recorded]:
        return None
    prefix = obj.root.temporary_prefix(obj.id)
    # The inventory first, then its digest file: a crash between them leaves a root that the
    # next recovery finds different from the version's again, and completes.
    replace_file(root_files[0], data, obj.root.path, prefix)
    replace_file(root_files[1], recorded, obj.root.path, prefix)
    return head


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def recover_locked(root: StorageRoot, work_id: str, staging_dir: Path | None) -> Recovery:
    """:func:`recover` for a caller that holds the object's lock."""
    removed = []
    for debris in sorted(root.path.glob(f"{root.temporary_prefix(work_id)}*.tmp")):
        debris.unlink(missing_ok=True)
        removed.append(str(debris))
    if staging_dir is not None and staging_dir.is_dir():
        for debris in sorted(staging_dir.glob(f"{work_id}.ocfl-v*")):
            discard(debris)
            removed.append(str(debris))
    obj = OcflObject(root, work_id)
    rolled = roll_forward(obj) if obj.exists() else None
    return Recovery(rolled, tuple(removed))


def recover(
    root: StorageRoot | Path | str, work_id: str, staging_dir: Path | str | None = None
) -> Recovery:
    """Bring a work's object to a whole version after a crash: roll the root inventory forward
    to a version placed but not yet recorded there, and remove the temporary files of an
    interrupted replacement and, given the staging folder, the staging debris of a version that
    was never placed. Safe to run at any time, any number of times."""
    store = root if isinstance(root, StorageRoot) else StorageRoot(root)
    if not store.declared:  # no storage root: nothing to recover, and nothing is created
        return Recovery(None, ())
    with store.locked(work_id):
        return recover_locked(store, work_id, None if staging_dir is None else Path(staging_dir))
