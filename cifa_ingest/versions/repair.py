"""A version's stored file mended from verified bytes (issue 18: "repair works per version").

Version 1's files are hard links to the placed bag's, and every later version's unchanged files
too: one inode, two names. Damage to that inode is damage to both; a repair of the bag from a
storage location then writes a *new* file into ``bags/<id>`` (verified against the ledger),
and the object's name still points at the damaged one. So after the bag's repair, each stored
file of the object that the audit found damaged or missing is mended from the bag, where the
newest version (the bag) holds a file with the same sha512:

* the bag's file is read and its sha512 compared with the inventory's digest: only verified
  bytes are ever put in (never the bag's word for them);
* it is hard-linked under a temporary name in the storage root (where the recovery clears what
  a crash leaves) and renamed over the damaged file (one ``rename``: the content path holds the
  damaged file or the mended one, never half of one), the folder flushed; the object's lock is
  held throughout;
* a stored file no file of the bag matches (an earlier version's own file: an old master, an
  old record) cannot be mended here: the versions' copies at the storage locations are not
  built yet. It is said, never guessed at.

An inventory that does not match its digest file is not trusted to say what a file should be:
nothing is mended in that object.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cifa_ingest.archive.layout import fsync_dir
from cifa_ingest.bag import fixity
from cifa_ingest.errors import ObjectDamaged
from cifa_ingest.versions.object import OcflObject
from cifa_ingest.versions.storage_root import StorageRoot


@dataclass(frozen=True)
class Mended:
    """One stored file of an object replaced by the bag's verified file of the same digest."""

    content_path: str
    source: str  # the bag's file it was mended from, a path in the bag
    sha256: str


def _hashed(path: Path) -> tuple[str, str] | None:
    """(sha512, sha256) of the file, None where it cannot be read."""
    sha512, sha256 = hashlib.sha512(), hashlib.sha256()
    try:
        with path.open("rb") as reader:
            while chunk := reader.read(fixity.CHUNK):
                sha512.update(chunk)
                sha256.update(chunk)
    except OSError:
        return None
    return sha512.hexdigest(), sha256.hexdigest()


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
                    "not repaired: no verified copy of it (the newest bag holds none with its"
                    " digest; the versions' copies at the storage locations are not built yet)"
                    if not sources
                    else "not repaired: the newest bag's copy of it does not verify either"
                )
                continue
            logical, sha256 = found
            target = obj.content_file(content_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Beside the storage root's own temporary files: the recovery clears them.
            temporary = store.path / f"{store.temporary_prefix(work_id)}mend-{os.getpid()}.tmp"
            temporary.unlink(missing_ok=True)
            os.link(bag_dir / logical, temporary)
            os.replace(temporary, target)
            fsync_dir(target.parent)
            mended.append(Mended(content_path, logical, sha256))
    return mended, left
