"""A storage location on a mounted file system (a second disk, a NAS mount): the
:class:`~cifa_ingest.storage.store.Store` of a
:class:`~cifa_ingest.storage.locations.FilesystemLocation`.

Objects are files under the location's root, at their keys (``bags/<bag>/<path>``,
``ledger/<name>``). Why it writes as it does:

- **Never the root itself.** A disk that is not mounted leaves its mount point an empty folder
  of the parent file system (or no folder at all); writing there would silently fill the system
  disk with a "copy" that vanishes when the disk is mounted again. The root must exist and be a
  directory, or the location is :class:`LocationUnreachable`; folders *under* it are made as
  needed. So a location's path is a folder *inside* the mounted disk, made once while it is
  mounted (absent when it is not); and replication treats a location where the ledger records
  good copies but none is found as unreachable too (a mount point left empty).
- **All or nothing.** A file is written to a temporary name in its destination folder, flushed
  to stable storage, read back and hashed against the digest the ledger expects, then renamed
  into place (atomic within a file system) and its folder flushed: a reader, or a crash at any
  instant, meets the whole file or none of it, and a file under its real name has been verified
  once at least. Bytes that do not verify are :class:`CopyRefused` and the temporary file is
  removed.
- **Read-only, like the primary.** Files are made 0444 before the rename, as placed bags are
  (:func:`cifa_ingest.archive.layout.seal_tree`): nothing writes into a copy by mistake.

One writer per location at a time is assumed (replication holds a lock for that,
:func:`cifa_ingest.storage.replicate.replication_lock`): a temporary file left by a writer that
was killed is removed by the next ``put`` of the same key.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cifa_ingest.storage import digests
from cifa_ingest.storage.digests import sha256_of_path
from cifa_ingest.storage.locations import FilesystemLocation
from cifa_ingest.storage.store import CopyRefused, LocationUnreachable, ObjectMissing, StoredObject

#: Temporary files are ``.<name>.<random>.partial`` beside their destination: hidden from
#: :meth:`FilesystemStore.list`, recognisable as debris.
PARTIAL_SUFFIX = ".partial"


class FilesystemStore:
    """The files of one filesystem location."""

    def __init__(self, location: FilesystemLocation) -> None:
        self.name = location.name
        self.root = Path(location.path).expanduser()

    # -----------------------------------------------------------------------------------------

    def check(self) -> None:
        """The root must be an existing, writable directory; it is never created."""
        if not self.root.is_absolute():
            raise LocationUnreachable(
                f"location {self.name}: its path {self.root} is not absolute; a copy's place must"
                " not depend on the folder cifa runs from"
            )
        try:
            mode = self.root.stat().st_mode
        except FileNotFoundError:
            raise LocationUnreachable(
                f"location {self.name}: {self.root} does not exist (a disk not mounted?);"
                " it is never created by cifa"
            ) from None
        except OSError as exc:
            raise LocationUnreachable(
                f"location {self.name}: {self.root}: {exc.strerror}"
            ) from None
        if not stat.S_ISDIR(mode):
            raise LocationUnreachable(f"location {self.name}: {self.root} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise LocationUnreachable(f"location {self.name}: {self.root} cannot be read")

    def _path(self, key: str) -> Path:
        """The file of ``key``: relative, ``/``-separated, no ``..``, no empty part."""
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a key: {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, source: Path, sha256: str) -> StoredObject:
        """Copy ``source`` to ``key`` through a verified temporary file (see the module)."""
        self.check()
        target = self._path(key)
        _make_folders(target.parent)  # a read-only disk: OSError, said
        _remove_partials(target)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}")
        try:
            size = _copy_flushed(source, temporary)
            found = sha256_of_path(temporary)
            if found != sha256.lower():
                raise CopyRefused(
                    f"location {self.name}: {key}: the bytes written read back as sha256 {found},"
                    f" not {sha256}; not kept"
                )
            os.chmod(temporary, 0o444)
            os.replace(temporary, target)
            _fsync_dir(target.parent)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=size, sha256=sha256.lower())

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        self.check()
        try:
            handle = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(f"location {self.name}: no {key}") from None
        with handle:
            yield handle

    def stat(self, key: str) -> StoredObject | None:
        """The file under ``key`` with its size; no digest (a file system keeps none)."""
        self.check()
        try:
            found = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(found.st_mode):
            return None
        return StoredObject(key=key, size=found.st_size)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every file whose key starts with ``prefix``, in key order; temporary files aside.
        Only the folder the prefix names is walked (``ledger/``: not every bag's files)."""
        self.check()
        folder = prefix.rpartition("/")[0]
        found = []
        for dirpath, _dirs, files in os.walk(self._path(folder) if folder else self.root):
            for name in files:
                if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
                    continue
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        found.append(StoredObject(key=key, size=path.stat().st_size))
        yield from sorted(found, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        self.check()
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return

    def purge(self, prefix: str) -> tuple[int, tuple[str, ...]]:
        """Every file under ``prefix`` removed (a file system keeps no older versions, and no
        retention); its emptied folders too."""
        removed = 0
        for found in list(self.list(prefix)):
            self.delete(found.key)
            removed += 1
        folder = self._path(prefix.rstrip("/")) if prefix.strip("/") else None
        if folder is not None and folder.is_dir():
            for dirpath, _dirnames, _filenames in sorted(os.walk(folder), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
        return removed, ()


def _make_folders(folder: Path) -> None:
    """Make ``folder`` and the folders above it that are missing, each new entry flushed in its
    parent: a power cut after a copy is recorded good must not take a new folder, and the files
    in it, with it."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile: flushed by its maker
            new.mkdir()
        _fsync_dir(new.parent)


def _remove_partials(target: Path) -> None:
    """Temporary files of ``target`` left by a writer that was killed."""
    for debris in target.parent.glob(f".{_glob_escape(target.name)}.*{PARTIAL_SUFFIX}"):
        debris.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _copy_flushed(source: Path, temporary: Path) -> int:
    """Copy ``source`` into the new file ``temporary``, flushed to stable storage; its size."""
    size = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    with source.open("rb") as reader:
        fd = os.open(temporary, flags, 0o600)
        with os.fdopen(fd, "wb") as writer:
            while chunk := reader.read(digests.CHUNK):
                writer.write(chunk)
                size += len(chunk)
            writer.flush()
            os.fsync(writer.fileno())
            # The read-back that verifies the copy should read the disk, not the page cache.
            with contextlib.suppress(AttributeError, OSError):
                os.posix_fadvise(writer.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some network file systems refuse a directory's fsync
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
