"""Reading a file or a stored object once, hashing it as it is read: the one loop behind every
check of the storage package (replication's read-back, repair's and recovery's copies, a
filesystem location's verification of what it wrote).

In pieces of :data:`CHUNK`, so that memory stays flat whatever a film's size; a copy is flushed
to stable storage before its digest is believed (a crash must not leave a file that was
"verified" only in the page cache).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

#: Bytes read at a time.
CHUNK = 8 * 1024 * 1024


def sha256_of(reader: BinaryIO) -> str:
    """The hex SHA-256 of what ``reader`` gives, read to its end."""
    hasher = hashlib.sha256()
    while chunk := reader.read(CHUNK):
        hasher.update(chunk)
    return hasher.hexdigest()


def sha256_of_path(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``."""
    with path.open("rb") as reader:
        return sha256_of(reader)


def copy_hashed(reader: BinaryIO, out: BinaryIO) -> tuple[str, int]:
    """Copy ``reader`` to the open file ``out``, hashing the bytes as they pass, then flush and
    fsync ``out``: the hex SHA-256 and the size of what was written."""
    digests, size = copy_hashed_with(reader, out, ("sha256",))
    return digests["sha256"], size


def copy_hashed_with(
    reader: BinaryIO, out: BinaryIO, algorithms: Iterable[str]
) -> tuple[dict[str, str], int]:
    """:func:`copy_hashed` with a digest of each of ``algorithms`` (a version's content file is
    known by its sha512 and its sha256): each hex digest by algorithm, and the size."""
    hashers, size = {name: hashlib.new(name) for name in algorithms}, 0
    while chunk := reader.read(CHUNK):
        for hasher in hashers.values():
            hasher.update(chunk)
        out.write(chunk)
        size += len(chunk)
    out.flush()
    os.fsync(out.fileno())
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}, size
