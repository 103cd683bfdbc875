"""The archive on disk: where bags live, where work in progress is built, how a bag is placed.

Layout::

    ARCHIVE/bags/<id>/       one complete, valid BagIt bag per work
    ARCHIVE/staging/<id>/    work in progress; never inside bags/
    ARCHIVE/partials/<id>/   partial downloads of a failed fetch, kept aside for a later run
                             to resume (cifa_ingest.fetch.resume); never inside bags/
    ARCHIVE/objects/<id>/    the versions of the work: an OCFL 1.1 object (cifa_ingest.versions),
                             its first version hard links to the placed bag's files
    ARCHIVE/ledger.sqlite    what the archive holds (cifa_ingest.archive.ledger)

A bag is built and validated entirely in ``staging/`` and then moved into ``bags/`` with one
``rename`` (atomic within a file system), so a crash leaves either a complete bag or nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cifa_ingest.errors import ArchiveStateError, InputError


def seal_tree(root: Path) -> None:
    """Make every file under ``root`` read-only and flush it, and every directory, to stable
    storage before placement: a power cut after the rename cannot leave a placed bag with missing
    blocks, and nothing writes into a placed bag by mistake."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            os.chmod(path, 0o444)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a file created, renamed or removed in it) to stable storage."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    target: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    temporary_dir: Path | None = None,
    prefix: str | None = None,
    suffix: str = "",
) -> Path:
    """Write a file of the archive that people read while it may be rewritten (the reports, an
    OCFL object's inventory): a temporary file, flushed, renamed over it, and the rename flushed,
    so a reader or a crash never meets half of one. Readable by all (0644) unless ``mode`` says
    otherwise: reports are for the archive's staff and its web server. The temporary file is made
    beside ``target``, or in ``temporary_dir`` (on the same file system), named
    ``<prefix>…<suffix>`` where a caller's recovery must know its debris."""
    handle, temporary = tempfile.mkstemp(
        prefix=prefix or f".{target.name}.", suffix=suffix, dir=temporary_dir or target.parent
    )
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


#: renameat2(2)'s flag and the "current directory" descriptor (Linux, glibc 2.28 and later).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(first: Path, second: Path) -> bool:
    """Swap two folders' names in one step (Linux ``renameat2(RENAME_EXCHANGE)``): at every
    instant each name holds one whole tree, the old or the new. False where the system or the
    file system cannot (another libc, an old kernel, a file system without it): the caller then
    renames in two steps and its recovery covers the instant between them."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))


class NoArchive(InputError):
    """A command or a run that reads an archive was given a path that holds none: a typo, or an
    archive not made yet (the first night has not run). Exit 2 on the command line; a Failed run
    in Prefect, saying so."""


class Archive:
    """One archive root and its layout."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self.bags_dir = self.root / "bags"
        self.staging_dir = self.root / "staging"
        self.partials_dir = self.root / "partials"
        self.objects_dir = self.root / "objects"
        self.ledger_path = self.root / "ledger.sqlite"

    @classmethod
    def of_staged(cls, path: Path) -> Archive | None:
        """The archive whose ``staging/`` holds ``path`` (a work in progress), or None."""
        for folder in Path(path).absolute().parents:
            if folder.name == "staging" and (folder.parent / "ledger.sqlite").is_file():
                return cls(folder.parent)
        return None

    def existing(self) -> Archive:
        """This archive, for a reader (an audit, a status): a path that holds no archive is
        refused (:class:`NoArchive`), never read as an empty archive, and never created."""
        if not self.ledger_path.is_file():
            raise NoArchive(
                f"{self.root}: no archive here (no ledger.sqlite: nothing is preserved in it)"
            )
        return self

    def ensure(self) -> None:
        """Create the layout if it does not exist yet."""
        self.bags_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def bag_path(self, work_id: str) -> Path:
        return self.bags_dir / work_id

    def relative(self, path: Path) -> str:
        """A path inside the archive as stored in the ledger: relative, so the archive can move."""
        return path.absolute().relative_to(self.root).as_posix()

    def new_staging(self, work_id: str) -> Path:
        """A fresh, empty staging folder for one work; debris of an earlier crash is removed."""
        staging = self.staging_dir / work_id
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return staging

    def discard_staging(self, work_id: str) -> None:
        shutil.rmtree(self.staging_dir / work_id, ignore_errors=True)

    def writer_lock(
        self, on_wait: Callable[[], None] | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the archive's writer lock: one ingest at a time, across processes."""
        return self.exclusive("writer", on_wait)

    @contextlib.contextmanager
    def exclusive(self, name: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the archive's lock ``name`` (``ARCHIVE/.<name>.lock``: ``writer`` for ingests,
        ``replicate`` for copies to the storage locations). A second holder waits for the first
        (``on_wait`` is told once); the lock dies with its process, so a killed run never leaves
        the archive locked."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{name}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def place(self, staged_bag: Path, work_id: str) -> Path:
        """Seal a complete, validated bag (read-only files, flushed) and move it from staging
        into ``bags/`` atomically."""
        target = self.bag_path(work_id)
        if target.exists():
            raise ArchiveStateError(f"{self.relative(target)} already exists; not overwritten")
        if staged_bag.stat().st_dev != self.bags_dir.stat().st_dev:
            raise ArchiveStateError("staging and bags are on different file systems")
        seal_tree(staged_bag)
        os.rename(staged_bag, target)
        fsync_dir(self.bags_dir)
        return target

    def replace_bag(self, new_bag: Path, work_id: str) -> Path:
        """Make ``new_bag`` (complete, validated, in ``staging/``) the work's bag in ``bags/``,
        in place of the one there: the bag of a new version (:mod:`cifa_ingest.revision`).

        Only after the versions store holds both: the bag replaced is then removed, its files
        being hard links the store keeps. The names are exchanged in one step where the system
        can (:func:`exchange`); elsewhere the old bag is renamed aside first, and a crash between
        the two renames leaves no ``bags/<id>``, which :func:`cifa_ingest.revision.reconcile`
        makes again from the versions store."""
        target = self.bag_path(work_id)
        if new_bag.stat().st_dev != self.bags_dir.stat().st_dev:
            raise ArchiveStateError("staging and bags are on different file systems")
        seal_tree(new_bag)
        replaced: Path | None = new_bag
        if not target.exists():
            os.rename(new_bag, target)
            replaced = None
        elif not exchange(new_bag, target):
            replaced = self.staging_dir / f"{work_id}.replaced"
            if replaced.exists():
                shutil.rmtree(replaced)
            os.rename(target, replaced)
            os.rename(new_bag, target)
        fsync_dir(self.bags_dir)
        fsync_dir(self.staging_dir)
        if replaced is not None:
            shutil.rmtree(replaced)
        return target
