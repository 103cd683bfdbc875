"""Making a new version of a work: its bag, verified, becomes the next version of its OCFL object
(the first makes the object).

The order of things is what makes it safe to kill at any instant:

1. Under the object's lock, the recovery runs first (:mod:`cifa_ingest.versions.recovery`): the
   object is at a whole version before anything is added to it, and debris of an earlier attempt
   is cleared from staging.
2. The version is built in staging (on the archive's file system): the bag's files verified and
   the new ones copied into ``content/`` (:mod:`cifa_ingest.versions.content`), its inventory and
   digest file written; for a first version, the whole object (declaration, root inventory, v1/).
3. Everything is made read-only and flushed to stable storage, files and folders.
4. ONE ``rename`` puts it in place: ``objects/<id>`` for v1, ``objects/<id>/vN`` after. Before
   the rename the object is as it was; after it, the version is complete.
5. The object's root inventory and its digest file are replaced by the version's copies, each
   atomically: the recovery's roll-forward, the same code whether the writer lives to do it or
   the next reader does it after a crash.

A bag that is the head version again is refused (UnchangedVersion): a version records a change.
That is also what re-running an add says when its first run was killed after step 4.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cifa_ingest.archive.layout import fsync_dir, seal_tree
from cifa_ingest.errors import ArchiveStateError, UnchangedVersion, VersionRefused
from cifa_ingest.versions.content import discard, take_bag
from cifa_ingest.versions.history import VersionInfo, describe
from cifa_ingest.versions.inventory import (
    INVENTORY,
    SIDECAR,
    Inventory,
    User,
    VersionBlock,
    rfc3339,
    sidecar,
    version_name,
)
from cifa_ingest.versions.object import OcflObject
from cifa_ingest.versions.recovery import recover_locked, roll_forward, staging_name
from cifa_ingest.versions.storage_root import (
    OBJECT_DECLARATION,
    OBJECT_DECLARATION_TEXT,
    StorageRoot,
    check_work_id,
)


def _checked_request(message: str, user: User, created: dt.datetime | None) -> str:
    """The version's ``created``, once its message, user and time are what a version needs."""
    if not isinstance(message, str) or not message.strip():
        raise VersionRefused("a version needs a message: why it was made")
    if not isinstance(user, User) or not user.name.strip():
        raise VersionRefused("a version needs the name of who made it")
    moment = created or dt.datetime.now(dt.UTC)
    try:
        return rfc3339(moment)
    except ValueError as exc:
        raise VersionRefused(str(exc)) from None


def _write_inventory(folder: Path, data: bytes) -> None:
    (folder / INVENTORY).write_bytes(data)
    (folder / SIDECAR).write_bytes(sidecar(data))


def add_version(
    root: StorageRoot | Path | str,
    work_id: str,
    bag_dir: Path | str,
    *,
    message: str,
    user: User,
    staging_dir: Path | str,
    created: dt.datetime | None = None,
    link: bool = False,
) -> VersionInfo:
    """Make the bag at ``bag_dir`` the next version of ``work_id``'s object (its first version
    where the object does not exist), and describe it.

    ``staging_dir`` is where the version is built: on the same file system as the storage root
    (``ARCHIVE/staging/``), so that it can be renamed into place. ``created`` defaults to now.
    Refused (VersionRefused, the object unchanged) where the bag is not complete and valid by its
    own manifests, or is the head version again (UnchangedVersion).

    ``link``: the version's new files are hard links to the bag's, not copies (a bag placed in
    ``bags/``, sealed read-only: the archive's bags and their versions share their bytes)."""
    check_work_id(work_id)
    when = _checked_request(message, user, created)
    bag = Path(bag_dir).absolute()
    store = (root if isinstance(root, StorageRoot) else StorageRoot(root)).ensure()
    staging = Path(staging_dir).absolute()
    staging.mkdir(parents=True, exist_ok=True)
    if staging.stat().st_dev != store.path.stat().st_dev:
        raise ArchiveStateError(
            f"staging {staging} and the versioned store {store.path} are on different file"
            " systems: a version could not be moved into place in one step"
        )
    obj = OcflObject(store, work_id)
    with store.locked(work_id):
        recover_locked(store, work_id, staging)
        previous = obj.inventory() if obj.exists() else Inventory.empty(work_id)
        number = previous.head + 1
        stage = staging / staging_name(work_id, number)
        discard(stage)
        stage.mkdir()
        # v1: the stage is the object's folder; later: the stage is the version's folder.
        version_dir = stage / version_name(number) if number == 1 else stage
        try:
            taken = take_bag(bag, previous.manifest.keys(), version_dir / "content", link=link)
            state = {path: found.sha512 for path, found in taken.files.items()}
            if number > 1 and state == previous.state():
                raise UnchangedVersion(
                    f"{work_id}: {bag} is {version_name(previous.head)}, the latest version,"
                    " file for file; no version made",
                    previous.head,
                )
            content = f"{version_name(number)}/content/"
            inventory = previous.with_version(
                VersionBlock(when, message, user, state),
                stored={d: content + path for d, path in taken.stored.items()},
                sha256={f.sha512: f.sha256 for f in taken.files.values()},
            )
            data = inventory.to_bytes()
            version_dir.mkdir(exist_ok=True)
            _write_inventory(version_dir, data)
            if number == 1:
                _write_inventory(stage, data)
                (stage / OBJECT_DECLARATION).write_bytes(OBJECT_DECLARATION_TEXT)
            seal_tree(stage)
            target = obj.path if number == 1 else obj.version_path(number)
            if target.exists():
                raise ArchiveStateError(f"{target}: already exists; not overwritten")
            os.rename(stage, target)
        except BaseException:
            discard(stage)
            raise
        fsync_dir(target.parent)
        if number > 1:
            roll_forward(obj)
        return describe(obj, inventory, number)
