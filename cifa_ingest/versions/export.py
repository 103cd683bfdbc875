"""A version given back as a plain BagIt bag, in a new folder: each file of the version copied to
its logical path, its sha512 checked against the inventory as it is copied, and the bag then
validated in full (every manifest's every digest) by the project's validator.

An export meant for access (:func:`export_access`) gives only the access copies and the
descriptive record of the newest version, and only where that version's permission covers access:
a withdrawn or narrowed permission withholds them (the preservation export above still holds the
whole version, for the archive's own use).

The export is built beside its target in a hidden folder and renamed into place once valid, so
that a damaged object, a full disk or a crash never leaves half a bag where a whole one was
asked for. Nothing is ever written over: a target that exists must be an empty folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cifa_ingest.archive.layout import fsync_dir
from cifa_ingest.bag import check as bagcheck
from cifa_ingest.bag import fixity
from cifa_ingest.errors import AccessWithheld, ExportRefused, ObjectDamaged
from cifa_ingest.versions.content import discard
from cifa_ingest.versions.history import checked_number, read_object
from cifa_ingest.versions.inventory import Inventory, version_name
from cifa_ingest.versions.object import OcflObject
from cifa_ingest.versions.storage_root import StorageRoot


def _copy_verified(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` and flush it; the sha512 of what was read."""
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha512()
    with source.open("rb") as reader, target.open("xb") as out:
        while chunk := reader.read(fixity.CHUNK):
            hasher.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return hasher.hexdigest()


def _fsync_tree(folder: Path) -> None:
    for dirpath, _dirnames, _filenames in os.walk(folder):
        fsync_dir(Path(dirpath))


def _empty_target(target_dir: Path | str) -> Path:
    """The target folder, absolute, refused (nothing written) unless absent or empty."""
    target = Path(target_dir).absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportRefused(f"{target}: exists and is not an empty folder; nothing written over")
    return target


@contextlib.contextmanager
def _built_as(target: Path, kind: str) -> Iterator[Path]:
    """A hidden folder beside ``target`` to build in (readable by all: not mkdtemp's private
    0700), flushed and renamed to ``target`` (onto nothing, or an empty folder) once the body is
    done; removed, with all it holds, when the body fails or the process is interrupted."""
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-", dir=target.parent))
    try:
        building.chmod(0o755)
        yield building
        _fsync_tree(building)
        os.rename(building, target)
    except BaseException:
        discard(building)
        raise
    fsync_dir(target.parent)


def _copy_checked(
    obj: OcflObject, inventory: Inventory, where: str, logical: str, digest: str, target: Path
) -> None:
    """One file of a version copied to ``target``, its sha512 compared with the inventory's as
    it is read: ObjectDamaged, naming the stored file, where it is missing or differs."""
    content_path = inventory.content_path(digest)
    try:
        actual = _copy_verified(obj.content_file(content_path), target)
    except FileNotFoundError:
        raise ObjectDamaged(
            f"{where}: {content_path} (the bag's {logical}) is missing; nothing exported"
        ) from None
    if actual != digest:
        raise ObjectDamaged(
            f"{where}: {content_path} (the bag's {logical}) has sha512 {actual}, the"
            f" inventory says {digest}; nothing exported"
        )


def _valid_bag(folder: Path, where: str) -> None:
    report = bagcheck.validate(folder)
    if not report.valid:
        problems = "; ".join(f.message for f in report.errors[:10])
        raise ObjectDamaged(f"{where}: its bag is not valid: {problems}")


def export(
    root: StorageRoot | Path | str,
    work_id: str,
    version: int | None,
    target_dir: Path | str,
) -> Path:
    """Write version ``version`` of ``work_id`` (the newest for None) as a BagIt bag into
    ``target_dir``, a folder that must not exist or be empty; the bag's folder. ObjectDamaged,
    naming the file, where a stored file is not what the inventory records (nothing is left at
    the target); NoSuchVersion for a version the object does not have."""
    target = _empty_target(target_dir)
    obj, inventory = read_object(root, work_id)
    number = checked_number(inventory, version)
    where = f"{work_id} {version_name(number)}"
    with _built_as(target, "export") as building:
        for logical, digest in sorted(inventory.state(number).items()):
            _copy_checked(obj, inventory, where, logical, digest, building / logical)
        _valid_bag(building, where)
    return target


def link_version(
    root: StorageRoot | Path | str, work_id: str, version: int | None, target_dir: Path | str
) -> Path:
    """Write version ``version`` of ``work_id`` (the newest for None) as a bag at ``target_dir``
    (absent) whose files are hard links to the object's content, not copies: the archive's own
    ``bags/<id>`` made again from the versions store after a crash
    (:func:`cifa_ingest.revision.reconcile`), costing no space. The content files are
    read-only, so nothing can write through the links. The bag is validated in full (every
    digest) before it is given: ObjectDamaged otherwise, and nothing is left."""
    target = Path(target_dir).absolute()
    if target.exists():
        raise ExportRefused(f"{target}: exists; nothing written over")
    obj, inventory = read_object(root, work_id)
    number = checked_number(inventory, version)
    where = f"{work_id} {version_name(number)}"
    with _built_as(target, "link") as building:
        for logical, digest in sorted(inventory.state(number).items()):
            content_path = inventory.content_path(digest)
            (building / logical).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(obj.content_file(content_path), building / logical)
            except FileNotFoundError:
                raise ObjectDamaged(
                    f"{where}: {content_path} (the bag's {logical}) is missing"
                ) from None
        _valid_bag(building, where)
    return target


#: Where a bag keeps its access copies, and the descriptive records an access export carries.
ACCESS_FOLDER = "data/access/"
DESCRIPTIVE_RECORDS = ("metadata/descriptive.json", "metadata/descriptive.xml")
PERMISSION_RECORD = "metadata/permission.json"
#: A deaccessioned work's tombstone holds it (:mod:`cifa_ingest.deaccession`).
DEACCESSION_RECORD = "metadata/deaccession.json"


def _permission_withheld(obj: OcflObject, inventory: Inventory, number: int) -> str | None:
    """Why version ``number``'s permission record withholds access, or None: read from the
    object itself, its digest checked."""
    from cifa_ingest.catalogue.model import Permission

    if DEACCESSION_RECORD in inventory.state(number):
        return "deaccessioned"
    digest = inventory.state(number).get(PERMISSION_RECORD)
    if digest is None:
        return "the version has no permission record"
    data = obj.content_file(inventory.content_path(digest)).read_bytes()
    if hashlib.sha512(data).hexdigest() != digest:
        raise ObjectDamaged(f"{obj.id} {version_name(number)}: {PERMISSION_RECORD} damaged")
    return Permission.withheld_by_record(data)


def export_access(root: StorageRoot | Path | str, work_id: str, target_dir: Path | str) -> Path:
    """Write the newest version's access copies (``access/…``) and descriptive records
    (``descriptive.json``, ``descriptive.xml``) into ``target_dir`` (absent or empty), each
    verified against the inventory as copied: what an access system is given. Only the newest
    version's permission decides, so an earlier version can never give out what a withdrawal
    took back. AccessWithheld (nothing written) where it does not cover access."""
    target = _empty_target(target_dir)
    obj, inventory = read_object(root, work_id)
    number = inventory.head
    withheld = _permission_withheld(obj, inventory, number)
    if withheld is not None:
        raise AccessWithheld(
            f"{work_id}: access copies withheld ({withheld}, as {version_name(number)} records);"
            " nothing exported"
        )
    wanted = {
        logical: digest
        for logical, digest in inventory.state(number).items()
        if logical.startswith(ACCESS_FOLDER) or logical in DESCRIPTIVE_RECORDS
    }
    if not any(logical.startswith(ACCESS_FOLDER) for logical in wanted):
        raise AccessWithheld(f"{work_id}: {version_name(number)} has no access copies")
    where = f"{work_id} {version_name(number)}"
    with _built_as(target, "access") as building:
        for logical, digest in sorted(wanted.items()):
            name = logical.removeprefix("data/").removeprefix("metadata/")
            _copy_checked(obj, inventory, where, logical, digest, building / name)
    return target
