"""A version's stored file mended from verified bytes (issue 18: "repair works per version").

Version 1's files are hard links to the placed bag's, and every later version's unchanged files
too: one inode, two names. Damage to that inode is damage to both; a repair of the bag from a
storage location then writes a *new* file into ``bags/<id>`` (verified against the ledger),
and the object's name still points at the damaged one. So after the bag's repair, each stored
file of the object that the audit found damaged or missing is mended from the bag, where the
newest version (the bag) holds a file with the same sha512 (:func:`mend_from_bag`):

* the bag's file is read and its sha512 compared with the inventory's digest: only verified
  bytes are ever put in (never the bag's word for them);
* it is hard-linked under a temporary name in the storage root (where the recovery clears what
  a crash leaves) and renamed over the damaged file (one ``rename``: the content path holds the
  damaged file or the mended one, never half of one), the folder flushed; the object's lock is
  held throughout (:func:`put_in_place`). The stored files are read-only (0444), as every file
  of a placed version is: a rename replaces one without ever opening it for writing, and what
  takes its place is read-only too;
* a stored file no file of the bag matches (an earlier version's own file: an old master, an
  old record) is not mended from the bag: its other copies are at the storage locations
  (``versions/<id>/``, :mod:`cifa_ingest.storage.versions_copy`), and ``cifa repair`` mends it
  from one of them (:func:`mend_from_copy`), as it mends an inventory or the declaration. It is
  said, never guessed at.

A file mended from a storage location's copy (:func:`mend_from_copy`) is staged and verified by
the caller (:mod:`cifa_ingest.storage.repair`: against the digests the ledger's chain and the
object's inventory give it), then, under the object's lock, flushed, made read-only, hashed once
more and put in place the same way, by one rename. Only in an object that is still the one it
was checked against: its newest version the same, its inventory (where it matches its digest
file) the same bytes; an object that is not there at all is never made file by file (recovery
rebuilds a whole one, :mod:`cifa_ingest.storage.recover`).

An inventory that does not match its digest file is not trusted to say what a file should be:
nothing is mended from the bag in that object.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cifa_ingest.archive.layout import fsync_dir
from cifa_ingest.bag import fixity
from cifa_ingest.errors import ObjectDamaged
from cifa_ingest.versions.inventory import INVENTORY, SIDECAR, check_sidecar, version_name
from cifa_ingest.versions.object import OcflObject
from cifa_ingest.versions.storage_root import StorageRoot


@dataclass(frozen=True)
class Mended:
    """One stored file of an object replaced by the bag's verified file of the same digest."""

    content_path: str
    source: str  # the bag's file it was mended from, a path in the bag
    sha256: str


def _hashed(
    path: Path, algorithms: tuple[str, ...] = ("sha512", "sha256")
) -> tuple[str, ...] | None:
    """The digests of the file (one per algorithm, in order), None where it cannot be read."""
    hashers = [hashlib.new(name) for name in algorithms]
    try:
        with path.open("rb") as reader:
            while chunk := reader.read(fixity.CHUNK):
                for hasher in hashers:
                    hasher.update(chunk)
    except OSError:
        return None
    return tuple(hasher.hexdigest() for hasher in hashers)


def object_file(obj: OcflObject, path: str) -> Path:
    """The file at ``path`` of the object (a content path, an inventory, the declaration), once
    ``path`` is a plain relative path inside it."""
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ObjectDamaged(f"objects/{obj.id}: {path!r} is not a path in the object")
    return obj.path.joinpath(*parts)


def put_in_place(
    store: StorageRoot, obj: OcflObject, path: str, source: Path, *, link: bool
) -> None:
    """Put the verified file ``source`` at ``path`` of ``obj`` in one rename: under a temporary
    name in the storage root first (hard-linked with ``link``, else moved: ``source`` is then
    consumed), which the recovery clears where a crash leaves it, then renamed over the file
    (read-only or absent, it makes no difference to a rename) and the folder flushed. The
    object's lock must be held."""
    target = object_file(obj, path)
    _make_folders(target.parent, obj.path)
    # Beside the storage root's own temporary files: the recovery clears them.
    temporary = store.path / f"{store.temporary_prefix(obj.id)}mend-{os.getpid()}.tmp"
    temporary.unlink(missing_ok=True)
    if link:
        os.link(source, temporary)
    else:
        os.replace(source, temporary)
    os.replace(temporary, target)
    fsync_dir(target.parent)


def _make_folders(folder: Path, top: Path) -> None:
    """``folder`` inside the object ``top``, with the folders above it that are gone, each new
    entry flushed."""
    missing = []
    while not folder.is_dir() and folder != top:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir()
        fsync_dir(made.parent)


def mend_from_bag(
    root: StorageRoot | Path | str, work_id: str, bag_dir: Path, content_paths: list[str]
) -> tuple[list[Mended], dict[str, str]]:
    """Mend each of ``content_paths`` (files of ``work_id``'s object the audit found damaged
    or missing) from ``bag_dir``, the work's newest bag (the module says how). Returns what was
    mended and, for each path not mended, why."""
    store = root if isinstance(root, StorageRoot) else StorageRoot(root)
    obj = OcflObject(store, work_id)
    mended: list[Mended] = []
    left: dict[str, str] = {}
    with store.locked(work_id):
        try:
            inventory = obj.inventory()
        except ObjectDamaged as exc:
            return [], {path: f"not repaired: the inventory is not trusted ({exc})"
                        for path in content_paths}  # fmt: skip
        digest_of = {path: digest for digest, paths in inventory.manifest.items() for path in paths}
        head = inventory.state(inventory.head)
        for content_path in content_paths:
            digest = digest_of.get(content_path)
            if digest is None:
                left[content_path] = "not repaired: the inventory lists no such file"
                continue
            sources = sorted(logical for logical, d in head.items() if d == digest)
            found = next(
                (
                    (logical, hashed[1])
                    for logical in sources
                    if (hashed := _hashed(bag_dir / logical)) is not None and hashed[0] == digest
                ),
                None,
            )
            if found is None:
                left[content_path] = (
                    "not repaired: no verified copy of it in the newest bag, which holds none"
                    " with its digest (an earlier version's own file: its copies are at the"
                    " storage locations, from which cifa repair mends it)"
                    if not sources
                    else "not repaired: the newest bag's copy of it does not verify either"
                )
                continue
            logical, sha256 = found
            try:
                put_in_place(store, obj, content_path, bag_dir / logical, link=True)
            except ObjectDamaged as exc:  # a content path outside the object: never written
                left[content_path] = f"not repaired: {exc}"
                continue
            mended.append(Mended(content_path, logical, sha256))
    return mended, left


def mend_from_copy(
    root: StorageRoot | Path | str,
    work_id: str,
    path: str,
    staged: Path,
    digests: Mapping[str, str],
    *,
    head: int,
    inventory_sha256: str,
) -> None:
    """Put ``staged`` in place of ``path`` of ``work_id``'s object (a content path, an inventory
    or its digest file, the declaration): a file the caller staged from another copy (a storage
    location's) and verified against ``digests`` (by algorithm: sha256, and sha512 for a content
    file). Under the object's lock, and only in the object the caller checked it against: at
    version ``head``, its inventory (where it matches its digest file) hashing to
    ``inventory_sha256``. The staged file is flushed, made read-only, hashed once more, then
    put in place by one rename (:func:`put_in_place`) and consumed. Raises
    :class:`ObjectDamaged`, nothing changed, when the object is not there or not the one
    checked, or the staged file no longer verifies."""
    store = root if isinstance(root, StorageRoot) else StorageRoot(root)
    obj = OcflObject(store, work_id)
    where = f"objects/{work_id}"
    object_file(obj, path)  # a path inside the object, before anything is locked or read
    with store.locked(work_id):
        if not obj.path.is_dir():
            raise ObjectDamaged(
                f"{where}: not in the archive; an object is never made file by file (cifa"
                " recover rebuilds a whole one)"
            )
        numbers = obj.version_numbers()
        if not numbers or numbers[-1] != head:
            newest = version_name(numbers[-1]) if numbers else "none"
            raise ObjectDamaged(
                f"{where}: its newest version is {newest}, not {version_name(head)} as it was"
                f" checked; {path} not mended"
            )
        if _inventory_now(obj) not in (None, inventory_sha256):
            raise ObjectDamaged(
                f"{where}: its inventory changed since it was checked; {path} not mended"
            )
        with staged.open("rb") as reader:
            os.fsync(reader.fileno())
        os.chmod(staged, 0o444)
        algorithms = tuple(sorted(digests))
        if _hashed(staged, algorithms) != tuple(digests[a] for a in algorithms):
            raise ObjectDamaged(f"{where}: {path}: the staged copy no longer verifies; not placed")
        put_in_place(store, obj, path, staged, link=False)


def _inventory_now(obj: OcflObject) -> str | None:
    """The sha256 of the object's inventory where it matches its digest file; None where it
    does not (damage a mend may be putting right) or is not there."""
    try:
        data = (obj.path / INVENTORY).read_bytes()
        check_sidecar(data, (obj.path / SIDECAR).read_bytes(), obj.id)
    except (OSError, ObjectDamaged):
        return None
    return hashlib.sha256(data).hexdigest()
