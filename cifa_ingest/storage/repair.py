"""Repair: a copy of a work found missing or damaged, on any location including the primary, is
replaced file by file from a copy that verifies against the ledger's digests: its bag, and the
files of its versions a location holds beside the bag (``versions/<id>/``,
:mod:`cifa_ingest.storage.versions_copy`).

Why it works as it does:

- **The ledger decides, never a copy, and only a ledger whose chain holds.** What each file must
  be comes from the ledger's chain (:func:`cifa_ingest.storage.replicate.sha256_of_manifests`:
  the manifests must hash to the digests recorded at ingest, from whichever copy holds them
  whole). A ledger whose hash chain is broken (:meth:`AuditLog.verify`) stops repair before
  anything is read: a forged record must never "repair" good copies with other bytes.
- **Every copy is checked in full.** ``cifa repair ID`` re-hashes every file of every copy of
  the bag that the ledger records (the primary, and each location with a row in ``copies``),
  whatever its recorded state: the primary has no row saying it is damaged, a copy recorded
  good may have rotted since, and a source must be proven good before its bytes are used.
  Correctness over speed: this reads each copy once; the cheap audits are for every night.
- **Only verified bytes are written.** A file's bytes are staged from a copy that verified, in
  the archive's work area (``staging/.repair/``), hashed while staged: the staged file must match
  the ledger before it is used. Each location then receives it through its store's ``put``
  (all or nothing, verified before it returns). The primary's file is replaced last by renaming
  the staged file over it (same file system: atomic), after it was flushed, made read-only and
  read back once more; the bag folder never holds a temporary file, so a run killed at any
  instant leaves each file of each copy as it was or wholly replaced, never worse.
- **Recorded only once verified.** A location's copy found wanting is recorded ``missing`` or
  ``damaged`` before anything is written to it, and ``good`` only after every file of it
  verified (read whole, or put and verified by the store). Every check, copy and recovery is a
  PREMIS event in the audit log's hash chain (:class:`EventType`: ``fixity check``,
  ``replication``, ``recovery``), which ``cifa events`` shows.
- **Every version too.** A location's copy of a work is its bag *and* what the work's OCFL
  object holds beside it (every inventory, the declaration, each earlier version's own files),
  each with the digests :func:`cifa_ingest.storage.versions_copy.object_files` gives it (the
  object's newest version must be the bag the ledger's chain vouches for; a content file's
  sha512 and sha256 are its inventory's). The primary's object (``primary (versions)``) is
  checked for the same files: a location's missing or damaged one is re-put from the primary's
  verified bytes, and the primary's from a location's verified bytes, where the bag holds no
  file with the same bytes (an old master, an old record, an inventory). Where the primary's
  object cannot say what it must be (a file of it gone, an inventory damaged), the object's
  inventory is taken from the first copy whose inventory matches its digest file and whose
  newest version is the bag the ledger vouches for, and an earlier version's inventory only
  where it also records versions 1 to N as that one does. The primary's object is mended by one
  rename under the object's lock (:func:`cifa_ingest.versions.repair.mend_from_copy`), never
  made file by file where it is not there. A location's copy is recorded ``good`` only once
  every file of the bag and of the versions verified.
- **No good copy anywhere: nothing is overwritten.** The problem stays reported (``no_good_copy``)
  and the run fails, so that Prefect's notifications fire.

One repair or replication of an archive at a time: :func:`repair_work` holds
:func:`cifa_ingest.storage.replicate.replication_lock` (callers must not hold it already).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from cifa_ingest.archive.audit_log import AuditLog, EventOutcome, EventType
from cifa_ingest.archive.layout import Archive, fsync_dir
from cifa_ingest.archive.ledger import BagRecord, CopyState, Ledger
from cifa_ingest.bag import manifest
from cifa_ingest.errors import CifaError, ObjectDamaged
from cifa_ingest.storage import versions_copy
from cifa_ingest.storage.digests import (
    CHUNK,
    copy_hashed,
    copy_hashed_with,
    sha256_of,
    sha256_of_path,
)
from cifa_ingest.storage.locations import PRIMARY, FilesystemLocation, S3Location
from cifa_ingest.storage.replicate import (
    SOFTWARE,
    SourceDamaged,
    bag_key,
    replication_lock,
    sha256_of_manifests,
)
from cifa_ingest.storage.store import LocationUnreachable, ObjectMissing, Store
from cifa_ingest.storage.stores import open_store
from cifa_ingest.versions.inventory import (
    INVENTORY,
    SIDECAR,
    Inventory,
    check_sidecar,
    version_name,
    version_number,
)
from cifa_ingest.versions.repair import mend_from_copy
from cifa_ingest.versions.storage_root import OBJECT_DECLARATION, OBJECT_DECLARATION_TEXT

log = logging.getLogger("cifa_ingest.repair")

#: The work area of repair, inside the archive's staging folder (the file system of bags/).
WORK_AREA = ".repair"
#: The primary's copy of a work's versions, its OCFL object (``ARCHIVE/objects/<id>/``), as
#: repair names it in its checks, its repairs and the audit log's events (a location's copy of
#: the versions is part of its copy of the work, under the location's name).
PRIMARY_VERSIONS = "primary (versions)"
#: The largest inventory repair reads from a copy to learn what an object must be.
INVENTORY_LIMIT = 64 * 1024 * 1024


class LedgerTampered(CifaError):
    """The audit log's hash chain is broken: the ledger cannot be trusted to say which bytes
    are good, so nothing is repaired."""


class RepairProblemKind(StrEnum):
    """What repair found and could not mend (``problems[].kind`` of ``cifa repair --json``)."""

    #: A file of the copy is absent (and no verified copy of it could be written there).
    COPY_MISSING = "copy_missing"
    #: A file of the copy differs from the ledger's digest (and was not replaced).
    COPY_DAMAGED = "copy_damaged"
    #: The location did not answer: its copy could be neither checked nor used.
    LOCATION_UNREACHABLE = "location_unreachable"
    #: No copy anywhere holds the file as the ledger records it: nothing was overwritten.
    NO_GOOD_COPY = "no_good_copy"


@dataclass(frozen=True)
class Problem:
    work_id: str
    location: str
    kind: RepairProblemKind
    path: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "location": self.location,
            "kind": str(self.kind),
            "path": self.path,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Repaired:
    """One file of one copy replaced by verified bytes of another."""

    work_id: str
    location: str
    path: str
    source: str
    sha256: str
    was: RepairProblemKind

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "location": self.location,
            "path": self.path,
            "source": self.source,
            "sha256": self.sha256,
            "was": str(self.was),
        }


@dataclass
class CopyCheck:
    """One copy of one bag as this run found and left it."""

    work_id: str
    location: str
    files: int = 0
    #: Files found missing or damaged, by path (in the bag, or in the object for the versions).
    bad: dict[str, RepairProblemKind] = field(default_factory=dict)
    repaired: int = 0
    #: Files of the copy no copy could say what they must be (a work's versions whose
    #: inventory no copy holds as the ledger vouches for it): the copy is not known good.
    unverified: list[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        return self.repaired == len(self.bad) and not self.unverified

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.work_id,
            "location": self.location,
            "files": self.files,
            "missing": _found(self)["missing"],
            "damaged": _found(self)["damaged"],
            "repaired": self.repaired,
            "good": self.good,
        }


@dataclass
class RepairReport:
    """A repair run."""

    archive: str
    started: str
    works: list[str] = field(default_factory=list)
    copies: list[CopyCheck] = field(default_factory=list)
    repaired: list[Repaired] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "works": self.works,
            "copies": [c.as_dict() for c in self.copies],
            "repaired": [r.as_dict() for r in self.repaired],
            "problems": [p.as_dict() for p in self.problems],
            "ok": self.ok,
        }


# ---------------------------------------------------------------------------------------------
# The copies of a bag: the primary and the locations, read alike


class Copy:
    """One copy of one bag: its name and how to read (and replace) a file of it."""

    name: str

    def open(self, path: str) -> contextlib.AbstractContextManager[BinaryIO]:
        raise NotImplementedError


class PrimaryCopy(Copy):
    """The placed bag under ``ARCHIVE/bags/``."""

    def __init__(self, archive: Archive, record: BagRecord) -> None:
        self.name = PRIMARY
        self.archive = archive
        self.bag = archive.root / record.bag_path

    def _file(self, path: str) -> Path:
        parts = PurePosixPath(path).parts
        if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a path in a bag: {path!r}")
        return self.bag.joinpath(*parts)

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        try:
            handle = self._file(path).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"{PRIMARY}: no {path}") from None
        with handle:
            yield handle

    def replace(self, path: str, staged: Path, sha256: str) -> None:
        """Put the verified ``staged`` file in the placed bag in place of ``path``, atomically:
        flushed, read-only, hashed once more from disk, then renamed over the old one (same file
        system: staging and bags are, :meth:`Archive.place`), the folder flushed. ``staged`` is
        consumed."""
        target = self._file(path)
        with staged.open("rb") as reader:
            os.fsync(reader.fileno())
        os.chmod(staged, 0o444)
        if sha256_of_path(staged) != sha256:
            raise SourceDamaged(f"{path}: the staged copy no longer verifies; not placed")
        if not target.parent.is_dir():
            target.parent.mkdir(parents=True)
        os.replace(staged, target)
        fsync_dir(target.parent)


class LocationCopy(Copy):
    """A bag's copy at a storage location, through its store."""

    def __init__(self, store: Store, record: BagRecord) -> None:
        self.name = store.name
        self.store = store
        self.record = record

    def key(self, path: str) -> str:
        """The key of ``path`` at the location."""
        return bag_key(self.record, path)

    def open(self, path: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self.store.open(self.key(path))


class LocationObjectCopy(LocationCopy):
    """A work's versions at a storage location, beside its bag: ``versions/<id>/<path in the
    object>`` (:mod:`cifa_ingest.storage.versions_copy`). Part of the location's copy of the
    work: one row in the ledger's ``copies``, one check, under the location's name."""

    def key(self, path: str) -> str:
        return versions_copy.object_key(self.record.work_id, path)


class ObjectCopy(Copy):
    """The primary's copy of a work's versions: its OCFL object under ``ARCHIVE/objects/``,
    the files of it a location holds beside the bag."""

    def __init__(self, archive: Archive, record: BagRecord) -> None:
        self.name = PRIMARY_VERSIONS
        self.archive = archive
        self.work_id = record.work_id

    def _file(self, path: str) -> Path:
        if not _inside(path):
            raise ObjectDamaged(f"{PRIMARY_VERSIONS}: not a path in an object: {path!r}")
        return versions_copy.source_path(self.archive, self.work_id, path)

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        try:
            handle = self._file(path).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"{PRIMARY_VERSIONS}: no {path}") from None
        with handle:
            yield handle

    def replace(self, path: str, staged: Path, digests: dict[str, str], files: ObjectFiles) -> None:
        """Put the verified ``staged`` file in the object in place of ``path`` by one rename,
        under the object's lock, in the object ``files`` was learnt from only
        (:func:`cifa_ingest.versions.repair.mend_from_copy`). ``staged`` is consumed."""
        self._file(path)
        mend_from_copy(
            self.archive.objects_dir, self.work_id, path, staged, digests,
            head=files.head, inventory_sha256=files.inventory_sha256,
        )  # fmt: skip


def hash_in_copy(copy: Copy, path: str) -> str | None:
    """The sha256 of ``path`` as ``copy`` holds it, read whole; None when it is absent.
    :class:`LocationUnreachable` propagates."""
    try:
        with copy.open(path) as reader:
            return sha256_of(reader)
    except ObjectMissing:
        return None


def digests_in_copy(copy: Copy, path: str, algorithms: Sequence[str]) -> dict[str, str] | None:
    """The digests (by algorithm) of ``path`` as ``copy`` holds it, read whole once; None when
    it is absent. :class:`LocationUnreachable` propagates."""
    if list(algorithms) == ["sha256"]:
        found = hash_in_copy(copy, path)
        return None if found is None else {"sha256": found}
    hashers = {name: hashlib.new(name) for name in algorithms}
    try:
        with copy.open(path) as reader:
            while chunk := reader.read(CHUNK):
                for hasher in hashers.values():
                    hasher.update(chunk)
    except ObjectMissing:
        return None
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def read_verified(copy: Copy, path: str, sha256: str, limit: int = 64 * 1024 * 1024) -> bytes:
    """A small file (a manifest, ``bagit.txt``) of ``copy``, only if it hashes to ``sha256``."""
    with copy.open(path) as reader:
        data = reader.read(limit + 1)
    if len(data) > limit or hashlib.sha256(data).hexdigest() != sha256:
        raise SourceDamaged(f"{copy.name}: {path} differs from the ledger")
    return data


def stage(
    copy: Copy, path: str, sha256: str, target: Path, *, also: dict[str, str] | None = None
) -> int:
    """Copy ``path`` of ``copy`` to the new file ``target``, hashed while written and flushed;
    the file is kept only if its bytes are the ledger's (else removed, :class:`SourceDamaged`):
    its sha256, and each digest of ``also`` (by algorithm: a version's content file's sha512).
    Its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    others = {a: d for a, d in (also or {}).items() if a != "sha256"}
    try:
        with copy.open(path) as reader, target.open("xb") as out:
            if others:
                found, size = copy_hashed_with(reader, out, ("sha256", *others))
                matches = found == {"sha256": sha256, **others}
            else:
                digest, size = copy_hashed(reader, out)
                matches = digest == sha256
        if not matches:
            raise SourceDamaged(f"{copy.name}: {path} no longer verifies; not used")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return size


def expected_files(
    record: BagRecord, copies: Sequence[Copy], scratch: Path
) -> tuple[dict[str, str], list[str]]:
    """Every file of the bag with its sha256 from the ledger's chain, read from the manifests of
    whichever copies hold them as the ledger recorded (each manifest may come from another copy);
    and the notes of copies that could not be read. ``scratch`` is a folder to read
    ``bagit.txt``'s declaration in. Raises :class:`SourceDamaged` when no copy holds a manifest
    as recorded."""
    name = Path(record.bag_path).name
    texts: dict[str, bytes] = {}
    notes: list[str] = []
    for manifest_name, digest in sorted(record.manifest_digests.items()):
        for copy in copies:
            try:
                texts[manifest_name] = read_verified(copy, manifest_name, digest)
                break
            except (SourceDamaged, ObjectMissing):
                continue
            except LocationUnreachable as exc:
                notes.append(str(exc))
        else:
            raise SourceDamaged(f"{name}: no copy holds {manifest_name} as the ledger recorded it")
    # The declaration (encoding, version) from a bagit.txt that reads; the one a copy must hold
    # is then checked like every other file, against the tag manifest's digest.
    declaration = manifest.Declaration(version=(1, 0), encoding="UTF-8")
    for copy in copies:
        with contextlib.suppress(CifaError, OSError):
            with copy.open("bagit.txt") as reader:
                data = reader.read(4096)
            scratch.mkdir(parents=True, exist_ok=True)
            (scratch / "bagit.txt").write_bytes(data)
            found = manifest.read_declaration(scratch)
            if not found.problems:
                declaration = found
                break
    return sha256_of_manifests(name, texts, declaration), notes


# ---------------------------------------------------------------------------------------------
# What a work's versions must be at every copy


class VersionsUnknown(CifaError):
    """No copy of a work's object can say what its versions must be: no inventory anywhere
    matches its digest file with the bag the ledger vouches for as its newest version."""


@dataclass(frozen=True)
class ObjectFiles:
    """What every copy of a work's versions must hold: each file a location holds of the
    work's object beside its bag (path in the object -> its digests by algorithm), in the order
    a copy is written; the object's newest version and the sha256 of its inventory, which a
    mend of the primary's object checks again under the object's lock; and the files no copy
    could say what they must be (path -> why)."""

    files: dict[str, dict[str, str]]
    head: int
    inventory_sha256: str
    unknown: dict[str, str] = field(default_factory=dict)


def expected_object_files(
    archive: Archive, record: BagRecord, bag: dict[str, str], copies: Sequence[Copy]
) -> ObjectFiles:
    """The files of ``record``'s work that every copy holds beside its bag, with their digests:
    :func:`cifa_ingest.storage.versions_copy.object_files`'s, from the primary's object, checked
    against ``bag`` (every file of the bag with the sha256 the ledger's chain gives it). Where
    the primary's object cannot say (a file of it gone, an inventory damaged), they are learnt
    from the copies of the object (``copies``: the primary's first, then each location's): the
    object's inventory from the first that matches its digest file and names the bag as its
    newest version; an earlier version's inventory from the first that also matches its digest
    file and records versions 1 to N as the object's does (else the file is ``unknown``).
    Raises :class:`VersionsUnknown` when no copy holds the object's inventory so."""
    vouched = {path: {"sha256": sha256} for path, sha256 in bag.items()}
    try:
        listed = versions_copy.object_files(archive, record.work_id, vouched)
    except versions_copy.ObjectNotCopyable as exc:
        primary_says = str(exc)
    else:
        files = {f.path: dict(f.digests) for f in listed}
        folders = [p.split("/", 1)[0] for p in files if p.endswith(f"/{INVENTORY}")]
        head = max((n for f in folders if (n := version_number(f)) is not None), default=0)
        return _inside_the_object(ObjectFiles(files, head, files[INVENTORY]["sha256"]))
    for copy in copies:
        found = _read_inventory(copy, "")
        if found is None:
            continue
        data, recorded = found
        inventory = _inventory_of(record.work_id, data, recorded, "")
        if inventory is not None and _names_the_bag(inventory, bag):
            return _inside_the_object(
                _from_inventory(record.work_id, inventory, data, recorded, copies)
            )
    raise VersionsUnknown(
        f"{primary_says}; and no copy holds an inventory of the object that matches its digest"
        " file with the bag the ledger vouches for as its newest version"
    )


def _inside(path: str) -> bool:
    """Whether ``path`` is a plain relative path, inside the folder it is taken in."""
    parts = PurePosixPath(path).parts
    return bool(parts) and not path.startswith("/") and not any(p in ("", ".", "..") for p in parts)


def _inside_the_object(files: ObjectFiles) -> ObjectFiles:
    """``files``, once every path of it is inside the object (an inventory names the paths)."""
    outside = sorted(path for path in files.files if not _inside(path))
    if outside:
        raise VersionsUnknown(f"its inventory names {outside[0]!r}, not a path in the object")
    return files


def _read_inventory(copy: Copy, folder: str) -> tuple[bytes, bytes] | None:
    """An inventory and its digest file as ``copy`` holds them (``folder``: "" for the object's,
    ``vN`` for a version's); None where either is absent, too large or unreadable."""
    prefix = f"{folder}/" if folder else ""
    blobs = []
    for name in (INVENTORY, SIDECAR):
        try:
            with copy.open(prefix + name) as reader:
                blob = reader.read(INVENTORY_LIMIT + 1)
        except (CifaError, OSError) as exc:
            log.info("%s: %s%s: %s", copy.name, prefix, name, exc)
            return None
        if len(blob) > INVENTORY_LIMIT:
            return None
        blobs.append(blob)
    return blobs[0], blobs[1]


def _inventory_of(work_id: str, data: bytes, recorded: bytes, folder: str) -> Inventory | None:
    """The inventory of ``work_id``'s object in ``data``, if it matches its digest file
    ``recorded``; for a version's (``folder`` ``vN``), if it is that version's."""
    where = f"{work_id}/{folder}".rstrip("/")
    try:
        check_sidecar(data, recorded, where)
        inventory = Inventory.from_bytes(data, where)
    except ObjectDamaged:
        return None
    if inventory.id != work_id or (folder and version_name(inventory.head) != folder):
        return None
    return inventory


def _names_the_bag(inventory: Inventory, bag: dict[str, str]) -> bool:
    """Whether the newest version of ``inventory`` is the bag: the same files, each with the
    sha256 the ledger's chain gives it (the inventory's fixity of its stored bytes), and every
    stored file has its sha256."""
    vouched = {path: {"sha256": sha256} for path, sha256 in bag.items()}
    if versions_copy.newest_differs(inventory, vouched) is not None:
        return False
    return all(
        paths and all(p in inventory.fixity for p in paths) for paths in inventory.manifest.values()
    )


def _records_as(earlier: Inventory, inventory: Inventory) -> bool:
    """Whether ``earlier`` (a version's inventory) is the object's ``inventory`` as it was at
    that version: its versions, and the content stored by them, the same."""
    head = earlier.head
    if dict(earlier.versions) != {n: inventory.versions[n] for n in range(1, head + 1)}:
        return False
    stored = {
        digest: paths
        for digest, paths in inventory.manifest.items()
        if all((version_number(p.split("/", 1)[0]) or head + 1) <= head for p in paths)
    }
    if {d: tuple(p) for d, p in earlier.manifest.items()} != dict(stored):
        return False
    return all(inventory.fixity.get(p) == sha256 for p, sha256 in earlier.fixity.items())


def _from_inventory(
    work_id: str,
    inventory: Inventory,
    data: bytes,
    recorded: bytes,
    copies: Sequence[Copy],
) -> ObjectFiles:
    """The files :func:`~cifa_ingest.storage.versions_copy.object_files` lists, in its order,
    from a trusted ``inventory`` (its bytes ``data``, its digest file ``recorded``) and the
    versions' inventories the ``copies`` hold as it records them."""
    files: dict[str, dict[str, str]] = {}
    unknown: dict[str, str] = {}
    for content_path, digests in versions_copy.content_beside_the_bag(inventory):
        files[content_path] = digests  # each has its sha256: _names_the_bag checked
    for number in sorted(inventory.versions):
        folder = version_name(number)
        found: tuple[bytes, bytes] | None = (data, recorded) if number == inventory.head else None
        for copy in copies if found is None else ():
            candidate = _read_inventory(copy, folder)
            if candidate is None:
                continue
            earlier = _inventory_of(work_id, *candidate, folder)
            if earlier is not None and _records_as(earlier, inventory):
                found = candidate
                break
        for name, index in ((INVENTORY, 0), (SIDECAR, 1)):
            path = f"{folder}/{name}"
            if found is None:
                unknown[path] = (
                    f"no copy holds {folder}/{INVENTORY} matching its digest file and recording"
                    f" {folder} as the object's inventory does; nothing was overwritten"
                )
            else:
                files[path] = {"sha256": hashlib.sha256(found[index]).hexdigest()}
    files[INVENTORY] = {"sha256": hashlib.sha256(data).hexdigest()}
    files[SIDECAR] = {"sha256": hashlib.sha256(recorded).hexdigest()}
    files[OBJECT_DECLARATION] = {"sha256": hashlib.sha256(OBJECT_DECLARATION_TEXT).hexdigest()}
    return ObjectFiles(files, inventory.head, files[INVENTORY]["sha256"], unknown)


# ---------------------------------------------------------------------------------------------
# Repair


def check_chain(archive: Archive) -> None:
    problems = AuditLog(archive.ledger_path).verify()
    if problems:
        raise LedgerTampered(
            "the ledger's hash chain is broken, so it cannot say which copies are good; nothing"
            f" was repaired ({'; '.join(problems[:3])}). Restore the ledger from a snapshot"
            " (ledger/ at any location) and run cifa ledger verify."
        )


def repair_work(
    archive: Archive,
    work_ids: Sequence[str] | None,
    locations: Sequence[FilesystemLocation | S3Location],
    *,
    stores: Callable[[FilesystemLocation | S3Location], Store] = open_store,
) -> RepairReport:
    """Check every copy of each bag of ``work_ids`` (every registered bag when None) in full and
    replace each missing or damaged file from a copy that verifies (the module says how). Holds
    the replication lock. Raises :class:`LedgerTampered` before reading anything when the
    ledger's chain is broken; never raises for what a copy or location does: the report says it.
    """
    started = time.monotonic()
    report = RepairReport(
        archive=str(archive.root),
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    with replication_lock(archive):
        check_chain(archive)
        ledger = Ledger(archive.ledger_path)
        audit_log = AuditLog(archive.ledger_path)
        records = ledger.bags() if work_ids is None else [
            r for r in (ledger.bag(w) for w in work_ids) if r is not None
        ]  # fmt: skip
        report.works = [r.work_id for r in records]
        work_area = archive.staging_dir / WORK_AREA
        shutil.rmtree(work_area, ignore_errors=True)  # what a killed run left: never used
        opened: dict[str, Store] = {}
        for location in locations:
            store = stores(location)
            try:
                store.check()
            except LocationUnreachable as exc:
                report.unreachable[location.name] = str(exc)
            except (CifaError, OSError) as exc:
                report.unreachable[location.name] = f"{type(exc).__name__}: {exc}"
            else:
                opened[location.name] = store
        try:
            for record in records:
                _repair_bag(archive, ledger, audit_log, record, locations, opened, report,
                            work_area / secrets.token_hex(6))  # fmt: skip
        finally:
            shutil.rmtree(work_area, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report


def _repair_bag(
    archive: Archive,
    ledger: Ledger,
    audit_log: AuditLog,
    record: BagRecord,
    locations: Sequence[FilesystemLocation | S3Location],
    opened: dict[str, Store],
    report: RepairReport,
    work_area: Path,
) -> None:
    """Repair every copy of one work: its bag at the primary and at each location, and its
    versions in the primary's object and beside the bag at each location."""
    work_id = record.work_id
    recorded = {c.location: c for c in ledger.copies(work_id=work_id)}
    primary = PrimaryCopy(archive, record)
    copies: list[Copy] = [primary]
    held: list[Copy] = [ObjectCopy(archive, record)]
    for location in locations:
        if location.name not in recorded:
            continue  # never copied there: replication's work, not repair's
        if location.name in report.unreachable:
            report.problems.append(Problem(work_id, location.name,
                                           RepairProblemKind.LOCATION_UNREACHABLE,
                                           detail=report.unreachable[location.name]))  # fmt: skip
            continue
        copies.append(LocationCopy(opened[location.name], record))
        held.append(LocationObjectCopy(opened[location.name], record))
    try:
        expected, _notes = expected_files(record, copies, work_area / "declaration")
    except SourceDamaged as exc:
        report.problems.append(
            Problem(work_id, "*", RepairProblemKind.NO_GOOD_COPY, detail=str(exc))
        )
        log.error("%s: %s", work_id, exc)
        return
    versions = _expected_versions(archive, record, expected, held, report)

    # What each copy must hold: the bag's files (group 0), the versions' (group 1).
    groups: list[dict[str, dict[str, str]]] = [{p: {"sha256": d} for p, d in expected.items()}]
    if versions is not None:
        groups.append(versions.files)
    sites: dict[str, list[tuple[int, Copy]]] = {PRIMARY: [(0, primary)]}
    if versions is not None:
        sites[PRIMARY_VERSIONS] = [(1, held[0])]
    for bag_copy, object_copy in zip(copies[1:], held[1:], strict=True):
        sites[bag_copy.name] = [(0, bag_copy)] + ([(1, object_copy)] if versions else [])
    unverified = sorted(versions.unknown) if versions is not None else ["*"]

    # 1. Check every copy in full.
    checks: dict[str, CopyCheck] = {}
    wanting: dict[Copy, dict[str, RepairProblemKind]] = {}
    good_in: list[dict[str, list[Copy]]] = [{path: [] for path in files} for files in groups]
    for name, parts in sites.items():
        check = CopyCheck(work_id, name, files=sum(len(groups[g]) for g, _copy in parts))
        found: dict[Copy, dict[str, RepairProblemKind]] = {}
        try:
            for group, copy in parts:
                found[copy] = {}
                for path, digests in groups[group].items():
                    held_digests = digests_in_copy(copy, path, sorted(digests))
                    if held_digests == digests:
                        good_in[group][path].append(copy)
                    else:
                        found[copy][path] = (
                            RepairProblemKind.COPY_MISSING if held_digests is None
                            else RepairProblemKind.COPY_DAMAGED
                        )  # fmt: skip
        except (LocationUnreachable, CifaError, OSError) as exc:
            report.problems.append(Problem(work_id, name,
                                           RepairProblemKind.LOCATION_UNREACHABLE,
                                           detail=str(exc)))  # fmt: skip
            for group, copy in parts:  # a copy half read is no source
                for sources in good_in[group].values():
                    if copy in sources:
                        sources.remove(copy)
            continue
        for copy, bad in found.items():
            wanting[copy] = bad
            check.bad.update(bad)
        if name not in (PRIMARY, PRIMARY_VERSIONS):
            check.unverified = list(unverified)
        checks[name] = check
        report.copies.append(check)
        audit_log.record_event(
            work_id, EventType.FIXITY_CHECK, name,
            EventOutcome.SUCCESS if not check.bad else EventOutcome.FAILURE,
            _found(check), SOFTWARE,
        )  # fmt: skip
        if check.bad and name not in (PRIMARY, PRIMARY_VERSIONS):
            # Known wanting before anything is written: a run killed from here on leaves the
            # copy recorded not good, never good.
            state = (CopyState.MISSING if RepairProblemKind.COPY_MISSING in check.bad.values()
                     else CopyState.DAMAGED)  # fmt: skip
            ledger.record_copy(work_id, name, state, software=SOFTWARE,
                               detail=_detail(check))  # fmt: skip

    # 2. Each file some copy lacks, from a copy that verifies, staged and verified: the bag's
    # files, then the versions' (each group in the order a copy is written).
    for group, files in enumerate(groups):
        members = [c for parts in sites.values() for g, c in parts if g == group and c in wanting]
        for path in [p for p in files if any(p in wanting[c] for c in members)]:
            targets = [c for c in members if path in wanting[c]]
            _replace(work_id, path, files[path], targets, good_in[group][path], wanting,
                     checks, versions, audit_log, report, work_area)  # fmt: skip

    # 3. Record what each copy now is.
    for name, check in checks.items():
        if check.bad:
            audit_log.record_event(
                work_id, EventType.RECOVERY, name,
                EventOutcome.SUCCESS if check.good else EventOutcome.FAILURE,
                {**_found(check), "repaired": check.repaired}, SOFTWARE,
            )  # fmt: skip
        if name in (PRIMARY, PRIMARY_VERSIONS):
            continue
        if check.good:
            ledger.record_copy(work_id, name, CopyState.GOOD, software=SOFTWARE,
                               copied=bool(check.repaired))  # fmt: skip


def _expected_versions(
    archive: Archive,
    record: BagRecord,
    expected: dict[str, str],
    held: Sequence[Copy],
    report: RepairReport,
) -> ObjectFiles | None:
    """What the work's versions must be (:func:`expected_object_files`), each file no copy can
    say a problem; None, and one problem, where no copy can say what any of them must be."""
    work_id = record.work_id
    try:
        versions = expected_object_files(archive, record, expected, held)
    except VersionsUnknown as exc:
        report.problems.append(Problem(work_id, "*", RepairProblemKind.NO_GOOD_COPY,
                                       detail=f"its versions: {exc}"))  # fmt: skip
        log.error("%s: its versions: %s", work_id, exc)
        return None
    for path, why in versions.unknown.items():
        report.problems.append(Problem(work_id, "*", RepairProblemKind.NO_GOOD_COPY, path, why))
        log.error("%s: %s: %s", work_id, path, why)
    return versions


def _replace(
    work_id: str,
    path: str,
    digests: dict[str, str],
    targets: list[Copy],
    sources: list[Copy],
    wanting: dict[Copy, dict[str, RepairProblemKind]],
    checks: dict[str, CopyCheck],
    versions: ObjectFiles | None,
    audit_log: AuditLog,
    report: RepairReport,
    work_area: Path,
) -> None:
    """Replace ``path`` in each of ``targets`` by the bytes of the first of ``sources`` that
    verify against ``digests``, staged in ``work_area``: each location through its store's
    ``put`` (verified), the primary last by one rename. With no source that verifies, nothing
    is overwritten: a problem of each target."""
    sha256 = digests["sha256"]
    staged = work_area / secrets.token_hex(8)
    source = None
    for candidate in sources:
        try:
            stage(candidate, path, sha256, staged, also=digests)
        except (CifaError, OSError) as exc:
            log.warning("%s: %s from %s: %s", work_id, path, candidate.name, exc)
            continue
        source = candidate
        break
    if source is None:
        for target in targets:
            report.problems.append(Problem(
                work_id, target.name, RepairProblemKind.NO_GOOD_COPY, path,
                "no copy holds this file as the ledger records it; nothing was overwritten",
            ))  # fmt: skip
        log.error("%s: %s: no copy verifies; nothing overwritten", work_id, path)
        return
    # Locations first (each put reads the staged file), the primary last (it takes it).
    for target in sorted(targets, key=lambda c: isinstance(c, PrimaryCopy | ObjectCopy)):
        check = checks[target.name]
        was = wanting[target][path]
        try:
            if isinstance(target, PrimaryCopy):
                target.replace(path, staged, sha256)
            elif isinstance(target, ObjectCopy):
                if versions is None:  # never: the versions' files are checked only when known
                    raise SourceDamaged(f"{path}: what the object must be is not known")
                target.replace(path, staged, digests, versions)
            elif isinstance(target, LocationCopy):
                stored = target.store.put(target.key(path), staged, sha256)
                if stored.sha256 is not None and stored.sha256.lower() != sha256:
                    raise SourceDamaged(f"{path}: the location keeps sha256 {stored.sha256}")
        except (CifaError, OSError) as exc:
            report.problems.append(Problem(work_id, target.name, was, path,
                                           f"not replaced: {exc}"))  # fmt: skip
            audit_log.record_event(work_id, EventType.REPLICATION, target.name,
                                   EventOutcome.FAILURE,
                                   {"path": path, "source": source.name,
                                    "error": str(exc)[:300]}, SOFTWARE)  # fmt: skip
            continue
        check.repaired += 1
        report.repaired.append(Repaired(work_id, target.name, path, source.name, sha256, was))
        audit_log.record_event(work_id, EventType.REPLICATION, target.name,
                               EventOutcome.SUCCESS,
                               {"path": path, "source": source.name, "sha256": sha256,
                                "was": str(was)}, SOFTWARE)  # fmt: skip
    staged.unlink(missing_ok=True)


def _found(check: CopyCheck) -> dict[str, Any]:
    return {
        "files": check.files,
        "missing": sorted(p for p, k in check.bad.items() if k is RepairProblemKind.COPY_MISSING),
        "damaged": sorted(p for p, k in check.bad.items() if k is RepairProblemKind.COPY_DAMAGED),
    }


def _detail(check: CopyCheck) -> str:
    found = _found(check)
    parts = []
    for word in ("missing", "damaged"):
        if found[word]:
            more = f" and {len(found[word]) - 1} more" if len(found[word]) > 1 else ""
            parts.append(f"{word}: {found[word][0]}{more}")
    return "; ".join(parts)[:500]


def table(report: RepairReport) -> str:
    """The run for people: what was repaired, then what remains wrong, then a count."""
    lines = [f"{loc}: unreachable: {why}" for loc, why in report.unreachable.items()]
    for done in report.repaired:
        lines.append(f"{done.work_id} @ {done.location}: {done.path} ({done.was}) repaired"
                     f" from {done.source}")  # fmt: skip
    for problem in report.problems:
        where = f" {problem.path}" if problem.path else ""
        lines.append(f"{problem.work_id} @ {problem.location}:{where} {problem.kind}:"
                     f" {problem.detail}")  # fmt: skip
    checked = len(report.copies)
    lines.append(
        f"repair: {len(report.works)} bags, {checked} copies checked in full,"
        f" {len(report.repaired)} files repaired, {len(report.problems)} problems remain,"
        f" in {report.seconds:.1f} s"
    )
    return "\n".join(lines)
