"""Every version of a work at every storage location: the files of its OCFL object that its bag
does not hold.

Why it works as it does:

- **A location holds each work's newest bag, and beside it what the bag does not hold of the
  work's versions.** The bag (``bags/<id>/``) is what restore and recovery give back whole, and
  what a person without this program can check with any BagIt tool; the earlier versions' own
  files (an old master, an old descriptive record) are in the work's OCFL object
  (``ARCHIVE/objects/<id>/``, :mod:`cifa_ingest.versions`). So that every location holds every
  version, and no byte twice, a location also holds, under ``versions/<id>/``, every file of the
  object but those whose bytes are a file of the newest version: the object's declaration, every
  inventory (the object's and each version's, each with its digest file) and each stored content
  file whose sha512 the newest version does not list. The newest version *is* the bag, file for
  file, so ``bags/<id>/`` and ``versions/<id>/`` together give back the whole object
  (recovery rebuilds it so, :mod:`cifa_ingest.storage.recover`): a metadata fix costs the
  location kilobytes, as it costs the primary, and a work with one version costs it its
  inventories.
- **The ledger's chain decides, as for the bag.** The object's newest version must list exactly
  the bag's files, with the digests the ledger's chain gives them
  (:func:`cifa_ingest.storage.replicate.expected_digests`); each inventory must match its digest
  file; a content file takes its sha512 from the inventory's manifest and its sha256 from its
  fixity block. A primary whose object and bag disagree is :class:`SourceDamaged`: nothing of it
  is sent, and the primary's audit says what is wrong.
- **Written in an order that never looks complete early**: content first, then each version's
  inventory, then the object's inventory and its digest file, the declaration last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cifa_ingest.archive.layout import Archive
from cifa_ingest.errors import CifaError
from cifa_ingest.versions.history import read_object
from cifa_ingest.versions.inventory import (
    INVENTORY,
    SIDECAR,
    Inventory,
    version_name,
    version_number,
)
from cifa_ingest.versions.storage_root import OBJECT_DECLARATION, check_work_id

#: Where a location keeps the works' versions: ``versions/<work id>/<path in the object>``.
PREFIX = "versions/"


class ObjectNotCopyable(CifaError):
    """The primary's object of a work cannot say what its copies must be (absent, damaged, or
    not the bag the ledger vouches for)."""


@dataclass(frozen=True)
class ObjectFile:
    """One file a location holds of a work's object: its path in the object, its key at the
    location, its size and the digests the chain gives it (sha256 always, sha512 where the
    inventory gives it: a content file's; an inventory's digest file is checked instead)."""

    path: str
    key: str
    size: int
    digests: dict[str, str]

    @property
    def sha256(self) -> str:
        return self.digests["sha256"]


def object_key(work_id: str, path: str) -> str:
    """The key of a file of ``work_id``'s object at every location."""
    return f"{PREFIX}{work_id}/{path}"


def object_prefix(work_id: str) -> str:
    return f"{PREFIX}{work_id}/"


def source_path(archive: Archive, work_id: str, path: str) -> Path:
    """The primary's file of an :class:`ObjectFile`."""
    return archive.objects_dir / check_work_id(work_id) / PurePosixPath(path)


def object_files(
    archive: Archive, work_id: str, bag_digests: Mapping[str, Mapping[str, str]]
) -> list[ObjectFile]:
    """The files of ``work_id``'s object a location holds beside its bag (the module says
    which), in the order they are written, each with its digests. ``bag_digests``: every file
    of the work's bag with the digests the ledger's chain gives it
    (:func:`~cifa_ingest.storage.replicate.expected_digests`, sha256 and sha512). Raises
    :class:`ObjectNotCopyable` when the object is not there, does not read, or its newest
    version is not that bag."""
    try:
        obj, inventory = read_object(archive.objects_dir, work_id)
    except (CifaError, OSError) as exc:
        raise ObjectNotCopyable(f"{work_id}: its versions cannot be copied: {exc}") from None
    where = f"objects/{work_id}"
    differs = newest_differs(inventory, bag_digests)
    if differs is not None:
        raise ObjectNotCopyable(f"{where}: {differs}")
    files: list[ObjectFile] = []
    for content_path, digests in content_beside_the_bag(inventory):
        if "sha256" not in digests:
            raise ObjectNotCopyable(f"{where}: {content_path} has no sha256 in its inventory")
        size = _size(obj.content_file(content_path), where, content_path)
        files.append(ObjectFile(content_path, object_key(work_id, content_path), size, digests))
    folders = [version_name(n) for n in sorted(inventory.versions)] + [""]
    for folder in folders:
        directory = obj.path / folder if folder else obj.path
        try:
            data, recorded = obj.read_inventory_files(directory)
        except (CifaError, OSError) as exc:
            raise ObjectNotCopyable(f"{where}: {exc}") from None
        for name, blob in ((INVENTORY, data), (SIDECAR, recorded)):
            path = f"{folder}/{name}" if folder else name
            files.append(ObjectFile(path, object_key(work_id, path), len(blob),
                                    {"sha256": hashlib.sha256(blob).hexdigest()}))  # fmt: skip
    declaration = obj.path / OBJECT_DECLARATION
    try:
        blob = declaration.read_bytes()
    except OSError as exc:
        raise ObjectNotCopyable(f"{where}: {OBJECT_DECLARATION}: {exc}") from None
    files.append(ObjectFile(OBJECT_DECLARATION, object_key(work_id, OBJECT_DECLARATION), len(blob),
                            {"sha256": hashlib.sha256(blob).hexdigest()}))  # fmt: skip
    return files


def newest_differs(
    inventory: Inventory, bag_digests: Mapping[str, Mapping[str, str]]
) -> str | None:
    """What makes ``inventory``'s newest version other than the bag (``bag_digests``: each
    file's digests as the ledger's chain gives them, sha256 always, sha512 where known): the
    files, or one whose sha512 or stored sha256 (its fixity) is not the bag's; None where the
    newest version is the bag."""
    state = inventory.state()
    if set(state) != set(bag_digests):
        odd = sorted(set(state) ^ set(bag_digests))
        return (
            f"its newest version v{inventory.head} and the bag differ in files"
            f" ({odd[0]}{' …' if len(odd) > 1 else ''})"
        )
    for path, digest in state.items():
        vouched = bag_digests[path]
        stored = inventory.manifest.get(digest)
        sha256 = inventory.fixity.get(stored[0]) if stored else None
        if vouched.get("sha512", digest) != digest or vouched["sha256"] != sha256:
            return f"{path} of v{inventory.head} is not the bag's (the ledger's digest)"
    return None


def content_beside_the_bag(inventory: Inventory) -> Iterator[tuple[str, dict[str, str]]]:
    """Each stored content file whose bytes the newest version does not have (what a location
    holds of the content beside the bag), in the order a copy writes them (by version, then
    path), with its sha512 and, where the inventory's fixity block gives it, its sha256."""
    held = set(inventory.state().values())
    for digest, content_paths in sorted(
        inventory.manifest.items(), key=lambda item: _content_order(item[1][0])
    ):
        if digest in held:
            continue
        for content_path in content_paths:
            digests = {"sha512": digest}
            if (sha256 := inventory.fixity.get(content_path)) is not None:
                digests["sha256"] = sha256
            yield content_path, digests


def _content_order(content_path: str) -> tuple[int, str]:
    return version_number(content_path.split("/", 1)[0]) or 0, content_path


def _size(file: Path, where: str, content_path: str) -> int:
    try:
        return file.stat().st_size
    except OSError:
        raise ObjectNotCopyable(f"{where}: {content_path} is missing") from None
