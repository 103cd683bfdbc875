"""One work's OCFL object (https://ocfl.io/1.1/spec/#object-spec): ``objects/<work id>/``.

Layout::

    objects/cifa-0001/0=ocfl_object_1.1       the object's declaration
    objects/cifa-0001/inventory.json          the head version's inventory, and its digest file:
    objects/cifa-0001/inventory.json.sha512   copies of the newest version's own
    objects/cifa-0001/v1/inventory.json       each version: its inventory as made then, its
    objects/cifa-0001/v1/inventory.json.sha512  digest file, and in content/ only the files
    objects/cifa-0001/v1/content/…            that no earlier version had

A version's folder is made whole in staging and renamed into place at once
(:mod:`cifa_ingest.versions.new_version`); the root inventory is then replaced by the version's
copy. So a version folder, once there, is complete, and the root inventory can only lag behind
it, never run ahead: the recovery (:mod:`cifa_ingest.versions.recovery`) brings it forward.
"""

from __future__ import annotations

from pathlib import Path

from cifa_ingest.errors import ObjectDamaged
from cifa_ingest.versions.inventory import (
    INVENTORY,
    SIDECAR,
    Inventory,
    check_sidecar,
    version_name,
    version_number,
)
from cifa_ingest.versions.storage_root import OBJECT_DECLARATION, StorageRoot


class OcflObject:
    """The object of ``work_id`` in ``root`` (which may not exist yet)."""

    def __init__(self, root: StorageRoot, work_id: str) -> None:
        self.root = root
        self.id = work_id
        self.path = root.object_path(work_id)

    def exists(self) -> bool:
        """Whether the object is there: its folder (only ever renamed into place whole)."""
        return self.path.exists()

    def version_numbers(self) -> list[int]:
        """The numbers of the version folders present, sorted."""
        numbers = []
        for entry in self.path.iterdir():
            number = version_number(entry.name)
            if number is not None and entry.is_dir():
                numbers.append(number)
        return sorted(numbers)

    def version_path(self, number: int) -> Path:
        return self.path / version_name(number)

    def read_inventory_files(self, folder: Path) -> tuple[bytes, bytes]:
        """The inventory in ``folder`` (the object's, or a version's) and its digest file,
        checked against each other, or ObjectDamaged."""
        where = folder.relative_to(self.root.path).as_posix()
        try:
            data = (folder / INVENTORY).read_bytes()
            recorded = (folder / SIDECAR).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectDamaged(f"{where}: {Path(exc.filename).name} is missing") from None
        check_sidecar(data, recorded, where)
        return data, recorded

    def inventory(self, folder: Path | None = None) -> Inventory:
        """The inventory in ``folder`` (the object's by default), its digest checked, and its
        id this object's."""
        folder = folder or self.path
        if not (self.path / OBJECT_DECLARATION).is_file():
            raise ObjectDamaged(f"{self.id}: {OBJECT_DECLARATION} is missing")
        data, _recorded = self.read_inventory_files(folder)
        where = folder.relative_to(self.root.path).as_posix()
        inventory = Inventory.from_bytes(data, where)
        if inventory.id != self.id:
            raise ObjectDamaged(f"{where}/{INVENTORY}: the inventory of {inventory.id!r}")
        return inventory

    def content_file(self, content_path: str) -> Path:
        """A content path of the manifest as a file of this object."""
        return self.path / content_path
